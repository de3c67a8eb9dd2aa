from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.auth.models import User
from app.db import Base

IMPACTS = ("none", "degraded_performance", "partial_outage", "major_outage")


class CommsUpdate(Base):
    """A stakeholder update posted by the Comms Lead or the IC: public, or internal only."""

    __tablename__ = "comms_updates"
    __table_args__ = (Index("ix_comms_updates_incident_posted", "incident_id", "posted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    public: Mapped[bool]
    status: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    posted_at: Mapped[datetime]

    author: Mapped[User] = relationship(lazy="raise")


class IncidentImpact(Base):
    """The impact an incident has on one status-page component, as set by a responder. Without
    a row, a component named by the incident's services takes the impact of its severity."""

    __tablename__ = "incident_impacts"
    __table_args__ = (
        CheckConstraint(
            "impact IN ('none', 'degraded_performance', 'partial_outage', 'major_outage')", name="impact"
        ),
    )

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    impact: Mapped[str] = mapped_column(String(32))
    set_at: Mapped[datetime]
    set_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

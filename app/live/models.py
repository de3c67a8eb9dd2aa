from datetime import datetime
from uuid import UUID

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Viewer(Base):
    """One open incident page (an SSE stream) on any replica, refreshed while it stays open."""

    __tablename__ = "viewers"
    __table_args__ = (Index("ix_viewers_incident_seen", "incident_id", "seen_at"),)

    connection: Mapped[UUID] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    seen_at: Mapped[datetime]

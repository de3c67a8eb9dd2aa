from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Escalation(Base):
    """A step that fired. Unique per incident and step: the row is the proof it fired once."""

    __tablename__ = "escalations"
    __table_args__ = (
        UniqueConstraint("incident_id", "step_key"),
        CheckConstraint("condition IN ('unacknowledged', 'unmitigated', 'no_update')", name="condition"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    step_key: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    condition: Mapped[str] = mapped_column(String(20))  # the step's `when`, which held when it fired
    fired_at: Mapped[datetime]


class EscalationNotification(Base):
    """One outgoing webhook of a fired step; claimed with SKIP LOCKED, retried with backoff."""

    __tablename__ = "escalation_notifications"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
        Index(
            "ix_escalation_notifications_due", "next_attempt_at", postgresql_where=text("state = 'pending'")
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]

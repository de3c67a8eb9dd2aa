from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.auth.models import User
from app.db import Base
from app.incidents.models import Incident

# Stored states. Two more are derived when a run is read: `expired` (still awaiting past its
# deadline) and `unknown` (still `running` well past its timeout: the process that sent it died).
RUN_STATES = ("awaiting_confirmation", "running", "succeeded", "failed", "timed_out")
FINISHED_STATES = ("succeeded", "failed", "timed_out")


class ActionRun(Base):
    """One attempt to call a catalog webhook for an incident: prepared, then confirmed by the same
    person (single-use token, stored hashed), then executed exactly once."""

    __tablename__ = "action_runs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('awaiting_confirmation', 'running', 'succeeded', 'failed', 'timed_out')",
            name="state",
        ),
        Index("ix_action_runs_incident_action", "incident_id", "action", "started_at"),
        Index("ix_action_runs_prepared_at", "prepared_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(24), server_default=text("'awaiting_confirmation'"))
    prepared_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    prepared_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    confirm_token_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    # Header values as configured: `${env:NAME}` references are resolved only when sending, so
    # secrets are never stored or shown.
    request_headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    request_body: Mapped[str] = mapped_column(Text)
    timeout_ms: Mapped[int]
    confirmed_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    http_status: Mapped[int | None]
    duration_ms: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    incident: Mapped[Incident] = relationship(lazy="raise")
    prepared_by: Mapped[User] = relationship(lazy="raise")

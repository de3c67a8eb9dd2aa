from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.auth.models import User
from app.db import Base

STATUSES = ("triage", "investigating", "identified", "monitoring", "resolved")
SINGLE_ROLES = ("incident_commander", "comms_lead", "tech_lead", "scribe")
ROLES = (*SINGLE_ROLES, "sme")
ENTRY_KINDS_WRITTEN = ("note", "decision", "action")
ENTRY_KINDS_AUTOMATIC = (
    "update",
    "impact",
    "runbook",
    "action_run",
    "alert",
    "escalation",
    "declared",
    "acknowledged",
    "severity",
    "status",
    "role",
    "checklist",
)


class IncidentRefCounter(Base):
    """The per-UTC-day counter behind INC-YYYYMMDD-NN; an upsert serialises concurrent declares."""

    __tablename__ = "incident_ref_counters"

    day: Mapped[date] = mapped_column(primary_key=True)
    last_number: Mapped[int]


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(
            "status IN ('triage', 'investigating', 'identified', 'monitoring', 'resolved')",
            name="status",
        ),
        Index("ix_incidents_active", "severity", "declared_at", postgresql_where=text("resolved_at IS NULL")),
        Index("ix_incidents_resolved_at", "resolved_at", postgresql_where=text("resolved_at IS NOT NULL")),
        # The dashboard's trends read a window of declarations: this keeps them off the history.
        Index(
            "ix_incidents_declared_at",
            "declared_at",
            postgresql_include=["severity", "acknowledged_at", "resolved_at"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    public_title: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    services: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    declared_at: Mapped[datetime]
    declared_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    severity_changed_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    last_update_at: Mapped[datetime | None]
    ack_due_at: Mapped[datetime | None]
    mitigation_due_at: Mapped[datetime | None]
    update_due_at: Mapped[datetime | None]
    # On the status page since (None: not public); the "next update by" promised there.
    published_at: Mapped[datetime | None]
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    public_update_due_at: Mapped[datetime | None]
    client_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    roles: Mapped[list["RoleAssignment"]] = relationship(lazy="raise", viewonly=True)
    checklist: Mapped[list["ChecklistItem"]] = relationship(
        lazy="raise", order_by="ChecklistItem.position", viewonly=True
    )


class RoleAssignment(Base):
    """Who held which response role, and when. Ended rows stay: a handover keeps history."""

    __tablename__ = "role_assignments"
    __table_args__ = (
        CheckConstraint(
            "role IN ('incident_commander', 'comms_lead', 'tech_lead', 'scribe', 'sme')",
            name="role",
        ),
        Index(
            "uq_role_assignments_one_holder",
            "incident_id",
            "role",
            unique=True,
            postgresql_where=text("ended_at IS NULL AND role <> 'sme'"),
        ),
        Index(
            "uq_role_assignments_one_sme",
            "incident_id",
            "user_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL AND role = 'sme'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime]
    assigned_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ended_at: Mapped[datetime | None]
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    user: Mapped[User] = relationship(lazy="raise", foreign_keys=[user_id])


class ChecklistItem(Base):
    __tablename__ = "checklist_items"
    __table_args__ = (UniqueConstraint("incident_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    done_at: Mapped[datetime | None]
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    done_by: Mapped[User | None] = relationship(lazy="raise")


class TimelineEntry(Base):
    """One line of the incident's story. Append-only: edits add revisions, redaction keeps
    who, when and why."""

    __tablename__ = "timeline_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity',"
            " 'status', 'role', 'checklist', 'runbook', 'update', 'impact',"
            " 'action_run', 'alert', 'escalation')",
            name="kind",
        ),
        Index("ix_timeline_entries_incident_occurred", "incident_id", "occurred_at", "id"),
        UniqueConstraint("incident_id", "client_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(default=1, server_default="1")
    client_key: Mapped[str | None] = mapped_column(String(64))
    redacted_at: Mapped[datetime | None]
    redacted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    redaction_reason: Mapped[str | None] = mapped_column(Text)

    author: Mapped[User] = relationship(lazy="raise", foreign_keys=[author_id])
    redacted_by: Mapped[User | None] = relationship(lazy="raise", foreign_keys=[redacted_by_id])


class TimelineRevision(Base):
    """Every body an entry has had, revision 1 first."""

    __tablename__ = "timeline_revisions"
    __table_args__ = (UniqueConstraint("entry_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("timeline_entries.id", ondelete="CASCADE"))
    revision: Mapped[int]
    body: Mapped[str | None] = mapped_column(Text)
    edited_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    edited_at: Mapped[datetime]

    edited_by: Mapped[User] = relationship(lazy="raise")

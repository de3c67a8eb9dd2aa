from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.auth.models import User
from app.db import Base
from app.incidents.models import Incident

ALERT_STATUSES = ("firing", "resolved")
ROUTE_ACTIONS = ("declare", "attach", "triage")


class Alert(Base):
    """One alert as its sender identifies it, from firing to resolved, however many times it was
    delivered.

    At most one *firing* row per (source, dedup_key): a retry, a repeat notification or a storm of
    identical deliveries updates it (`INSERT ... ON CONFLICT DO UPDATE`), never adds one. Once it
    is resolved it stays as history, and the key firing again opens a new row, as PagerDuty opens
    a new alert.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_source_dedup_key_firing",
            "source",
            "dedup_key",
            unique=True,
            postgresql_where=text("status = 'firing'"),
        ),
        Index("ix_alerts_source_dedup_key", "source", "dedup_key", "id"),
        CheckConstraint("status IN ('firing', 'resolved')", name="status"),
        CheckConstraint("route_action IN ('declare', 'attach', 'triage')", name="route_action"),
        Index("ix_alerts_last_received_at", "last_received_at", "id"),
        Index("ix_alerts_incident_id", "incident_id", postgresql_where=text("incident_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # The sender's fingerprint (or PagerDuty dedup_key) with a hash of the labels when both exist,
    # else the labels hash alone: see docs/decisions.md, "Alert identity".
    dedup_key: Mapped[str] = mapped_column(String(300))
    fingerprint: Mapped[str | None] = mapped_column(String(255))
    group_key: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    previous_status: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(64), default="", server_default="")
    service: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[dict[str, str]] = mapped_column(JSONB)
    annotations: Mapped[dict[str, str]] = mapped_column(JSONB)
    links: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    raw: Mapped[dict[str, object]] = mapped_column(JSONB)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    delivery_count: Mapped[int] = mapped_column(default=1, server_default="1")
    route_action: Mapped[str] = mapped_column(String(16))
    incident_severity: Mapped[str | None] = mapped_column(String(16))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))
    unlinked_at: Mapped[datetime | None]  # taken off an incident by a person: stays in triage
    opened_incident: Mapped[bool] = mapped_column(default=False, server_default="false")
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_by_sender: Mapped[bool] = mapped_column(default=False, server_default="false")

    incident: Mapped[Incident | None] = relationship(lazy="raise")
    acknowledged_by: Mapped[User | None] = relationship(lazy="raise")


class AlertDeadLetter(Base):
    """A delivery refused with a 4xx: what came (credentials masked), why, and any replay."""

    __tablename__ = "alert_dead_letters"
    __table_args__ = (Index("ix_alert_dead_letters_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[str] = mapped_column(Text)
    replayed_at: Mapped[datetime | None]
    replayed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    replay_error: Mapped[str | None] = mapped_column(Text)
    replay_alert_count: Mapped[int | None]

    replayed_by: Mapped[User | None] = relationship(lazy="raise")


class AlertRateWindow(Base):
    """Deliveries per source in one fixed window; an upsert counts them across replicas."""

    __tablename__ = "alert_rate_windows"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    hits: Mapped[int]


class AlertSignatureSeen(Base):
    """Signatures of generic webhooks already accepted, kept while their timestamp is fresh:
    the same signed delivery sent twice is a replay."""

    __tablename__ = "alert_signatures_seen"
    __table_args__ = (Index("ix_alert_signatures_seen_seen_at", "seen_at"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime]


class ChangeEvent(Base):
    """A PagerDuty change event (a deploy, a config push): nothing is wrong, but responders of an
    incident on its service want to see it. Kept as it came; never opens or joins an incident."""

    __tablename__ = "change_events"
    __table_args__ = (
        Index("ix_change_events_service_occurred_at", "service", "occurred_at"),
        Index("ix_change_events_occurred_at", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))  # the configured source it came through
    summary: Mapped[str] = mapped_column(Text)
    origin: Mapped[str | None] = mapped_column(Text)  # payload.source: where the change happened
    occurred_at: Mapped[datetime]  # payload.timestamp, else when it was received
    received_at: Mapped[datetime]
    service: Mapped[str | None] = mapped_column(String(64))
    custom_details: Mapped[dict[str, object]] = mapped_column(JSONB)
    links: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    raw: Mapped[dict[str, object]] = mapped_column(JSONB)

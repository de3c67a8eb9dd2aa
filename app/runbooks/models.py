from datetime import date, datetime

from sqlalchemy import Computed, Index, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Runbook(Base):
    """The index of one runbook file: its metadata, its rendered HTML (re-rendered only when the
    file's content hash changes) and a full-text search vector."""

    __tablename__ = "runbooks"
    __table_args__ = (
        Index("ix_runbooks_search", "search", postgresql_using="gin"),
        Index("ix_runbooks_services", "services", postgresql_using="gin"),
        Index("ix_runbooks_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    owner: Mapped[str] = mapped_column(String(120), default="", server_default="")
    updated: Mapped[date | None]
    services: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    severity: Mapped[str | None] = mapped_column(String(16))
    actions: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    toc: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    has_mermaid: Mapped[bool] = mapped_column(default=False, server_default="false")
    content_hash: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime]
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(body, '')), 'B')",
            persisted=True,
        ),
        deferred=True,
    )

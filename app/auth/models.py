from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

ORG_ROLES = ("admin", "responder", "viewer")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'responder', 'viewer')", name="role"),
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None]
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    # The product's own accounts (alert ingestion, escalation policy): they write timeline
    # entries but never sign in, hold a token or take a response role.
    is_service: Mapped[bool] = mapped_column(default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    @property
    def can_respond(self) -> bool:
        return self.is_active and self.role in ("admin", "responder")


class AuthSession(Base):
    """A signed-in browser. The cookie holds a random token; the row holds its SHA-256."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    """A token for scripts (`Authorization: Bearer ...`), shown once and stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SignInFailures(Base):
    """Sign-ins that did not succeed, per account or client address in one fixed window. An
    attempt counts from before its password check (and is taken back if it succeeds), counted
    by an upsert, so every replica counts in the same row. The subject is an HMAC of the email
    or address, never the text typed at the sign-in form."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        CheckConstraint("scope IN ('account', 'address')", name="scope"),
        Index("ix_sign_in_failures_window_start", "window_start"),
    )

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    failures: Mapped[int]

"""Accounts, sign-in sessions and API tokens."""

import hashlib
import secrets
from datetime import timedelta

from pwdlib import PasswordHash
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import ORG_ROLES, ApiToken, AuthSession, User
from app.errors import Conflict, InvalidInput, NotAuthenticated, NotFound

_hasher = PasswordHash.recommended()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
TOKEN_PREFIX = "icc_"  # noqa: S105 - a public prefix that makes leaked tokens easy to spot


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_user(
    session: AsyncSession, *, email: str, name: str, role: str, password: str | None = None
) -> User:
    """Create an account; without a password it can use API tokens but not sign in."""
    email = (email or "").strip()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise InvalidInput(f"{email!r} is not an email address.", field="email")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidInput("A name of 1 to 120 characters is required.", field="name")
    if role not in ORG_ROLES:
        raise InvalidInput(f"Role must be one of {', '.join(ORG_ROLES)}.", field="role")
    if password is not None and len(password) < 8:
        raise InvalidInput("A password needs at least 8 characters.", field="password")
    taken = await session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    if taken:
        raise Conflict(f"A user with email {email} already exists.")
    user = User(
        email=email,
        name=name,
        role=role,
        password_hash=_hasher.hash(password) if password else None,
    )
    session.add(user)
    await session.commit()
    return user


async def service_account(session: AsyncSession, *, email: str, name: str) -> User:
    """The account the product itself writes as (escalations, alerts): it may act as a
    responder but never signs in, holds a token or takes a response role. Created once;
    concurrent callers agree on one row."""
    found = await session.scalar(select(User).where(func.lower(User.email) == email))
    if found is not None:
        return found
    await session.execute(
        insert(User)
        .values(email=email, name=name, role="responder", is_service=True)
        .on_conflict_do_nothing()
    )
    account = await session.scalar(select(User).where(func.lower(User.email) == email))
    assert account is not None
    return account


async def get_user_by_email(session: AsyncSession, *, email: str) -> User:
    user = await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise NotFound(f"No user with email {email}.")
    return user


async def list_active_users(session: AsyncSession) -> list[User]:
    """People who can hold a response role, by name."""
    return list(
        await session.scalars(
            select(User).where(User.is_active, User.role.in_(("admin", "responder"))).order_by(User.name)
        )
    )


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """Check an email and password; the same message whichever of the two is wrong."""
    user = await session.scalar(select(User).where(func.lower(User.email) == (email or "").strip().lower()))
    if user is None or user.password_hash is None or not user.is_active:
        _hasher.verify(password or "", _DUMMY_HASH)
        raise NotAuthenticated("Email or password is not right.")
    if not _hasher.verify(password or "", user.password_hash):
        raise NotAuthenticated("Email or password is not right.")
    return user


async def start_session(session: AsyncSession, *, user: User, days: int) -> tuple[str, AuthSession]:
    """Open a sign-in session; returns the cookie value (shown only here) and the row."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    row = AuthSession(
        token_hash=_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    await session.commit()
    return token, row


# Every signed-in request asks one of these two: built once, since building a statement costs
# more than the round trip it makes.
_LIVE_SESSION = (
    select(AuthSession, User)
    .join(User, User.id == AuthSession.user_id)
    .where(
        AuthSession.token_hash == bindparam("token_hash"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now"),
        User.is_active,
    )
)
_LIVE_TOKEN_USER = (
    select(User)
    .join(ApiToken, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None), User.is_active)
)


async def resolve_session(session: AsyncSession, *, token: str) -> tuple[User, AuthSession] | None:
    """The user behind a session cookie, if the session is live."""
    row = (await session.execute(_LIVE_SESSION, {"token_hash": _digest(token), "now": clock.now()})).first()
    if row is None:
        return None
    auth_session, user = row
    return user, auth_session


async def end_session(session: AsyncSession, *, token: str) -> None:
    """Sign out: the session is revoked server-side, so a copied cookie stops working too."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.token_hash == _digest(token), AuthSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    await session.commit()


async def create_api_token(session: AsyncSession, *, email: str, name: str = "cli") -> str:
    """Issue an API token for a user; the token is returned once and stored hashed."""
    user = await get_user_by_email(session, email=email)
    if user.is_service:
        raise InvalidInput(f"{email} is the product's own account; it cannot hold a token.", field="email")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_digest(token), user_id=user.id, name=name, created_at=clock.now()))
    await session.commit()
    return token


async def resolve_api_token(session: AsyncSession, *, token: str) -> User | None:
    """The user behind a bearer token, if the token is live."""
    return await session.scalar(_LIVE_TOKEN_USER, {"token_hash": _digest(token)})

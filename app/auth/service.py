"""Accounts, sign-in sessions and API tokens."""

import asyncio
import hashlib
import hmac
import ipaddress
import math
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from pwdlib import PasswordHash
from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import ORG_ROLES, ApiToken, AuthSession, SignInFailures, User
from app.config import Settings, get_settings
from app.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, RateLimited

_hasher = PasswordHash.recommended()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
TOKEN_PREFIX = "icc_"  # noqa: S105 - a public prefix that makes leaked tokens easy to spot


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@lru_cache
def _password_threads() -> ThreadPoolExecutor:
    """Where passwords are hashed and verified. argon2 takes a core for about 0.1 s and releases
    the GIL, so in a thread it leaves the event loop serving pages; the pool's size is how many
    run at once in this process, and the rest wait in line."""
    return ThreadPoolExecutor(
        max_workers=get_settings().password_checks_at_once, thread_name_prefix="icc-password"
    )


async def hash_password(password: str) -> str:
    """The argon2 hash of a password, computed off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_password_threads(), _hasher.hash, password)


async def _password_matches(password: str, hashed: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _password_threads(), _hasher.verify, password, hashed
    )


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
        password_hash=await hash_password(password) if password else None,
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
    """People who can hold a response role, by name: never the product's own accounts."""
    return list(
        await session.scalars(
            select(User)
            .where(User.is_active, User.role.in_(("admin", "responder")), User.is_service.is_(False))
            .order_by(User.name)
        )
    )


@dataclass(frozen=True)
class SignInLimits:
    """How many sign-ins may fail per fixed window, per account and per client address."""

    window: timedelta
    per_account: int
    per_address: int
    key: str  # the HMAC key of the counted subjects: the product's secret key

    @classmethod
    def from_settings(cls, settings: Settings) -> "SignInLimits":
        return cls(
            window=timedelta(minutes=settings.sign_in_window_minutes),
            per_account=settings.sign_in_failures_per_account,
            per_address=settings.sign_in_failures_per_address,
            key=settings.secret_key,
        )


def throttled_address(host: str | None) -> str:
    """The client address the throttle counts: an IPv6 client by its /64, the network one
    subscriber gets and whose 2^64 addresses any of its hosts may use; others as they are."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _subject(limits: SignInLimits, scope: str, value: str) -> str:
    # An HMAC, not the text: people type passwords into the email field.
    return hmac.new(limits.key.encode(), f"{scope}:{value}".encode(), hashlib.sha256).hexdigest()


async def _count_attempt(session: AsyncSession, *, scope: str, subject: str, window_start: datetime) -> int:
    counted = await session.execute(
        insert(SignInFailures)
        .values(scope=scope, subject=subject, window_start=window_start, failures=1)
        .on_conflict_do_update(
            index_elements=[SignInFailures.scope, SignInFailures.subject, SignInFailures.window_start],
            set_={"failures": SignInFailures.failures + 1},
        )
        .returning(SignInFailures.failures)
    )
    return counted.scalar_one()


def _too_many(where: str, *, retry_after: int) -> RateLimited:
    minutes = max(1, math.ceil(retry_after / 60))
    wait = "1 minute" if minutes == 1 else f"{minutes} minutes"
    return RateLimited(f"Too many failed sign-ins {where}. Try again in {wait}.", retry_after=retry_after)


async def authenticate(
    session: AsyncSession, *, email: str, password: str, client_address: str | None, limits: SignInLimits
) -> User:
    """Check an email and password; the same message whichever of the two is wrong.

    Throttled per account and per client address: each attempt is counted before its password
    is checked (and taken back when it succeeds), so concurrent attempts on any replica cannot
    slip past the limit, and a throttled attempt costs no hashing. Over either limit the answer
    is RateLimited until the window ends, for a right password too. Unknown emails count the
    same way, so the answers tell nobody which accounts exist."""
    email = (email or "").strip().lower()
    now = clock.now()
    window = int(limits.window.total_seconds())
    epoch = int(now.timestamp())
    window_start = datetime.fromtimestamp(epoch - epoch % window, tz=UTC)
    retry_after = max(1, math.ceil((window_start + limits.window - now).total_seconds()))
    address = _subject(limits, "address", throttled_address(client_address))
    account = _subject(limits, "account", email)
    # Always the address row first, then the account row: one lock order for every writer.
    from_address = await _count_attempt(session, scope="address", subject=address, window_start=window_start)
    refused = None
    if from_address > limits.per_address:
        refused = _too_many("from your network", retry_after=retry_after)
    elif await _count_attempt(session, scope="account", subject=account, window_start=window_start) > (
        limits.per_account
    ):
        refused = _too_many("for this account", retry_after=retry_after)
    user = None if refused else await session.scalar(select(User).where(func.lower(User.email) == email))
    # Commit before hashing: no connection or row lock is held while a password check waits.
    await session.commit()
    if from_address == 1:
        await _forget_past_windows(session, before=window_start)
    if refused:
        raise refused
    if user is None or user.password_hash is None or not user.is_active:
        await _password_matches(password or "", _DUMMY_HASH)
        raise NotAuthenticated("Email or password is not right.")
    if not await _password_matches(password or "", user.password_hash):
        raise NotAuthenticated("Email or password is not right.")
    await session.execute(
        update(SignInFailures)
        .where(
            SignInFailures.scope == "address",
            SignInFailures.subject == address,
            SignInFailures.window_start == window_start,
            SignInFailures.failures > 0,
        )
        .values(failures=SignInFailures.failures - 1)
    )
    await session.execute(
        delete(SignInFailures).where(SignInFailures.scope == "account", SignInFailures.subject == account)
    )
    await session.commit()
    return user


async def _forget_past_windows(session: AsyncSession, *, before: datetime) -> None:
    """Delete the counters of windows that ended; rows another transaction holds are left for
    the next time, so this never waits on a lock."""
    past = (
        select(SignInFailures.scope, SignInFailures.subject, SignInFailures.window_start)
        .where(SignInFailures.window_start < before)
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        delete(SignInFailures).where(
            tuple_(SignInFailures.scope, SignInFailures.subject, SignInFailures.window_start).in_(past)
        )
    )
    await session.commit()


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

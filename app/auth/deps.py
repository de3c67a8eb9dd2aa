"""Who is asking: a bearer token (scripts) or a session cookie (browsers, with CSRF)."""

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.models import User
from app.db import SessionDep
from app.errors import NotAuthenticated, NotPermitted
from app.openapi import BEARER_DESCRIPTION

SESSION_COOKIE = "icc_session"
HOST_ONLY_PREFIX = "__Host-"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# `Authorization: Bearer <token>`; declared by current_user, so the OpenAPI document names it
# (bearerAuth) on every operation that needs a user.
bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", description=BEARER_DESCRIPTION)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def cookie_name(request: Request, name: str) -> str:
    """`name`, or `__Host-name` when cookies are Secure (ICC_SECURE_COOKIES): a browser keeps
    such a cookie only when this host set it over HTTPS for the whole site, so neither another
    subdomain nor a plain-HTTP answer can plant one (a session chosen by an attacker, or a login
    CSRF token they know). Plain-HTTP development keeps the bare name, which HTTP allows."""
    return HOST_ONLY_PREFIX + name if request.app.state.settings.secure_cookies else name


@dataclass(frozen=True)
class Principal:
    user: User
    csrf_token: str | None  # None for bearer tokens, which a browser never sends on its own


async def _identify(
    request: Request, session: SessionDep, credentials: HTTPAuthorizationCredentials | None
) -> Principal | None:
    if hasattr(request.state, "principal"):
        return request.state.principal
    principal = None
    if credentials is not None:
        user = await service.resolve_api_token(session, token=credentials.credentials.strip())
        if user is None:
            raise NotAuthenticated("The API token is not valid or was revoked.")
        principal = Principal(user=user, csrf_token=None)
    elif cookie := request.cookies.get(cookie_name(request, SESSION_COOKIE)):
        found = await service.resolve_session(session, token=cookie)
        if found is not None:
            user, auth_session = found
            principal = Principal(user=user, csrf_token=auth_session.csrf_token)
    request.state.principal = principal
    return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    if request.method in SAFE_METHODS or principal.csrf_token is None:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, principal.csrf_token):
        raise NotPermitted(
            "This form is out of date (its security token does not match). Reload the page and try again."
        )


async def optional_principal(request: Request, session: SessionDep) -> Principal | None:
    return await _identify(request, session, await bearer(request))


async def current_user(request: Request, session: SessionDep, credentials: BearerCredentials = None) -> User:
    """The signed-in user; unsafe requests from a browser must carry the CSRF token. (Streams
    call it themselves, without `credentials`: the header is then read here.)"""
    principal = await _identify(request, session, credentials or await bearer(request))
    if principal is None:
        raise NotAuthenticated(
            "Sign in first."
            if not request.cookies.get(cookie_name(request, SESSION_COOKIE))
            else "Your session has ended; sign in again."
        )
    await _check_csrf(request, principal)
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]

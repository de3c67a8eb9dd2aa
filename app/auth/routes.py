"""Sign-in and sign-out pages."""

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import service
from app.auth.deps import SESSION_COOKIE, CurrentUser, OptionalPrincipal
from app.db import SessionDep
from app.errors import NotAuthenticated
from app.web import render, see_other

router = APIRouter(include_in_schema=False)

# Before sign-in there is no session to hold a CSRF token, so the login form uses a
# double-submit cookie: the form field must equal the cookie a cross-site page cannot read.
LOGIN_CSRF_COOKIE = "icc_login_csrf"


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect to another host after sign-in."""
    if not target:
        return "/incidents"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/incidents"
    return target


def _login_page(
    request: Request, *, next_url: str, email: str = "", error: str | None = None, status_code: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "auth/login.html",
        {"next_url": next_url, "email": email, "error": error, "login_csrf": token},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.secure_cookies,
    )
    return response


@router.get("/login")
async def login_form(request: Request, principal: OptionalPrincipal, next: str | None = None) -> Response:
    if principal is not None:
        return see_other(_safe_next(next))
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    login_csrf: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/incidents",
) -> Response:
    next_url = _safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, login_csrf):
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            status_code=403,
            error="This sign-in form expired. Please try again.",
        )
    try:
        user = await service.authenticate(session, email=email, password=password)
    except NotAuthenticated as exc:
        return _login_page(request, next_url=next_url, email=email, error=exc.message, status_code=401)
    settings = request.app.state.settings
    token, _ = await service.start_session(session, user=user, days=settings.session_days)
    response = see_other(next_url)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    await service.end_session(session, token=request.cookies.get(SESSION_COOKIE, ""))
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response

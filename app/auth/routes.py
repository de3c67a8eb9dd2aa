"""Sign-in and sign-out pages."""

import hmac
import secrets
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import service
from app.auth.deps import SESSION_COOKIE, CurrentUser, OptionalPrincipal, cookie_name
from app.db import SessionDep
from app.errors import NotAuthenticated, RateLimited
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


def _set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    *,
    samesite: Literal["lax", "strict"],
    max_age: int | None = None,
) -> None:
    """HttpOnly, for the whole site, and over HTTPS only (with the __Host- prefix) when
    ICC_SECURE_COOKIES is on."""
    response.set_cookie(
        cookie_name(request, name),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite=samesite,
        secure=request.app.state.settings.secure_cookies,
    )


def _delete_cookie(request: Request, response: Response, name: str) -> None:
    # A browser ignores the removal of a __Host- cookie that does not repeat its attributes.
    response.delete_cookie(
        cookie_name(request, name), path="/", httponly=True, secure=request.app.state.settings.secure_cookies
    )


def _login_page(
    request: Request,
    *,
    next_url: str,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = request.cookies.get(cookie_name(request, LOGIN_CSRF_COOKIE)) or secrets.token_urlsafe(24)
    response = render(
        request,
        "auth/login.html",
        {"next_url": next_url, "email": email, "error": error, "login_csrf": token},
        status_code=status_code,
        headers=headers,
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, samesite="strict")
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
    cookie = request.cookies.get(cookie_name(request, LOGIN_CSRF_COOKIE), "")
    if not cookie or not hmac.compare_digest(cookie, login_csrf):
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            status_code=403,
            error="This sign-in form expired. Please try again.",
        )
    settings = request.app.state.settings
    try:
        user = await service.authenticate(
            session,
            email=email,
            password=password,
            client_address=request.client.host if request.client else None,
            limits=service.SignInLimits.from_settings(settings),
        )
    except RateLimited as exc:
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            error=exc.message,
            status_code=exc.status_code,
            headers=exc.headers,
        )
    except NotAuthenticated as exc:
        return _login_page(request, next_url=next_url, email=email, error=exc.message, status_code=401)
    token, _ = await service.start_session(session, user=user, days=settings.session_days)
    response = see_other(next_url)
    max_age = settings.session_days * 86400
    _set_cookie(request, response, SESSION_COOKIE, token, samesite="lax", max_age=max_age)
    _delete_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    await service.end_session(session, token=request.cookies.get(cookie_name(request, SESSION_COOKIE), ""))
    response = see_other("/login")
    _delete_cookie(request, response, SESSION_COOKIE)
    return response

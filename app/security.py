"""The security headers every response carries, added at the outermost layer of the application.

They are added where the ASGI messages leave the application (`CommandCenter.__call__`), so the
public status copies sent before any middleware, static files, redirects and every error (404,
413, 500) carry them too. A header the response set itself wins: that is how a page that needs
another Content-Security-Policy (the API docs, the pages that draw diagrams) or a cache policy
(the status copies) says so.
"""

from starlette.types import Message, Send

# Only the product's own scripts, styles, fonts and connections; no inline script or style, no
# eval, no plugins, no <base> rewriting, forms post only here, and no other site frames a page.
STRICT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The runbook viewer shows only runbooks, written by the organisation and reviewed in git, whose
# images may come from any https address. Pages that show text from outside (alerts, timeline
# entries) keep `img-src 'self' data:`, so no such text makes a browser fetch from elsewhere.
RUNBOOK_VIEWER_HEADERS = {
    "Content-Security-Policy": STRICT_POLICY.replace("img-src 'self' data:", "img-src 'self' data: https:")
}

# The one document allowed inline styles: the sandboxed frame in which mermaid lays diagrams out
# (static/js/diagram-renderer.js). It holds only the diagram source it is sent, connects nowhere,
# and only this site may frame it. Image nodes of a diagram may come from any https address, as
# runbook images do.
DIAGRAM_RENDERER_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https:; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
}
HSTS = "max-age=63072000; includeSubDomains"  # two years
STATIC_PREFIX = "/static/"


def security_headers(*, secure_cookies: bool) -> list[tuple[bytes, bytes]]:
    """The headers added to every response (HSTS only when the site is served over HTTPS)."""
    headers = {
        "Content-Security-Policy": STRICT_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }
    if secure_cookies:
        headers["Strict-Transport-Security"] = HSTS
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


# Pages and API answers may hold incident details: no browser or proxy keeps them unless the
# response says otherwise (the public status copies do). The product's static files may be kept.
NO_STORE = (b"cache-control", b"no-store")


def with_security_headers(send: Send, headers: list[tuple[bytes, bytes]], *, path: str) -> Send:
    """`send`, adding `headers` that the response did not set itself to the start of every
    HTTP response, and `Cache-Control: no-store` outside /static/."""
    defaults = headers if path.startswith(STATIC_PREFIX) else [*headers, NO_STORE]

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            own = list(message.get("headers", ()))
            present = {name.lower() for name, _ in own}
            added = [(name, value) for name, value in defaults if name not in present]
            message = {**message, "headers": own + added}
        await send(message)

    return send_with_headers

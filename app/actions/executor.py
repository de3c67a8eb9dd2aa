"""The executor: check where a run would go, send it once, read a capped answer.

The destination is checked on the address the name resolves to (not the name), and the request
is sent to that checked address, so a DNS answer that changes between check and connect cannot
redirect it. No proxies from the environment, no redirects, a hard deadline for the whole call.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.actions.catalog import ENV_REF, Catalog

EXCERPT_BYTES = 4096  # the response read is capped here; the rest is never downloaded
RUN_ID_HEADER = "X-ICC-Run-Id"
SIGNATURE_HEADER = "X-ICC-Signature"
SECRET_HEADER_WORDS = ("authorization", "token", "secret", "key", "cookie", "password")
MASK = "••••••"


class SendRefused(Exception):
    """The run may not go out (destination not allowed, a secret missing); the message says why."""


@dataclass(frozen=True)
class Outcome:
    state: str  # succeeded | failed | timed_out
    http_status: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None


def sign(secret: str, body: bytes) -> str:
    """The X-ICC-Signature value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def masked_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as a person may see them: environment references and secret-looking values masked."""
    shown = {}
    for name, value in headers.items():
        if any(word in name.lower() for word in SECRET_HEADER_WORDS):
            prefix = value.split(" ", 1)[0] + " " if " " in value else ""
            shown[name] = prefix + MASK
        else:
            shown[name] = ENV_REF.sub(MASK, value)
    return shown


def resolve_headers(headers: dict[str, str]) -> dict[str, str]:
    """Replace ${env:NAME} with the variable's value, at send time only."""

    def value_of(match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SendRefused(f"the environment variable {name} (named in a header) is not set")
        return os.environ[name]

    return {name: ENV_REF.sub(value_of, value) for name, value in headers.items()}


def host_allowed(catalog: Catalog, host: str, port: int) -> bool:
    """Is host:port on the allowlist (entries `host:port` or `host:*`)?"""
    for entry in catalog.allowlist:
        entry_host, _, entry_port = entry.rpartition(":")
        if entry_host.strip("[]") == host and (entry_port == "*" or int(entry_port) == port):
            return True
    return False


def address_problem(catalog: Catalog, host: str, address: str) -> str | None:
    """Why this resolved address may not be called, or None when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return f"{host} resolves to {ip}, a link-local address (cloud metadata lives there)"
    if ip.is_multicast:
        return f"{host} resolves to {ip}, a multicast address"
    if ip.is_unspecified:
        return f"{host} resolves to {ip}, an unspecified address"
    if ip.is_reserved:
        return f"{host} resolves to {ip}, a reserved address"
    if (ip.is_loopback or ip.is_private or not ip.is_global) and host not in catalog.allow_private:
        kind = "loopback" if ip.is_loopback else "private"
        return f"{host} resolves to {ip}, a {kind} address, and is not in [actions] allow_private"
    return None


def destination(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80)


async def check_destination(catalog: Catalog, url: str) -> str:
    """The one address this URL may be sent to, or SendRefused saying why not."""
    _scheme, host, port = destination(url)
    if not host_allowed(catalog, host, port):
        raise SendRefused(f"{host}:{port} is not on the actions allowlist")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5
            )
        except (OSError, TimeoutError) as exc:
            raise SendRefused(f"{host} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise SendRefused(f"{host} does not resolve")
    for address in addresses:  # every answer must be acceptable, not just the first
        if problem := address_problem(catalog, host, address):
            raise SendRefused(problem)
    return addresses[0]


async def send(
    catalog: Catalog,
    *,
    run_id: int,
    method: str,
    url: str,
    headers: dict[str, str],
    body: str,
    timeout: float,  # noqa: ASYNC109 - per action, and enforced with asyncio.timeout below
) -> Outcome:
    """Send the run's request once and describe what came back. Never raises for the network."""
    started = time.monotonic()

    def outcome(state: str, status: int | None = None, excerpt: str | None = None, error: str | None = None):
        return Outcome(state, status, int((time.monotonic() - started) * 1000), excerpt, error)

    try:
        address = await check_destination(catalog, url)
        sent_headers = resolve_headers(headers)
    except SendRefused as exc:
        return outcome("failed", error=f"Refused: {exc}.")
    scheme, host, port = destination(url)
    parts = urlsplit(url)
    netloc = (f"[{address}]" if ":" in address else address) + f":{port}"
    target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    content = body.encode()
    default_port = 443 if scheme == "https" else 80
    sent_headers.update(
        {
            "Host": host if port == default_port else f"{host}:{port}",
            "User-Agent": "incident-command-center",
            "Accept-Encoding": "identity",  # the excerpt is the bytes as sent, no decompression
            RUN_ID_HEADER: str(run_id),
            SIGNATURE_HEADER: sign(catalog.signing_secret, content),
        }
    )
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    read = bytearray()
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False) as client,
            client.stream(
                method, target, headers=sent_headers, content=content or None, extensions=extensions
            ) as response,
        ):
            async for chunk in response.aiter_raw():
                read += chunk
                if len(read) >= EXCERPT_BYTES:
                    break
            status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return outcome("timed_out", error=f"No answer within {timeout:g} s.")
    except httpx.HTTPError as exc:
        return outcome("failed", error=f"Could not complete the request: {type(exc).__name__}: {exc}"[:500])
    excerpt = bytes(read[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
    if 200 <= status < 300:
        return outcome("succeeded", status, excerpt)
    note = "Redirect not followed." if 300 <= status < 400 else f"The receiver answered {status}."
    return outcome("failed", status, excerpt, note)

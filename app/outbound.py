"""The one guard for every request the product sends: remediation webhooks, escalation webhooks.

The destination must be on the policy's allowlist; the name is resolved here and every address it
resolves to is checked (not the name): link-local, multicast, unspecified and reserved addresses
are always refused, private and loopback ones unless the host is in the policy's allow_private.
The request then goes to the checked address (the Host header and TLS SNI keep the name), so a
DNS answer that changes between check and connect cannot redirect it. No proxies from the
environment, no redirects, a hard deadline for the whole call, and a capped read of the answer.
"""

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

EXCERPT_BYTES = 4096  # the response read is capped here; the rest is never downloaded
RESOLVE_TIMEOUT = 5.0
USER_AGENT = "incident-command-center"


class SendRefused(Exception):
    """The request may not go out (destination not allowed, a secret missing); the message says why."""


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Where one part of the product may send requests, as an admin wrote it in icc.toml."""

    section: str  # the icc.toml table that sets it ("actions", "escalation"), named in refusals
    allowlist: tuple[str, ...]  # `host:port` or `host:*`
    allow_private: tuple[str, ...]  # hosts that may resolve to private or loopback addresses


@dataclass(frozen=True)
class Outcome:
    state: str  # succeeded | failed | timed_out
    http_status: int | None
    duration_ms: int
    excerpt: str | None
    error: str | None
    refused: bool = False  # stopped before anything was sent: trying again will not change that


def refusal(reason: SendRefused, duration_ms: int = 0) -> Outcome:
    """The outcome of a request that was not sent, and why."""
    return Outcome("failed", None, duration_ms, None, f"Refused: {reason}.", refused=True)


def destination(url: str) -> tuple[str, str, int]:
    """The scheme, the lower-cased host and the port (explicit or the scheme's) of a URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80)


def host_allowed(policy: Policy, host: str, port: int) -> bool:
    """Is host:port on the allowlist (entries `host:port` or `host:*`)?"""
    for entry in policy.allowlist:
        entry_host, _, entry_port = entry.rpartition(":")
        if entry_host.strip("[]") == host and (entry_port == "*" or int(entry_port) == port):
            return True
    return False


def address_problem(policy: Policy, host: str, address: str) -> str | None:
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
    if (ip.is_loopback or ip.is_private or not ip.is_global) and host not in policy.allow_private:
        kind = "loopback" if ip.is_loopback else "private"
        return f"{host} resolves to {ip}, a {kind} address, and is not in [{policy.section}] allow_private"
    return None


async def check_destination(policy: Policy, url: str) -> str:
    """The one address this URL may be sent to, or SendRefused saying why not."""
    _scheme, host, port = destination(url)
    if not host_allowed(policy, host, port):
        raise SendRefused(f"{host}:{port} is not on the {policy.section} allowlist")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                timeout=RESOLVE_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise SendRefused(f"{host} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise SendRefused(f"{host} does not resolve")
    for address in addresses:  # every answer must be acceptable, not just the first
        if problem := address_problem(policy, host, address):
            raise SendRefused(problem)
    return addresses[0]


async def send(
    policy: Policy,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes,
    timeout: float,  # noqa: ASYNC109 - per request, and enforced with asyncio.timeout below
) -> Outcome:
    """Check the destination, send the request once and describe what came back.

    Never raises for the network: a refusal, an error, a timeout and a non-2xx answer are
    outcomes. A redirect is not followed (the 3xx is the answer)."""
    started = time.monotonic()

    def outcome(state: str, status: int | None = None, excerpt: str | None = None, error: str | None = None):
        return Outcome(state, status, int((time.monotonic() - started) * 1000), excerpt, error)

    try:
        address = await check_destination(policy, url)
    except SendRefused as exc:
        return refusal(exc, int((time.monotonic() - started) * 1000))
    scheme, host, port = destination(url)
    parts = urlsplit(url)
    netloc = (f"[{address}]" if ":" in address else address) + f":{port}"
    target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    default_port = 443 if scheme == "https" else 80
    sent_headers = {
        **headers,
        "Host": host if port == default_port else f"{host}:{port}",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",  # the excerpt is the bytes as sent, no decompression
    }
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

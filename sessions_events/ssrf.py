"""Which webhook URLs may be called: http(s) only, and (unless WEBHOOK_ALLOW_PRIVATE) only hosts
whose every address is globally routable, so that a registered endpoint cannot reach loopback,
the private network, link-local addresses or a cloud's metadata service (169.254.169.254)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


def url_problem(url: str) -> str | None:
    """Why this is no webhook URL (scheme, host), or None. No name is resolved."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is no number
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https"):
        return "not an http:// or https:// URL"
    if not parts.hostname:
        return "no host"
    return None


async def refusal(url: str, *, allow_private: bool) -> str | None:
    """Why a request to this URL is refused now, or None. Resolves its host: an endpoint whose
    name comes to resolve to a private address is refused from then on."""
    problem = url_problem(url)
    if problem is not None or allow_private:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return f"{host} resolves to a non-public address ({address})"
    return None

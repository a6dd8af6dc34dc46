"""What the audit trail records of a request: its id and the client's address."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from sessions_http.access import request_id_of
from store.models import Actor


def client_address(request: HTTPConnection) -> str:
    """The peer's address (a proxy's, unless uvicorn's --forwarded-allow-ips trusts it)."""
    return request.client.host if request.client else "unknown"


def request_id(request: HTTPConnection) -> str:
    """The request's id (sessions_http/access.py chose it as the request came in)."""
    known = getattr(request.state, "request_id", None)
    if isinstance(known, str):
        return known
    return request_id_of(request.scope)


def user_actor(request: HTTPConnection) -> Actor:
    """The signed-in user, acting through this request (GraphQL or REST)."""
    return Actor("user", request_id=request_id(request), client_addr=client_address(request))

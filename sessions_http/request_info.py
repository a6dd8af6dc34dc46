"""What the audit trail records of a request: its id and the client's address."""

from __future__ import annotations

import re
import uuid

from starlette.requests import HTTPConnection

from store.models import Actor

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def client_address(request: HTTPConnection) -> str:
    """The peer's address (a proxy's, unless uvicorn's --forwarded-allow-ips trusts it)."""
    return request.client.host if request.client else "unknown"


def request_id(request: HTTPConnection) -> str:
    """The request's id: the caller's X-Request-Id when it is a sane one, else a new one."""
    known = getattr(request.state, "request_id", None)
    if isinstance(known, str):
        return known
    given = request.headers.get("x-request-id", "")
    chosen = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request.state.request_id = chosen
    return chosen


def user_actor(request: HTTPConnection) -> Actor:
    """The signed-in user, acting through this request (GraphQL or REST)."""
    return Actor("user", request_id=request_id(request), client_addr=client_address(request))

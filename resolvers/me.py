"""The signed-in user: whoever the psession cookie's active session belongs to."""

from __future__ import annotations

from resolvers.errors import Unauthenticated
from resolvers.scope import RequestScope
from store.models import SessionRecord


async def signed_in(scope: RequestScope) -> SessionRecord:
    """The session making the request; Unauthenticated when the cookie names no active one."""
    session = await scope.cookie_session()
    if session is None:
        raise Unauthenticated()
    return session

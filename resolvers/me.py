"""The signed-in user: whoever the psession cookie's active session belongs to."""

from __future__ import annotations

from graph.context import Context
from graph.errors import Unauthenticated
from store.models import SessionRecord


async def current_session(ctx: Context) -> SessionRecord:
    session = await ctx.current_session()
    if session is None:
        raise Unauthenticated()
    return session

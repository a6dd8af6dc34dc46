"""Revoking sessions: one by id, or all but the current one. Only ever the caller's own."""

from __future__ import annotations

from graph.context import Context
from graph.errors import CurrentSession, NotFound
from resolvers.me import current_session
from store.models import canonical_session_id


async def revoke_session(ctx: Context, *, session_id: str) -> bool:
    current = await current_session(ctx)
    # Compared in one spelling: `{ID}` or upper case must not get past the check below.
    canonical = canonical_session_id(session_id)
    if canonical == current.id:
        raise CurrentSession()
    # Another user's id and an unknown one are answered alike, so ids reveal nothing.
    if (
        canonical is None
        or await ctx.store.revoke(user_id=current.user_id, session_id=canonical) is None
    ):
        raise NotFound("You have no session with this id.")
    return True


async def revoke_other_sessions(ctx: Context) -> int:
    current = await current_session(ctx)
    return await ctx.store.revoke_others(user_id=current.user_id, keep_session_id=current.id)

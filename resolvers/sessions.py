"""A user's active sessions (from Redis), newest first."""

from __future__ import annotations

from graph.context import Context
from store.models import SessionRecord


async def active_sessions(ctx: Context, *, user_id: str) -> list[SessionRecord]:
    return await ctx.store.list_active_for_user(user_id=user_id, now=ctx.now)

"""Revoking sessions: one by id, or all but the current one. Only ever the caller's own."""

from __future__ import annotations

from resolvers.errors import CurrentSession, NotFound
from resolvers.me import signed_in
from resolvers.scope import RequestScope
from store.models import canonical_session_id


async def revoke_session(scope: RequestScope, *, session_id: str) -> bool:
    current = await signed_in(scope)
    # Compared in one spelling: `{ID}` or upper case must not get past the check below.
    canonical = canonical_session_id(session_id)
    if canonical == current.id:
        raise CurrentSession()
    # Another user's id and an unknown one are answered alike, so ids reveal nothing.
    if (
        canonical is None
        or await scope.store.revoke(
            user_id=current.user_id, session_id=canonical, actor=scope.actor
        )
        is None
    ):
        raise NotFound("You have no session with this id.")
    return True


async def revoke_other_sessions(scope: RequestScope) -> int:
    current = await signed_in(scope)
    return await scope.store.revoke_others(
        user_id=current.user_id, keep_session_id=current.id, actor=scope.actor
    )

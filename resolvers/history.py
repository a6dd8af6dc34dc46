"""A user's past sessions (from Postgres), newest first, a page at a time (keyset pagination)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

from loaders.geo_by_ip import Locations, Reservation
from resolvers.errors import BadUserInput
from resolvers.geo import with_geo
from resolvers.scope import RequestScope
from store.models import EPOCH, HistoryRows, PagePosition, SessionRecord

# Page sizes, for GraphQL's `first` and REST's `?limit=` alike.
DEFAULT_PAGE = 50
MAX_PAGE = 200

_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(record: SessionRecord) -> str:
    # Microseconds: rows written by other writers may have sub-second times, and a cursor that
    # rounded them would skip rows on the page boundary.
    raw = f"{(record.created_at - EPOCH) // _MICROSECOND}:{record.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> PagePosition:
    """The (created_at, id) a cursor points after; BAD_USER_INPUT for anything we did not make."""
    try:
        if len(cursor) > 100:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, session_id = raw.split(":", 1)
        return PagePosition(EPOCH + int(micros) * _MICROSECOND, str(uuid.UUID(session_id)))
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise BadUserInput("`after` is not a cursor this API gave out.") from None


@dataclass
class HistoryPage:
    records: list[SessionRecord]
    has_next: bool
    geo: Locations


async def history_page(
    scope: RequestScope, *, user_id: str, first: int, after: str | None, want_geo: bool
) -> HistoryPage:
    """One page, read once per request for each set of arguments: 40 aliases of `history` with
    the same arguments make one Postgres query."""
    if not 0 <= first <= MAX_PAGE:
        raise BadUserInput(f"`first` must be between 0 and {MAX_PAGE}.")
    position = decode_cursor(after) if after is not None else None
    return await scope.once(
        ("history", user_id, first, position, want_geo),
        # The geo reservation is taken now, before this resolver's first await.
        lambda: _load(scope, scope.geo.reserve(), user_id, first, position, want_geo),
    )


async def _load(
    scope: RequestScope,
    reservation: Reservation,
    user_id: str,
    first: int,
    position: PagePosition | None,
    want_geo: bool,
) -> HistoryPage:
    def fetch() -> Awaitable[HistoryRows]:
        return scope.shared(
            ("history-rows", user_id, first, position),
            lambda: scope.postgres_read(
                lambda: scope.store.list_history_for_user(
                    user_id=user_id, first=first, after=position, now=scope.now
                )
            ),
        )

    rows, located = await with_geo(
        reservation, fetch, lambda rows: [r.client_ip for r in rows.records] if want_geo else []
    )
    return HistoryPage(rows.records, rows.has_next, located)

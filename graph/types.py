"""The GraphQL types: Me, Session, History (with its Relay-style connection), Geo, Device, the
mutations, and the subscription's SessionEvent. Each type has one constructor from what the
resolvers return (`of`), but History and HistoryEdge, whose values are HistoryRow objects that
HistoryConnection.of makes."""

from __future__ import annotations

import enum
import functools
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import strawberry
from graphql import OperationDefinitionNode

from graph.context import Info, LiveInfo
from resolvers import history, live, me, revoke, sessions
from resolvers.history import DEFAULT_PAGE
from sessions_events.payload import Enriched
from sessions_geo.model import GeoInfo
from sessions_rules import device
from sessions_rules.signals import MAX_KMH, Signals
from store.errors import StorageUnavailable
from store.models import SessionRecord, parse_timestamp

GEO_DESCRIPTION = "Where clientIp is; null for private, unknown or not yet located addresses."
NEW_LOCATION_DESCRIPTION = (
    "True when no earlier session of this user was in the same place (docs/SIGNALS.md); false "
    "when this session's place is unknown. Null, with an UNAVAILABLE error, while the session "
    "history cannot be read."
)
IMPOSSIBLE_TRAVEL_DESCRIPTION = (
    "True when reaching this session's place from the user's previous session's needed more "
    f"than {MAX_KMH:g} km/h (docs/SIGNALS.md). Null, with an UNAVAILABLE error, while the "
    "session history cannot be read."
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _copy(cls: type[T], source: Any) -> T:
    """A GraphQL type from a plain record that has (at least) the type's fields."""
    return cls(**{name: getattr(source, name) for name in _field_names(cls)})


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _selects(info: Info, *names: str) -> bool:
    """Whether the query selects any of these fields anywhere below the field being resolved.
    The answer depends on the operation and the field's place in it (not on variables: this
    reads the selections as written), so it is kept with the operation, for as long as the
    operation is (parsed documents and plans are cached, so later requests find it)."""
    keys = []
    at: Any = info.path
    while at is not None:
        if isinstance(at.key, str):
            keys.append(at.key)
        at = at.prev
    known = _answers_of(info.operation)
    key = (tuple(keys), names)
    answer = known.get(key)
    if answer is None:
        answer = known[key] = any(_walk(field.selections, names) for field in info.selected_fields)
    return answer


def _walk(selections: Iterable[Any], names: tuple[str, ...]) -> bool:
    for selection in selections:
        if getattr(selection, "name", None) in names:
            return True
        if _walk(getattr(selection, "selections", ()), names):
            return True
    return False


_MEMO_SIZE = 4096
# By the identity of the operation (AST nodes compare equal by their contents, and two
# operations written alike can spread different fragments); an entry goes with its operation.
_SELECTS: dict[int, dict[tuple[tuple[str, ...], tuple[str, ...]], bool]] = {}


def _answers_of(
    operation: OperationDefinitionNode,
) -> dict[tuple[tuple[str, ...], tuple[str, ...]], bool]:
    answers = _SELECTS.get(id(operation))
    if answers is None:
        answers = _SELECTS[id(operation)] = {}
        weakref.finalize(operation, _SELECTS.pop, id(operation), None)
    return answers


@strawberry.type(description="Where an IP address is. Every field is null when unknown.")
class Geo:
    city: str | None
    region_name: str | None
    country_code: str | None = strawberry.field(description="ISO 3166-1 alpha-2, e.g. US.")
    lat: float | None
    lon: float | None
    isp: str | None
    org: str | None
    is_mobile: bool | None
    is_proxy: bool | None
    is_hosting: bool | None

    @classmethod
    def of(cls, info: GeoInfo | None) -> Geo | None:
        return None if info is None else _geo_of(info)


@strawberry.type(description="The device a session signed in from, read from its user agent.")
class Device:
    browser: str | None = strawberry.field(description="e.g. Chrome; null when unknown.")
    browser_version: str | None
    os: str | None = strawberry.field(description="e.g. Mac OS X; null when unknown.")
    os_version: str | None
    device_type: str = strawberry.field(description="One of desktop, mobile, tablet, bot, unknown.")
    is_mobile: bool | None = strawberry.field(
        description="True for phones and tablets, false for desktops, null when unknown."
    )

    @classmethod
    def of(cls, user_agent: str) -> Device:
        return _device_of(device.parse_device(user_agent))


# One GraphQL value per distinct place and device: a page shows the same few many times over,
# and nothing changes them once made. So compiled plans may also reuse the answer they made for
# one of them (graph/compiled/generate.py).
SHARED_VALUES = frozenset({"Geo", "Device"})

# Places are kept by the identity of their GeoInfo (the geolocation layer hands out one per
# cache entry), with it, so that the identity stays theirs.
_GEO_BY_INFO: dict[int, tuple[GeoInfo, Geo]] = {}


def _geo_of(info: GeoInfo) -> Geo:
    known = _GEO_BY_INFO.get(id(info))
    if known is not None and known[0] is info:
        return known[1]
    geo = _copy(Geo, info)
    if len(_GEO_BY_INFO) >= _MEMO_SIZE:
        _GEO_BY_INFO.clear()
    _GEO_BY_INFO[id(info)] = (info, geo)
    return geo


@functools.lru_cache(maxsize=1024)
def _device_of(info: device.DeviceInfo) -> Device:
    return _copy(Device, info)


@strawberry.enum(description="Why a session is over.")
class EndReason(enum.Enum):
    LOGOUT = "logout"
    REVOKED = "revoked"
    EXPIRED = "expired"


def _device(self: Session | History | HistoryRow) -> Device:
    # Read from the user agent when asked for (the v1 page does not ask).
    return Device.of(self.user_agent)


_END_REASONS = {reason.value: reason for reason in EndReason}

# What a session's signals are when the query does not select them (never shown).
_UNSELECTED = Signals(is_new_location=False, impossible_travel=False)


@strawberry.type(description="An active session of the signed-in user.")
class Session:
    id: strawberry.ID
    token_suffix: str = strawberry.field(description="The last 6 characters of the token.")
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None = strawberry.field(
        description="When it last made a request (to the minute); null if never recorded."
    )
    client_ip: str = strawberry.field(description="The IP address the session signed in from.")
    user_agent: str
    device: Device = strawberry.field(resolver=_device)
    is_current: bool = strawberry.field(description="True for the session making this request.")
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)
    # Or why they cannot be told (Postgres is down).
    signals: strawberry.Private[Signals | StorageUnavailable]

    @classmethod
    def of(cls, record: SessionRecord, found: sessions.ActiveSessionList, *, me: Me) -> Session:
        return cls(
            id=strawberry.ID(record.id),
            token_suffix=record.token_suffix,
            created_at=record.created_at,
            expires_at=record.expires_at,
            last_seen_at=record.last_seen_at,
            client_ip=record.client_ip,
            user_agent=record.user_agent,
            is_current=record.id == me.current_session_id,
            geo=Geo.of(found.geo.get(record.client_ip)),
            signals=found.signals_unavailable or found.signals.get(record.id, _UNSELECTED),
        )

    @strawberry.field(description=NEW_LOCATION_DESCRIPTION)
    def is_new_location(self) -> bool | None:
        return self._signals().is_new_location

    @strawberry.field(description=IMPOSSIBLE_TRAVEL_DESCRIPTION)
    def impossible_travel(self) -> bool | None:
        return self._signals().impossible_travel

    def _signals(self) -> Signals:
        if isinstance(self.signals, StorageUnavailable):
            # A fresh error for each field: the GraphQL error lands on that field alone.
            raise StorageUnavailable(self.signals.dependency, self.signals.why)
        return self.signals


@strawberry.type(description="A session that has ended (signed out, revoked) or expired.")
class History:
    id: strawberry.ID
    token_suffix: str = strawberry.field(description="The last 6 characters of the token.")
    created_at: datetime
    ended_at: datetime = strawberry.field(
        description="When it ended; for an expired session, when it expired."
    )
    end_reason: EndReason
    client_ip: str
    user_agent: str
    device: Device = strawberry.field(resolver=_device)
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)


def _cursor(self: HistoryEdge | HistoryRow) -> str:
    # Encoded when asked for (the v1 page does not ask).
    return history.encode_cursor(self.record)


class HistoryRow:
    """A past session as GraphQL reads it: its History node and its HistoryEdge at once (`node`
    is the row itself), holding what the fields of both are read from. A page makes one per
    session on every request, and one plain object costs a third of the two Strawberry ones."""

    __slots__ = (
        "client_ip",
        "created_at",
        "end_reason",
        "ended_at",
        "geo",
        "id",
        "record",
        "token_suffix",
        "user_agent",
    )

    def __init__(self, record: SessionRecord, geo: Geo | None) -> None:
        assert record.ended_at is not None
        self.id = record.id
        self.token_suffix = record.token_suffix
        self.created_at = record.created_at
        self.ended_at = record.ended_at
        self.end_reason = _END_REASONS[record.end_reason or "expired"]
        self.client_ip = record.client_ip
        self.user_agent = record.user_agent
        self.geo = geo
        self.record = record

    @property
    def node(self) -> HistoryRow:
        return self


@strawberry.type
class HistoryEdge:
    cursor: str = strawberry.field(resolver=_cursor)
    node: History
    record: strawberry.Private[SessionRecord]


def _end_cursor(self: PageInfo) -> str | None:
    # Encoded when asked for (the v1 page does not ask).
    return None if self.last is None else history.encode_cursor(self.last)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(resolver=_end_cursor)
    last: strawberry.Private[SessionRecord | None]


@strawberry.type
class HistoryConnection:
    edges: list[HistoryEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: history.HistoryPage) -> HistoryConnection:
        located = page.geo
        rows = []
        for record in page.records:
            info = located.get(record.client_ip)
            # _geo_of's lookup, written out: one call fewer per row.
            known = _GEO_BY_INFO.get(id(info))
            if known is not None and known[0] is info:
                rows.append(HistoryRow(record, known[1]))
            else:
                rows.append(HistoryRow(record, None if info is None else _geo_of(info)))
        # The rows stand in for HistoryEdge and History: both engines only read attributes.
        edges = cast("list[HistoryEdge]", rows)
        last = page.records[-1] if page.records else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next, last=last))


@strawberry.type(description="The signed-in user.")
class Me:
    id: strawberry.ID = strawberry.field(description="The user's id.")
    current_session_id: strawberry.Private[str]

    @classmethod
    def of(cls, session: SessionRecord) -> Me:
        return cls(id=strawberry.ID(session.user_id), current_session_id=session.id)

    @strawberry.field(description="Active sessions, newest first.")
    async def sessions(self, info: Info) -> list[Session]:
        found = await sessions.active_sessions(
            info.context,
            user_id=self.id,
            want_geo=_selects(info, "geo"),
            want_signals=_selects(info, "isNewLocation", "impossibleTravel"),
        )
        return [Session.of(r, found, me=self) for r in found.records]

    @strawberry.field(
        description="Sessions that have ended or expired, newest first. Null, with an error, "
        "when they cannot be read (UNAVAILABLE while Postgres is down, BAD_USER_INPUT for bad "
        "arguments); the active sessions still show."
    )
    async def history(
        self,
        info: Info,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> HistoryConnection | None:
        page = await history.history_page(
            info.context,
            user_id=self.id,
            first=DEFAULT_PAGE if first is None else first,
            after=after,
            want_geo=_selects(info, "geo"),
        )
        return HistoryConnection.of(page)


@strawberry.type
class Query:
    @strawberry.field(
        description="The user of the psession cookie; null with an UNAUTHENTICATED error if none."
    )
    async def me(self, info: Info) -> Me | None:
        return Me.of(await me.signed_in(info.context))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Revokes one of your sessions (not the current one). True once it is "
        "revoked, also when it already was; NOT_FOUND for an id that is not yours."
    )
    async def revoke_session(self, info: Info, id: strawberry.ID) -> bool:
        return await revoke.revoke_session(info.context, session_id=str(id))

    @strawberry.mutation(
        description="Revokes all your active sessions except the current one; returns how many."
    )
    async def revoke_other_sessions(self, info: Info) -> int:
        return await revoke.revoke_other_sessions(info.context)


@strawberry.enum(description="What happened to a session.")
class SessionEventType(enum.Enum):
    CREATED = "session.created"
    ENDED = "session.ended"
    REVOKED = "session.revoked"
    EXPIRED = "session.expired"


@strawberry.type(
    description="A change to one of your sessions: one signed in (CREATED), or one ended by "
    "signing out (ENDED), by a revoke (REVOKED) or by expiring (EXPIRED)."
)
class SessionEvent:
    type: SessionEventType
    occurred_at: datetime
    session: Session | None = strawberry.field(
        description="CREATED: the new session, as me.sessions lists it (isCurrent false: it is "
        "never the one subscribed, and lastSeenAt null). Null for the others."
    )
    ended_session: History | None = strawberry.field(
        description="ENDED, REVOKED, EXPIRED: the session as me.history lists it now. Null for "
        "CREATED."
    )

    @classmethod
    def of(cls, enriched: Enriched) -> SessionEvent:
        event = enriched.event
        data = event.data
        kind = SessionEventType(event.type)
        geo = Geo.of(enriched.geo)
        session = ended = None
        if kind is SessionEventType.CREATED:
            session = Session(
                id=strawberry.ID(event.session_id),
                token_suffix=str(data["token_suffix"]),
                created_at=parse_timestamp(str(data["created_at"])),
                expires_at=parse_timestamp(str(data["expires_at"])),
                last_seen_at=None,
                client_ip=enriched.client_ip,
                user_agent=str(data["user_agent"]),
                is_current=False,
                geo=geo,
                signals=enriched.signals or _UNSELECTED,
            )
        else:
            ended_at = data.get("ended_at")
            ended = History(
                id=strawberry.ID(event.session_id),
                token_suffix=str(data["token_suffix"]),
                created_at=parse_timestamp(str(data["created_at"])),
                ended_at=parse_timestamp(str(ended_at)) if ended_at else event.occurred_at,
                end_reason=_END_REASONS[str(data.get("end_reason") or "expired")],
                client_ip=enriched.client_ip,
                user_agent=str(data["user_agent"]),
                geo=geo,
            )
        return cls(type=kind, occurred_at=event.occurred_at, session=session, ended_session=ended)


async def _session_events(events: AsyncIterator[Enriched]) -> AsyncGenerator[SessionEvent, None]:
    async for enriched in events:
        yield SessionEvent.of(enriched)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Your session events from now on, as they happen, over WebSocket "
        "(graphql-transport-ws) at /graphql. The connection closes with code 4401 when the "
        "session it signed in with ends. TOO_MANY_SUBSCRIPTIONS over the limits."
    )
    async def session_events(self, info: LiveInfo) -> AsyncGenerator[SessionEvent, None]:
        # Not a generator itself: a refusal is raised here, before the stream starts, and
        # reaches the client as the subscription's error.
        return _session_events(live.session_events(info.context.connection))

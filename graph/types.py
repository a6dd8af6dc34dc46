"""The GraphQL types: Me, Session, History (with its Relay-style connection), Geo, Device, and
the mutations."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from graph.context import Info
from resolvers import history, me, revoke, sessions
from resolvers.history import DEFAULT_PAGE
from sessions_geo.model import GeoInfo
from sessions_rules import device
from store.errors import StorageUnavailable
from store.models import SessionRecord

GEO_DESCRIPTION = "Where clientIp is; null for private, unknown or not yet located addresses."


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
        if info is None:
            return None
        return cls(
            city=info.city,
            region_name=info.region_name,
            country_code=info.country_code,
            lat=info.lat,
            lon=info.lon,
            isp=info.isp,
            org=info.org,
            is_mobile=info.is_mobile,
            is_proxy=info.is_proxy,
            is_hosting=info.is_hosting,
        )


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
    def of_user_agent(cls, user_agent: str) -> Device:
        found = device.parse_device(user_agent)
        return cls(
            browser=found.browser,
            browser_version=found.browser_version,
            os=found.os,
            os_version=found.os_version,
            device_type=found.device_type,
            is_mobile=found.is_mobile,
        )


@strawberry.enum(description="Why a session is over.")
class EndReason(enum.Enum):
    LOGOUT = "logout"
    REVOKED = "revoked"
    EXPIRED = "expired"


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
    device: Device
    is_current: bool = strawberry.field(description="True for the session making this request.")
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)
    # (is_new_location, impossible_travel), or why they cannot be told (Postgres is down).
    signals: strawberry.Private[tuple[bool, bool] | StorageUnavailable]

    @strawberry.field(
        description="True when no earlier session of this user was in the same place "
        "(docs/SIGNALS.md); false when this session's place is unknown. Null, with an "
        "UNAVAILABLE error, while the session history cannot be read."
    )
    def is_new_location(self) -> bool | None:
        return self._signal(0)

    @strawberry.field(
        description="True when reaching this session's place from the user's previous session's "
        "needed more than 900 km/h (docs/SIGNALS.md). Null, with an UNAVAILABLE error, while "
        "the session history cannot be read."
    )
    def impossible_travel(self) -> bool | None:
        return self._signal(1)

    def _signal(self, index: int) -> bool:
        if isinstance(self.signals, StorageUnavailable):
            # A fresh error for each field: the GraphQL error lands on that field alone.
            raise StorageUnavailable(self.signals.dependency, self.signals.why)
        return self.signals[index]


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
    device: Device
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)

    @classmethod
    def of(cls, record: SessionRecord, *, geo: Geo | None) -> History:
        assert record.ended_at is not None
        return cls(
            id=strawberry.ID(record.id),
            token_suffix=record.token_suffix,
            created_at=record.created_at,
            ended_at=record.ended_at,
            end_reason=EndReason(record.end_reason or "expired"),
            client_ip=record.client_ip,
            user_agent=record.user_agent,
            device=Device.of_user_agent(record.user_agent),
            geo=geo,
        )


@strawberry.type
class HistoryEdge:
    cursor: str
    node: History


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class HistoryConnection:
    edges: list[HistoryEdge]
    page_info: PageInfo


@strawberry.type(description="The signed-in user.")
class Me:
    id: strawberry.ID = strawberry.field(description="The user's id.")
    current_session_id: strawberry.Private[str]

    @strawberry.field(description="Active sessions, newest first.")
    async def sessions(self, info: Info) -> list[Session]:
        found = await sessions.active_sessions(info, user_id=self.id)
        # Signals are computed only when the query selects them; unselected, the value is unseen.
        no_signals = (False, False)
        unavailable = found.signals_unavailable
        return [
            Session(
                id=strawberry.ID(r.id),
                token_suffix=r.token_suffix,
                created_at=r.created_at,
                expires_at=r.expires_at,
                last_seen_at=r.last_seen_at,
                client_ip=r.client_ip,
                user_agent=r.user_agent,
                device=Device.of_user_agent(r.user_agent),
                is_current=r.id == self.current_session_id,
                geo=Geo.of(found.geo.get(r.client_ip)),
                signals=unavailable or found.signals.get(r.id, no_signals),
            )
            for r in found.records
        ]

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
            info,
            user_id=self.id,
            first=DEFAULT_PAGE if first is None else first,
            after=after,
        )
        edges = [
            HistoryEdge(
                cursor=history.encode_cursor(r),
                node=History.of(r, geo=Geo.of(page.geo.get(r.client_ip))),
            )
            for r in page.records
        ]
        return HistoryConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
        )


@strawberry.type
class Query:
    @strawberry.field(
        description="The user of the psession cookie; null with an UNAUTHENTICATED error if none."
    )
    async def me(self, info: Info) -> Me | None:
        session = await me.current_session(info.context)
        return Me(id=strawberry.ID(session.user_id), current_session_id=session.id)


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

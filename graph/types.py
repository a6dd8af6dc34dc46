"""The GraphQL types: Me, Session, History (with its Relay-style connection) and Geo."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graph.context import Info
from loaders.geo.model import GeoInfo
from resolvers import geo, history, me, sessions
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


@strawberry.type(description="An active session of the signed-in user.")
class Session:
    id: strawberry.ID
    token_suffix: str = strawberry.field(description="The last 6 characters of the token.")
    created_at: datetime
    expires_at: datetime
    client_ip: str = strawberry.field(description="The IP address the session signed in from.")
    user_agent: str
    is_current: bool = strawberry.field(description="True for the session making this request.")
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)

    @classmethod
    def of(cls, record: SessionRecord, *, current_id: str, geo: Geo | None) -> Session:
        return cls(
            id=strawberry.ID(record.id),
            token_suffix=record.token_suffix,
            created_at=record.created_at,
            expires_at=record.expires_at,
            client_ip=record.client_ip,
            user_agent=record.user_agent,
            is_current=record.id == current_id,
            geo=geo,
        )


@strawberry.type(description="A session that has ended (signed out, revoked) or expired.")
class History:
    id: strawberry.ID
    token_suffix: str = strawberry.field(description="The last 6 characters of the token.")
    created_at: datetime
    ended_at: datetime = strawberry.field(
        description="When it ended; for an expired session, when it expired."
    )
    client_ip: str
    user_agent: str
    geo: Geo | None = strawberry.field(description=GEO_DESCRIPTION)

    @classmethod
    def of(cls, record: SessionRecord, *, geo: Geo | None) -> History:
        assert record.ended_at is not None
        return cls(
            id=strawberry.ID(record.id),
            token_suffix=record.token_suffix,
            created_at=record.created_at,
            ended_at=record.ended_at,
            client_ip=record.client_ip,
            user_agent=record.user_agent,
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
        records, located = await geo.with_geo(
            info, lambda: sessions.active_sessions(info.context, user_id=self.id)
        )
        return [
            Session.of(r, current_id=self.current_session_id, geo=Geo.of(located.get(r.client_ip)))
            for r in records
        ]

    @strawberry.field(description="Sessions that have ended or expired, newest first.")
    async def history(
        self,
        info: Info,
        first: int | None = history.DEFAULT_PAGE,
        after: str | None = None,
    ) -> HistoryConnection:
        page_size = history.DEFAULT_PAGE if first is None else first
        has_next = False

        async def fetch() -> list[SessionRecord]:
            nonlocal has_next
            page, has_next = await history.history_page(
                info.context, user_id=self.id, first=page_size, after=after
            )
            return page

        page, located = await geo.with_geo(info, fetch)
        edges = [
            HistoryEdge(
                cursor=history.encode_cursor(r),
                node=History.of(r, geo=Geo.of(located.get(r.client_ip))),
            )
            for r in page
        ]
        return HistoryConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None
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

"""`sessions` (resolvers/sessions.py) on the real app: the user's active sessions newest first,
the current one marked, with geo, the device each session (active or past) signed in from, and the
location signals isNewLocation and impossibleTravel (docs/SIGNALS.md), computed with one batched
geolocation lookup for every list of the request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from store.models import format_timestamp, utcnow
from store.sessions import IssuedSession
from tests.app_client import by_id, fresh_ip, graphql_data
from tests.conftest import Users
from tests.ipapi_server import IpApiServer, answer_for

pytestmark = pytest.mark.redis_topologies

LONDON_IP = "81.2.69.142"
MOUNTAIN_VIEW_IP = "8.8.8.8"
PRIVATE_IP = "10.20.30.40"

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

LIST_QUERY = """
{
  me {
    id
    sessions {
      id tokenSuffix createdAt expiresAt clientIp userAgent isCurrent
      geo { countryCode isp org }
    }
  }
}
"""
DEVICE = "device { browser browserVersion os osVersion deviceType isMobile }"
DEVICE_QUERY = f"""
{{ me {{ sessions {{ id {DEVICE} }} history {{ edges {{ node {{ id {DEVICE} }} }} }} }} }}
"""
SIGNALS_QUERY = """
{ me { sessions { id clientIp isNewLocation impossibleTravel geo { city } } } }
"""


async def graphql(url: str, token: str, query: str) -> dict[str, Any]:
    """The `data` of a query to the app at `url` (the offline one, or the one on ip-api)."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as c:
        return await graphql_data(c, query, token=token)


# -- the list --------------------------------------------------------------------------------------


async def test_sessions_newest_first_with_current_marked_and_geo(
    client: httpx.AsyncClient, users: Users
) -> None:
    user_id = users.new_id()
    now = utcnow()
    private_ip = fresh_ip(10)
    oldest = await users.session(
        user_id, ip="8.8.8.8", user_agent="Firefox", created_at=now - timedelta(hours=3)
    )
    current = await users.session(
        user_id,
        ip=private_ip,
        user_agent="Safari",
        created_at=now - timedelta(hours=2),
        expires_at=now + timedelta(days=2),
    )
    newest = await users.session(
        user_id, ip=fresh_ip(), user_agent="Chrome", created_at=now - timedelta(hours=1)
    )
    # Another user's session must not show up.
    await users.session(users.new_id(), ip=fresh_ip())

    sessions = (await graphql_data(client, LIST_QUERY, token=current.token))["me"]["sessions"]

    assert [s["id"] for s in sessions] == [newest.record.id, current.record.id, oldest.record.id]
    assert [s["isCurrent"] for s in sessions] == [False, True, False]

    by_id = {s["id"]: s for s in sessions}
    mine = by_id[current.record.id]
    assert mine["tokenSuffix"] == current.token[-6:]
    assert mine["createdAt"] == format_timestamp(now - timedelta(hours=2))
    assert mine["expiresAt"] == format_timestamp(now + timedelta(days=2))
    assert mine["clientIp"] == private_ip
    assert mine["userAgent"] == "Safari"
    assert mine["geo"] is None  # a private address is never located

    google = by_id[oldest.record.id]
    assert google["clientIp"] == "8.8.8.8"
    assert google["userAgent"] == "Firefox"
    assert google["geo"] == {"countryCode": "US", "isp": "GOOGLE", "org": "GOOGLE"}
    for s in sessions:
        assert s["createdAt"].endswith("Z") and len(s["createdAt"]) == 20


# -- device ----------------------------------------------------------------------------------------


async def test_device_of_active_and_past_sessions(server: str, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    mac = await users.session(uid, ip=fresh_ip(), user_agent=CHROME_MAC)
    phone = await users.session(uid, ip=fresh_ip(), user_agent=IPHONE_SAFARI)
    blank = await users.session(uid, ip=fresh_ip(), user_agent="")
    past_phone = await users.session(
        uid,
        ip=fresh_ip(),
        user_agent=IPHONE_SAFARI,
        created_at=t - timedelta(days=2),
        ended_at=t - timedelta(days=1),
    )
    past_mac = await users.session(
        uid,
        ip=fresh_ip(),
        user_agent=CHROME_MAC,
        created_at=t - timedelta(days=3),
        ended_at=t - timedelta(days=2),
    )

    data = (await graphql(server, mac.token, DEVICE_QUERY))["me"]
    sessions = by_id(data["sessions"])
    history = by_id([e["node"] for e in data["history"]["edges"]])

    mac_device = {
        "browser": "Chrome",
        "browserVersion": "131.0.0",
        "os": "Mac OS X",
        "osVersion": "10.15.7",
        "deviceType": "desktop",
        "isMobile": False,
    }
    assert sessions[mac.record.id]["device"] == mac_device
    assert history[past_mac.record.id]["device"] == mac_device

    for device in (sessions[phone.record.id]["device"], history[past_phone.record.id]["device"]):
        assert device["deviceType"] == "mobile"
        assert device["isMobile"] is True
        assert device["os"] == "iOS"
        assert device["browser"] == "Mobile Safari"

    assert sessions[blank.record.id]["device"] == {
        "browser": None,
        "browserVersion": None,
        "os": None,
        "osVersion": None,
        "deviceType": "unknown",
        "isMobile": None,
    }


# -- location signals (ip-api provider: cities and coordinates) ------------------------------------


async def test_is_new_location(ipapi_app: str, users: Users) -> None:
    uid = users.new_id()
    t = utcnow()
    await users.session(
        uid, ip=LONDON_IP, created_at=t - timedelta(days=10), ended_at=t - timedelta(days=9)
    )
    london = await users.session(uid, ip=LONDON_IP, created_at=t - timedelta(days=3))
    mountain_view = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=2))
    unknown = await users.session(uid, ip=PRIVATE_IP, created_at=t - timedelta(days=1))

    sessions = by_id((await graphql(ipapi_app, unknown.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[london.record.id]["geo"] == {"city": "London"}
    assert sessions[london.record.id]["isNewLocation"] is False
    assert sessions[mountain_view.record.id]["geo"] == {"city": "Mountain View"}
    assert sessions[mountain_view.record.id]["isNewLocation"] is True
    assert sessions[unknown.record.id]["geo"] is None
    assert sessions[unknown.record.id]["isNewLocation"] is False
    # Days apart: nothing impossible about these trips.
    assert not any(s["impossibleTravel"] for s in sessions.values())


def fresh_ip_in(city: str) -> str:
    """A fresh address that the fake ip-api server places in `city` (its answers are stable)."""
    while True:
        ip = fresh_ip()
        if answer_for(ip)["city"] == city:
            return ip


async def test_a_past_session_from_another_address_in_the_same_city_is_the_same_place(
    ipapi_app: str, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    await users.session(
        uid,
        ip=fresh_ip_in("Tokyo"),
        created_at=t - timedelta(days=5),
        ended_at=t - timedelta(days=4),
    )
    tokyo = await users.session(uid, ip=fresh_ip_in("Tokyo"), created_at=t - timedelta(days=2))
    austin = await users.session(uid, ip=fresh_ip_in("Austin"), created_at=t - timedelta(days=1))
    sessions = by_id((await graphql(ipapi_app, tokyo.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[tokyo.record.id]["geo"] == {"city": "Tokyo"}
    assert sessions[tokyo.record.id]["isNewLocation"] is False
    assert sessions[austin.record.id]["geo"] == {"city": "Austin"}
    assert sessions[austin.record.id]["isNewLocation"] is True


async def test_the_first_located_session_of_a_user_is_new(ipapi_app: str, users: Users) -> None:
    session = await users.session(users.new_id(), ip=LONDON_IP)
    (item,) = (await graphql(ipapi_app, session.token, SIGNALS_QUERY))["me"]["sessions"]
    assert item["isNewLocation"] is True
    assert item["impossibleTravel"] is False


async def test_a_later_session_in_the_same_place_does_not_make_an_earlier_one_known(
    ipapi_app: str, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    first = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=2))
    second = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=t - timedelta(days=1))
    sessions = by_id((await graphql(ipapi_app, second.token, SIGNALS_QUERY))["me"]["sessions"])
    assert sessions[first.record.id]["isNewLocation"] is True
    assert sessions[second.record.id]["isNewLocation"] is False


@pytest.mark.parametrize(
    ("gap", "impossible"),
    [(timedelta(hours=1), True), (timedelta(days=2), False)],
    ids=["one hour", "two days"],
)
async def test_impossible_travel_london_to_mountain_view(
    ipapi_app: str, users: Users, gap: timedelta, impossible: bool
) -> None:
    uid = users.new_id()
    t = utcnow()
    arrived = t - timedelta(minutes=5)
    # The previous session is a past one: signals look at every session of the user.
    london = await users.session(
        uid, ip=LONDON_IP, created_at=arrived - gap, ended_at=arrived - gap + timedelta(minutes=1)
    )
    mountain_view = await users.session(uid, ip=MOUNTAIN_VIEW_IP, created_at=arrived)
    viewer = await users.session(uid, ip=PRIVATE_IP)

    sessions = by_id((await graphql(ipapi_app, viewer.token, SIGNALS_QUERY))["me"]["sessions"])
    assert london.record.id not in sessions
    assert sessions[mountain_view.record.id]["impossibleTravel"] is impossible
    assert sessions[mountain_view.record.id]["isNewLocation"] is True
    # The viewer's place is unknown: nothing to compare.
    assert sessions[viewer.record.id]["impossibleTravel"] is False


async def past_sessions(users: Users, user_id: str, ips: list[str]) -> None:
    """One past session of the user from each address: the first a day ago, the next a day
    before, and so on; each an hour long."""
    t = utcnow()
    for n, ip in enumerate(ips):
        await users.session(
            user_id,
            ip=ip,
            created_at=t - timedelta(days=n + 1),
            ended_at=t - timedelta(days=n + 1) + timedelta(hours=1),
        )


async def test_signals_need_one_batched_lookup_for_all_sessions(
    ipapi_app: str, ipapi: IpApiServer, users: Users
) -> None:
    """On a cold cache, the IPs of the active sessions and of the whole timeline (past sessions
    included) are looked up in one provider request: no lookup per session."""
    uid = users.new_id()
    t = utcnow()
    active_ips = [fresh_ip() for _ in range(5)]
    past_ips = [fresh_ip() for _ in range(6)]
    created: list[IssuedSession] = []
    for n, ip in enumerate(active_ips):
        created.append(await users.session(uid, ip=ip, created_at=t - timedelta(hours=n)))
    await past_sessions(users, uid, past_ips)

    ipapi.reset()
    query = "{ me { sessions { id isNewLocation impossibleTravel } } }"
    sessions = (await graphql(ipapi_app, created[0].token, query))["me"]["sessions"]
    assert len(sessions) == len(active_ips)
    assert len(ipapi.requests) == 1, [r.queries for r in ipapi.requests]
    assert sorted(ipapi.requests[0].queries) == sorted(active_ips + past_ips)

    # Asked again, with geo and history too: the cache answers, the provider hears nothing.
    ipapi.reset()
    await graphql(
        ipapi_app,
        created[0].token,
        "{ me { sessions { isNewLocation geo { city } }"
        " history { edges { node { geo { city } } } } } }",
    )
    assert ipapi.requests == []


async def test_signals_geo_and_history_share_one_lookup(
    ipapi_app: str, ipapi: IpApiServer, users: Users
) -> None:
    uid = users.new_id()
    t = utcnow()
    ips = [fresh_ip() for _ in range(6)]
    current = await users.session(uid, ip=ips[0])
    await users.session(uid, ip=ips[1], created_at=t - timedelta(hours=1))
    await past_sessions(users, uid, ips[2:])
    ipapi.reset()
    data = await graphql(
        ipapi_app,
        current.token,
        "{ me { sessions { isNewLocation impossibleTravel geo { city } }"
        " history { edges { node { geo { city } } } } } }",
    )
    assert len(data["me"]["history"]["edges"]) == 4
    assert all(s["geo"] is not None for s in data["me"]["sessions"])
    assert len(ipapi.requests) == 1, [r.queries for r in ipapi.requests]
    assert sorted(ipapi.requests[0].queries) == sorted(ips)

"""The loader's rounds within one request: each IP is looked up once, whichever round asks for
it first; a later round that asks again gets that answer; a failed lookup fails its waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from loaders.geo_by_ip import GeoByIpLoader
from sessions_geo.lookup import GeoLookup
from sessions_geo.model import GeoInfo


class RecordingLookup:
    """Answers every IP with its own city, and notes what it was asked."""

    def __init__(self, *, fail: bool = False) -> None:
        self.asked: list[list[str]] = []
        self.fail = fail

    async def many(self, ips: Sequence[str]) -> list[GeoInfo | None]:
        self.asked.append(list(ips))
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("lookup failed")
        return [GeoInfo(city=f"city of {ip}") for ip in ips]


def loader_of(lookup: RecordingLookup) -> GeoByIpLoader:
    return GeoByIpLoader(cast(GeoLookup, lookup))


async def test_one_lookup_per_round_and_none_for_ips_asked_before() -> None:
    lookup = RecordingLookup()
    loader = loader_of(lookup)
    sessions, history = loader.reserve(), loader.reserve()
    first = await asyncio.gather(
        sessions.submit(["1.1.1.1", "8.8.8.8"]), history.submit(["8.8.8.8", "9.9.9.9"])
    )
    assert lookup.asked == [["1.1.1.1", "8.8.8.8", "9.9.9.9"]]
    assert first[0]["8.8.8.8"] == GeoInfo(city="city of 8.8.8.8")
    assert set(first[1]) == {"1.1.1.1", "8.8.8.8", "9.9.9.9"}

    # A later round of the same request: only the new IP is looked up.
    later = await loader.reserve().submit(["9.9.9.9", "4.4.4.4"])
    assert lookup.asked[1:] == [["4.4.4.4"]]
    assert later["9.9.9.9"] == GeoInfo(city="city of 9.9.9.9")
    assert later["4.4.4.4"] == GeoInfo(city="city of 4.4.4.4")

    # Nothing new: no lookup at all.
    again = await loader.reserve().submit(["1.1.1.1"])
    assert len(lookup.asked) == 2 and again == {"1.1.1.1": GeoInfo(city="city of 1.1.1.1")}


async def test_a_released_reservation_does_not_hold_the_round() -> None:
    lookup = RecordingLookup()
    loader = loader_of(lookup)
    sessions, history = loader.reserve(), loader.reserve()
    history.release()
    assert await sessions.submit(["1.1.1.1"]) == {"1.1.1.1": GeoInfo(city="city of 1.1.1.1")}


async def test_a_failed_lookup_fails_the_waiters_of_its_round_and_later_rounds_for_its_ips() -> (
    None
):
    loader = loader_of(RecordingLookup(fail=True))
    sessions, history = loader.reserve(), loader.reserve()
    results = await asyncio.gather(
        sessions.submit(["1.1.1.1"]), history.submit(["2.2.2.2"]), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await loader.reserve().submit(["2.2.2.2"])


async def test_a_waiter_cancelled_leaves_the_round_to_the_others() -> None:
    loader = loader_of(RecordingLookup())
    sessions, history = loader.reserve(), loader.reserve()
    gone = asyncio.ensure_future(sessions.submit(["1.1.1.1"]))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(history.submit(["2.2.2.2"]))
    await asyncio.sleep(0)  # both have arrived: the round's lookup is under way
    gone.cancel()
    assert set(await waiting) == {"1.1.1.1", "2.2.2.2"}
    assert gone.cancelled()


async def test_the_last_list_in_cancelled_mid_lookup_leaves_the_round_to_the_others() -> None:
    lookup = RecordingLookup()
    loader = loader_of(lookup)
    sessions, history = loader.reserve(), loader.reserve()
    waiting = asyncio.ensure_future(sessions.submit(["1.1.1.1"]))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(history.submit(["2.2.2.2"]))
    await asyncio.sleep(0)  # the last list in is running the round's lookup
    assert lookup.asked == [["1.1.1.1", "2.2.2.2"]]
    gone.cancel()
    assert set(await waiting) == {"1.1.1.1", "2.2.2.2"}
    assert gone.cancelled()


async def test_a_round_whose_last_list_needs_no_lookup_still_runs() -> None:
    loader = loader_of(RecordingLookup())
    sessions, history = loader.reserve(), loader.reserve()
    waiting = asyncio.ensure_future(sessions.submit(["1.1.1.1"]))
    await asyncio.sleep(0)
    history.release()
    assert await waiting == {"1.1.1.1": GeoInfo(city="city of 1.1.1.1")}

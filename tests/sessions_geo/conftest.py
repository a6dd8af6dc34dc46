"""IpApiProvider on its own: a fresh fake ip-api server for each test (`fake`), a clock the test
moves, and the provider asking that server on that clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sessions_geo.ipapi import IpApiProvider
from tests.ipapi_provider import FakeClock
from tests.ipapi_server import IpApiServer


@pytest.fixture
def fake() -> Iterator[IpApiServer]:
    with IpApiServer() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def provider(fake: IpApiServer, clock: FakeClock) -> AsyncIterator[IpApiProvider]:
    p = IpApiProvider(fake.url, clock=clock)
    yield p
    await p.aclose()

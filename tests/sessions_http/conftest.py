"""An app whose Redis does not answer, for the routes' answers to that outage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sessions_config.settings import Settings
from tests.servers import serve


@pytest.fixture(scope="module")
def redis_down_app(base_settings: Settings, database: str) -> Iterator[str]:
    """The app with a REDIS_URL where nothing listens (port 1)."""
    settings = base_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with serve(settings) as url:
        yield url


@pytest.fixture
async def down_client(redis_down_app: str) -> AsyncIterator[httpx.AsyncClient]:
    # The timeout is the "no hang" bound: every answer below must come well before it.
    async with httpx.AsyncClient(base_url=redis_down_app, timeout=15) as c:
        yield c

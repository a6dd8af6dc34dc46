"""ip-api.com batch provider (free tier, or pro when a key is given)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from loaders.geo import metrics
from loaders.geo.model import GeoInfo

log = logging.getLogger(__name__)

# Only what GeoInfo uses; ip-api sends fewer bytes and the answer stays small.
FIELDS = "status,message,query,city,regionName,countryCode,lat,lon,isp,org,mobile,proxy,hosting"
# How long to stay quiet after a transport error, timeout or bad answer, so a broken or slow
# provider is not hammered and does not slow down every page view.
FAILURE_BACKOFF_SECONDS = 30.0
# ip-api's window is a minute; used when a 429 comes without X-Ttl.
DEFAULT_RATE_LIMIT_SECONDS = 60.0


class IpApiProvider:
    name = "ip-api"
    # The batch endpoint refuses more than 100 queries per request (422).
    max_batch = 100

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        timeout: float = 3.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Logged and used without the query string, so the key never reaches the logs.
        self._url = base_url.rstrip("/") + "/batch"
        self._params = {"fields": FIELDS} if key is None else {"fields": FIELDS, "key": key}
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._clock = clock
        # Nothing is sent before this clock reading (rate limit or failure backoff).
        self._quiet_until = float("-inf")

    async def lookup(self, ips: Sequence[str]) -> Mapping[str, GeoInfo | None]:
        if len(ips) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} IPs per lookup, got {len(ips)}")
        if not ips or self._clock() < self._quiet_until:
            return {}
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange, so a server
            # that trickles its answer cannot hold the page longer than GEO_TIMEOUT either.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    self._url,
                    params=self._params,
                    json=[{"query": ip} for ip in ips],
                    timeout=self._timeout,  # also applies to a client passed in
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            return self._failed("timeout", type(exc).__name__)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The exception text is left out: it may carry the URL, and with it the key.
            return self._failed("transport", type(exc).__name__)
        self._note_rate_limit(response)
        if response.status_code == 429:
            metrics.PROVIDER_FAILURES.labels(self.name, "rate_limited").inc()
            log.warning("ip-api rate limit hit at %s; quiet for a while", self._url)
            return {}
        if response.status_code != 200:
            return self._failed("bad_answer", f"HTTP {response.status_code}")
        try:
            items: Any = response.json()
        except ValueError:
            return self._failed("bad_answer", "malformed JSON")
        if not isinstance(items, list) or len(items) != len(ips):
            return self._failed("bad_answer", "answer is not one item per query")
        answer: dict[str, GeoInfo | None] = {}
        for ip, item in zip(ips, items, strict=True):
            if isinstance(item, dict) and item.get("status") == "fail":
                answer[ip] = None  # e.g. "reserved range": the provider knows nothing
            elif isinstance(item, dict) and item.get("status") == "success":
                answer[ip] = _to_geo(item)
            # Anything else is left out: not looked up, so not cached either.
        return answer

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _note_rate_limit(self, response: httpx.Response) -> None:
        # At X-Rl: 0 another request gets a 429, and repeated 429s get the server's IP banned.
        ttl = _number(response.headers.get("X-Ttl"))
        if response.status_code == 429 or _number(response.headers.get("X-Rl")) == 0:
            wait = ttl if ttl is not None else DEFAULT_RATE_LIMIT_SECONDS
            self._quiet_until = max(self._quiet_until, self._clock() + wait)

    def _failed(self, reason: str, why: str) -> dict[str, GeoInfo | None]:
        metrics.PROVIDER_FAILURES.labels(self.name, reason).inc()
        log.warning(
            "ip-api lookup at %s failed (%s); quiet for %.0f s",
            self._url,
            why,
            FAILURE_BACKOFF_SECONDS,
        )
        self._quiet_until = max(self._quiet_until, self._clock() + FAILURE_BACKOFF_SECONDS)
        return {}


def _number(header: str | None) -> int | None:
    # Whole seconds, as ip-api sends them; anything odd counts as absent.
    try:
        value = int(header) if header is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _to_geo(item: dict[str, Any]) -> GeoInfo:
    def text(field: str) -> str | None:
        value = item.get(field)
        return value if isinstance(value, str) and value else None  # "" means unknown

    def number(field: str) -> float | None:
        value = item.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def flag(field: str) -> bool | None:
        value = item.get(field)
        return value if isinstance(value, bool) else None

    return GeoInfo(
        city=text("city"),
        region_name=text("regionName"),
        country_code=text("countryCode"),
        lat=number("lat"),
        lon=number("lon"),
        isp=text("isp"),
        org=text("org"),
        is_mobile=flag("mobile"),
        is_proxy=flag("proxy"),
        is_hosting=flag("hosting"),
    )

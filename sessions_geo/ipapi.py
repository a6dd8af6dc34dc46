"""ip-api.com batch provider (free tier, or pro when a key is given).

Its answers are untrusted input. The body is read up to MAX_ANSWER_BYTES, within GEO_TIMEOUT for
the whole exchange. An answer that cannot be used (not HTTP 200, over the size limit, not JSON,
nested too deeply, not one object per query with status success or fail, anything that makes
parsing raise) is a bad answer: nothing of it is used or cached, it is counted and logged on one
line, and the provider is left alone for FAILURE_BACKOFF_SECONDS. Within a good answer, each value
goes through GeoInfo.from_untrusted: one of the wrong type or out of range is unknown (null).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from sessions_geo import metrics
from sessions_geo.model import GeoInfo

log = logging.getLogger(__name__)

# ip-api's field name -> GeoInfo's.
_FIELD_NAMES = {
    "city": "city",
    "regionName": "region_name",
    "countryCode": "country_code",
    "lat": "lat",
    "lon": "lon",
    "isp": "isp",
    "org": "org",
    "mobile": "is_mobile",
    "proxy": "is_proxy",
    "hosting": "is_hosting",
}
# Only what GeoInfo uses; ip-api sends fewer bytes and the answer stays small.
FIELDS = ",".join(["status", "message", "query", *_FIELD_NAMES])
# How long to stay quiet after a transport error, timeout or bad answer, so a broken or slow
# provider is not hammered and does not slow down every page view.
FAILURE_BACKOFF_SECONDS = 30.0
# ip-api's window is a minute; used when a 429 comes without X-Ttl.
DEFAULT_RATE_LIMIT_SECONDS = 60.0
# A longer X-Ttl is taken as this: a provider cannot silence lookups for days.
MAX_RATE_LIMIT_SECONDS = 600
# A full answer for 100 IPs is about 30 KB; more is not an answer (read decompressed).
MAX_ANSWER_BYTES = 1 << 20


class BadAnswer(Exception):
    """The provider's answer cannot be used; the message says why (never the body)."""


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
            # that trickles its answer cannot hold the lookup longer than GEO_TIMEOUT either.
            async with asyncio.timeout(self._timeout):
                response, body = await self._post(ips)
        except (httpx.TimeoutException, TimeoutError) as exc:
            return self._failed("timeout", type(exc).__name__)
        except BadAnswer as exc:
            return self._failed("bad_answer", str(exc))
        except Exception as exc:
            # httpx's errors, and anything odd the server's bytes make the client raise. The
            # exception text is left out: it may carry the URL, and with it the key.
            return self._failed("transport", type(exc).__name__)
        self._note_rate_limit(response)
        if response.status_code == 429:
            metrics.PROVIDER_FAILURES.labels(self.name, "rate_limited").inc()
            log.warning("ip-api rate limit hit at %s; quiet for a while", self._url)
            return {}
        if response.status_code != 200:
            return self._failed("bad_answer", f"HTTP {response.status_code}")
        try:
            answer, refused = _parse(ips, body)
        except BadAnswer as exc:
            return self._failed("bad_answer", str(exc))
        except Exception as exc:
            # ValueError (not JSON, or an integer of thousands of digits), RecursionError (deep
            # nesting), ...: untrusted bytes, so whatever parsing raises is the provider's fault.
            return self._failed("bad_answer", f"unparsable answer: {type(exc).__name__}")
        if refused:
            log.warning(
                "ip-api answer at %s had unusable values in %s; those are unknown",
                self._url,
                ", ".join(sorted(refused)),
            )
        return answer

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _post(self, ips: Sequence[str]) -> tuple[httpx.Response, bytes]:
        """The response and, for a 200, its body, read up to MAX_ANSWER_BYTES."""
        async with self._client.stream(
            "POST",
            self._url,
            params=self._params,
            json=[{"query": ip} for ip in ips],
            timeout=self._timeout,  # also applies to a client passed in
        ) as response:
            if response.status_code != 200:
                return response, b""
            declared = _number(response.headers.get("Content-Length"))
            if declared is not None and declared > MAX_ANSWER_BYTES:
                raise BadAnswer(f"answer over {MAX_ANSWER_BYTES} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise BadAnswer(f"answer over {MAX_ANSWER_BYTES} bytes")
                chunks.append(chunk)
            return response, b"".join(chunks)

    def _note_rate_limit(self, response: httpx.Response) -> None:
        # At X-Rl: 0 another request gets a 429, and repeated 429s get the server's IP banned.
        ttl = _number(response.headers.get("X-Ttl"))
        if response.status_code == 429 or _number(response.headers.get("X-Rl")) == 0:
            wait = DEFAULT_RATE_LIMIT_SECONDS if ttl is None else min(ttl, MAX_RATE_LIMIT_SECONDS)
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
    # Whole seconds (or bytes), as ip-api sends them; anything odd counts as absent. Few digits:
    # int() of thousands of them is slow, and a huge one overflows float arithmetic.
    if header is None or not (header.isascii() and header.isdigit() and len(header) <= 12):
        return None
    return int(header)


def _parse(ips: Sequence[str], body: bytes) -> tuple[dict[str, GeoInfo | None], set[str]]:
    """The answer for each IP, and the names of the fields that had unusable values."""
    items: Any = json.loads(body)  # bytes: UTF-8 (or -16/-32, detected), else ValueError
    if not isinstance(items, list) or len(items) != len(ips):
        raise BadAnswer("answer is not one item per query")
    answer: dict[str, GeoInfo | None] = {}
    refused: set[str] = set()
    for ip, item in zip(ips, items, strict=True):
        status = item.get("status") if isinstance(item, dict) else None
        if status == "fail":
            answer[ip] = None  # e.g. "reserved range": the provider knows nothing
        elif status == "success":
            geo, bad = GeoInfo.from_untrusted(
                {ours: item.get(theirs) for theirs, ours in _FIELD_NAMES.items()}
            )
            refused.update(bad)
            # Success with nothing usable is "knows nothing", remembered for GEO_FAILURE_TTL.
            answer[ip] = None if geo.is_empty() else geo
        else:
            raise BadAnswer("an item is neither a success nor a fail")
    return answer, refused

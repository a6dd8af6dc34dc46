"""The geolocation pipeline behind GeoByIpLoader.

For a batch of IPs: non-global addresses are answered null without being sent anywhere; the rest
are read from the Redis cache in one MGET (an entry that fails GeoInfo's checks is a miss); only
the misses go to the provider, in batches of at most its max_batch; what the provider answered is
checked and cached.

Misses are fetched once per process: an IP that another request is already fetching joins that
fetch instead of starting one. A fetch is a task of its own, and a request waits for it at most
`wait` seconds (GEO_WAIT). After that, the IPs it has not answered are null ("not yet located")
for this request, while the fetch goes on (bounded by the provider's own timeout, GEO_TIMEOUT) and
caches its answer for the next request. Waiting requests have the answer as soon as the provider
gives it: the cache write comes after, so a Redis that is slow to take writes never holds a page.
A request that is cancelled while it waits never cancels the fetch; aclose() cancels the fetches
still running.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from sessions_geo import metrics
from sessions_geo.model import GeoInfo
from sessions_geo.provider import GeoProvider
from sessions_spans import Attributes, span
from store.geo_cache import CacheEntry, GeoCache
from store.memo import memo_of_short_texts

log = logging.getLogger(__name__)

Found = dict[str, GeoInfo | None]


@dataclass(frozen=True, slots=True)
class _Fetch:
    """One fetch under way: the task that asks the provider and then caches the answer, and
    the answer itself, which requests wait for (set before the cache write starts)."""

    task: asyncio.Task[None]
    answer: asyncio.Future[Found]


# Addresses are classified once per process (store/memo.py): a page asks for the same IPs on every
# request, and parsing one with ipaddress costs more than the rest of its lookup. No address is
# longer than 64 characters.
@memo_of_short_texts(entries=65536, max_text=64)
def global_ip(text: str) -> str | None:
    """The canonical form of a global (publicly routable) address, else None.

    Private, loopback, link-local, CGNAT, documentation and other reserved ranges are not global
    and are never sent to a provider. IPv4-mapped IPv6 addresses count as their IPv4 address.
    Text that is not an address (say, damaged stored data) is None too: it never raises.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address) if address.is_global else None


class GeoLookup:
    def __init__(
        self,
        provider: GeoProvider,
        cache: GeoCache,
        *,
        ttl: int,
        failure_ttl: int,
        wait: float | None = None,
    ) -> None:
        """`wait`: seconds a request waits for the provider; None waits until it answers."""
        self.provider = provider
        self._cache = cache
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._wait = wait
        # IP -> the fetch looking it up now. An entry stays until the answer is cached, so a
        # request that misses the cache meanwhile joins the fetch rather than repeating it.
        self._fetching: dict[str, _Fetch] = {}
        self._closed = False

    async def many(self, ips: Sequence[str]) -> list[GeoInfo | None]:
        """What is known of each IP, in order; None where nothing is (yet) known."""
        canonical = [global_ip(ip) for ip in ips]
        wanted = list(dict.fromkeys(ip for ip in canonical if ip is not None))
        known: Found = {}
        if wanted:
            # With traces on: the lookup as the request waits for it (the cache read, and the
            # provider's fetch it starts or joins). Never the addresses.
            with span("geo lookup", self._attributes(wanted)):
                known = await self._known(wanted)
        return [known.get(ip) if ip is not None else None for ip in canonical]

    async def aclose(self) -> None:
        """Cancels the fetches still running and waits for them; later misses stay null."""
        self._closed = True
        tasks = {fetch.task for fetch in self._fetching.values()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _known(self, ips: list[str]) -> Found:
        if not ips:
            return {}
        # Fetches under way are joined before the cache read and again after it, so a fetch
        # that finishes while the MGET is out has either cached its answer before the MGET
        # runs, or was already joined.
        joined = {ip: self._fetching[ip] for ip in ips if ip in self._fetching}
        known = await self._cached([ip for ip in ips if ip not in joined])
        metrics.IPS.labels("cache").inc(len(known))
        new: list[str] = []
        for ip in ips:
            if ip not in known and ip not in joined:
                fetch = self._fetching.get(ip)
                if fetch is not None:
                    joined[ip] = fetch
                else:
                    new.append(ip)
        if new and not self._closed:
            joined.update(dict.fromkeys(new, self._start(new)))
        if joined:
            found = await self._wait_for(joined)
            known.update(found)
            metrics.IPS.labels("provider").inc(len(found))
        # Not answered this time (provider failing, rate-limited, or slower than GEO_WAIT).
        metrics.IPS.labels("none").inc(len(ips) - len(known))
        return known

    async def _cached(self, ips: list[str]) -> Found:
        if not ips:
            return {}
        try:
            texts = await self._cache.get_many(ips)
        except (RedisError, OSError) as exc:
            log.warning("geo cache read failed, asking the provider: %r", exc)
            return {}
        known: Found = {}
        unusable = 0
        for ip, text in texts.items():
            try:
                known[ip] = GeoInfo.from_json(text)
            except (ValueError, TypeError, RecursionError):
                unusable += 1  # written by an older version, or not by us: looked up again
        if unusable:
            log.info("%d geo cache entries failed the checks; looking them up again", unusable)
        return known

    async def _wait_for(self, joined: dict[str, _Fetch]) -> Found:
        # asyncio.wait neither cancels the futures on timeout nor when this request is cancelled.
        answers = {fetch.answer for fetch in joined.values()}
        done, _ = await asyncio.wait(answers, timeout=self._wait)
        found: Found = {}
        for ip, fetch in joined.items():
            if fetch.answer in done and not fetch.answer.cancelled():
                answer = fetch.answer.result()  # _fetch never sets an exception
                if ip in answer:
                    found[ip] = answer[ip]
        return found

    def _start(self, ips: list[str]) -> _Fetch:
        answer: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._fetch(ips, answer), name=f"geo lookup of {len(ips)} IPs")
        fetch = _Fetch(task, answer)
        for ip in ips:
            self._fetching[ip] = fetch

        def finished(task: asyncio.Task[None]) -> None:
            for ip in ips:
                if self._fetching.get(ip) is fetch:
                    del self._fetching[ip]
            if not answer.done():  # cancelled by aclose before the provider answered
                answer.cancel()

        task.add_done_callback(finished)
        return fetch

    async def _fetch(self, ips: list[str], answer: asyncio.Future[Found]) -> None:
        """Asks the provider and checks its answers, hands them to the waiting requests, then
        caches them. Never raises (but may be cancelled, by aclose): a waiting request gets no
        exception from here."""
        try:
            found, entries = await self._ask(ips)
        except Exception as exc:
            log.error("geo lookup of %d IPs failed: %s", len(ips), type(exc).__name__)
            found, entries = {}, {}
        answer.set_result(found)
        try:
            await self._cache.put_many(entries)
        except (RedisError, OSError) as exc:
            log.warning("geo cache write failed: %r", exc)

    def _attributes(self, ips: list[str]) -> Attributes:
        return {"sessions_api.geo.provider": self.provider.name, "sessions_api.geo.ips": len(ips)}

    async def _ask(self, ips: list[str]) -> tuple[Found, dict[str, CacheEntry]]:
        """The provider's checked answers, and the cache entries to write for them."""
        size = self.provider.max_batch
        batches = [ips[i : i + size] for i in range(0, len(ips), size)]
        metrics.PROVIDER_BATCHES.labels(self.provider.name).inc(len(batches))
        # The provider's work (for ip-api, its HTTP requests are this span's children), which
        # may outlast the request that started it.
        with span("geo provider", self._attributes(ips)):
            answers = await asyncio.gather(
                *(self.provider.lookup(batch) for batch in batches), return_exceptions=True
            )
        found: Found = {}
        entries: dict[str, CacheEntry] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                # Providers report their own trouble and return no answer; this is a bug.
                log.error("geo provider %s raised %s", self.provider.name, type(answer).__name__)
                continue
            for ip, geo in answer.items():
                if geo is None:
                    found[ip] = None
                    entries[ip] = CacheEntry("null", self._failure_ttl)
                    continue
                # What is cached and shown is what a later cache read would accept, whatever
                # the provider: nothing unchecked (no NaN, no infinity) is kept.
                try:
                    text = geo.to_json()
                    found[ip] = GeoInfo.from_json(text)
                except (ValueError, TypeError):
                    log.error("geo provider %s gave an unusable answer", self.provider.name)
                    continue
                entries[ip] = CacheEntry(text, self._ttl)
        return found, entries

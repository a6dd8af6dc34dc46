"""The webhook dispatcher: fans session events out to the endpoints that want them, and delivers
them, at least once, signed per the Standard Webhooks specification, retried on the schedule of
WEBHOOK_RETRY_SCHEDULE with the same `webhook-id` each time.

Every `serve` process runs one, and so does `sessions-api webhooks run`; only the holder of a
Postgres advisory lock dispatches (store/webhooks.py), the others wait to take over. Deliveries
run concurrently, at most PER_ENDPOINT at a time to one endpoint, so that a slow endpoint holds
up only itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from standardwebhooks import Webhook

from sessions_config.settings import Settings
from sessions_events import metrics
from sessions_events.payload import render
from sessions_events.ssrf import refusal
from sessions_geo.lookup import GeoLookup
from store import webhooks
from store.errors import log_background_failure
from store.sessions import SessionStore
from store.webhooks import Delivery

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between two looks for new events and due deliveries
STANDBY_INTERVAL = 5.0  # seconds between two tries to become the dispatcher
CHECK_INTERVAL = 5.0  # seconds between two checks that the lock is still held
CONCURRENCY = 32  # deliveries in flight in all
PER_ENDPOINT = 4  # deliveries in flight to one endpoint
FAN_OUT_BATCH = 200
USER_AGENT = "sessions-api-webhooks"


def signed_headers(delivery_id: str, secret: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (its timestamp is now)."""
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, now, body),
    }


class Dispatcher:
    def __init__(
        self,
        store: SessionStore,
        geo: GeoLookup,
        settings: Settings,
        *,
        poll: float = POLL_INTERVAL,
    ) -> None:
        self._store = store
        self._geo = geo
        self._schedule = list(settings.webhook_retry_schedule)
        self._allow_private = settings.webhook_allow_private
        self._poll = poll
        # No redirects: a receiver must not send our signed events elsewhere (nor reach, by a
        # redirect, an address the SSRF check refused).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout), follow_redirects=False
        )
        self._sending: dict[tuple[str, int], asyncio.Task[None]] = {}
        # Deliveries that finished since the last look for due ones began: that look may have
        # read them as still due (before their outcome was written), and must not send them again.
        self._finished: set[tuple[str, int]] = set()

    async def aclose(self) -> None:
        await self._stop_sending()
        await self._client.aclose()

    async def run(self) -> None:
        """Until cancelled: becomes the dispatcher when no other process is, then dispatches."""
        pool = self._store.pool
        while True:
            try:
                async with webhooks.dispatcher_lock(pool) as held:
                    if held is not None:
                        log.info("webhooks: this process dispatches")
                        await self._dispatch(held)
            except Exception as exc:
                log_background_failure(log, "the webhook dispatcher", exc)
            finally:
                await self._stop_sending()
            await asyncio.sleep(STANDBY_INTERVAL)

    async def _dispatch(self, held: Any) -> None:
        """Rounds, for as long as the lock's connection lives: at once after a round that found
        work or when a delivery finishes, else after the poll interval."""
        checked = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - checked >= CHECK_INTERVAL:
                await held.fetchval("SELECT 1")  # still connected, so still holding the lock
                metrics.OLDEST_PENDING.set(await webhooks.oldest_pending_age(self._store.pool))
                checked = loop.time()
            worked = await self.tick()
            if self._sending:
                await asyncio.wait(
                    list(self._sending.values()),
                    timeout=self._poll,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            elif not worked:
                await asyncio.sleep(self._poll)

    async def tick(self) -> bool:
        """One round: fans out new events, starts the deliveries that are due. Whether it found
        anything to do."""
        fanned = await self.fan_out()
        return self._start_due(await self._due()) > 0 or fanned > 0

    async def fan_out(self) -> int:
        """Fans out the oldest events not fanned out yet; returns how many. Those another
        transaction holds (a user's deletion under way) are not counted: a round that could do
        nothing but wait for them is no work, and the next waits the poll interval."""
        pool = self._store.pool
        events = await webhooks.not_fanned_out(pool, limit=FAN_OUT_BATCH)
        if not events:
            return 0
        enabled = [e for e in await webhooks.endpoints(pool) if e.disabled_at is None]
        wanted = [e for e in events if any(ep.wants(e.type) for ep in enabled)]
        rendered = await render(self._store, self._geo, wanted)
        # An event no endpoint wants keeps no payload: nothing will ever send it.
        payloads: dict[int, dict[str, Any] | None] = {e.seq: rendered.get(e.seq) for e in events}
        return await webhooks.fan_out(pool, payloads=payloads)

    async def _due(self) -> list[Delivery]:
        if len(self._sending) >= CONCURRENCY:
            return []
        # Those finished before this look began are written; those finishing during it may not
        # be, as the look sees them.
        self._finished.clear()
        # The first PER_ENDPOINT due of each endpoint: those in flight are still due, so an
        # endpoint whose deliveries are all in flight gets no more until one finishes.
        return await webhooks.due(self._store.pool, limit=CONCURRENCY, per_endpoint=PER_ENDPOINT)

    def _start_due(self, deliveries: list[Delivery]) -> int:
        started = 0
        for delivery in deliveries:
            key = (delivery.endpoint_id, delivery.event_seq)
            if key in self._sending or key in self._finished or len(self._sending) >= CONCURRENCY:
                continue
            task = asyncio.create_task(self.deliver(delivery))
            self._sending[key] = task
            task.add_done_callback(self._sent(key))
            started += 1
        return started

    def _sent(self, key: tuple[str, int]) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._sending.pop(key, None)
            self._finished.add(key)

        return forget

    async def _stop_sending(self) -> None:
        tasks = list(self._sending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def deliver(self, delivery: Delivery) -> None:
        """One attempt, and what it came to."""
        status: int | None = None
        error: str | None = None
        problem = await refusal(delivery.url, allow_private=self._allow_private)
        if problem is not None:
            error, outcome = f"refused: {problem}", "refused"
        else:
            body = orjson.dumps(delivery.payload)
            headers = signed_headers(delivery.event_id, delivery.secret, body)
            try:
                answer = await self._client.post(delivery.url, content=body, headers=headers)
                status = answer.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            outcome = "delivered" if status is not None and 200 <= status < 300 else "retried"
        attempt = delivery.attempts + 1
        pool = self._store.pool
        try:
            if status == 410:
                metrics.DELIVERIES.labels("gone").inc()
                log.warning("webhooks: endpoint %s answered 410; disabled", delivery.endpoint_id)
                await webhooks.disable_endpoint(
                    pool, endpoint_id=delivery.endpoint_id, reason="410 Gone"
                )
                return
            retry_in = None
            if outcome != "delivered" and attempt <= len(self._schedule):
                retry_in = self._schedule[attempt - 1]
            elif outcome != "delivered":
                outcome = "failed"
            metrics.DELIVERIES.labels(outcome).inc()
            if retry_in is None:
                metrics.ATTEMPTS.observe(attempt)
            if outcome != "delivered":
                log.info(
                    "webhooks: event %s to endpoint %s, attempt %d: %s",
                    delivery.event_id,
                    delivery.endpoint_id,
                    attempt,
                    error or f"HTTP {status}",
                )
            await webhooks.record_attempt(
                pool,
                delivery=delivery,
                delivered=outcome == "delivered",
                status=status,
                error=error,
                retry_in=retry_in,
            )
        except Exception as exc:
            # Not recorded: the delivery stays due and is sent again (at least once).
            log.warning("webhooks: an attempt could not be recorded: %r", exc)

"""GeoByIpLoader: one per request, shared by the session and history lists, so that one query
makes a single batched lookup for all its distinct IPs.

The lists are fetched concurrently but finish at different times (Redis, Postgres), so a plain
DataLoader would dispatch one batch per list. Each list therefore *reserves* a place before its
first await and *submits* its IPs when it has them; the lookup runs once every reservation of the
round is in, for all IPs together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

from strawberry.dataloader import DataLoader

from sessions_geo.lookup import GeoLookup
from sessions_geo.model import GeoInfo

# Where each IP of a lookup round is (None: unknown).
Locations = dict[str, GeoInfo | None]
# A round's lookup, ready to run: it settles every waiter of the round and never raises.
RunRound = Callable[[], Coroutine[Any, Any, None]]


class GeoByIpLoader(DataLoader[str, GeoInfo | None]):
    """A DataLoader (`load` and `load_many` work as ever), whose rounds skip its per-key futures
    and queue: a round asks the lookup once for the IPs no earlier round of the request asked
    for, and takes the others' answers from their rounds. A page's 55 IPs through `load_many`
    cost more than the lookup itself."""

    def __init__(self, lookup: GeoLookup) -> None:
        # Never create one at module level: its cache would be shared across users.
        super().__init__(load_fn=lookup.many)
        self._lookup = lookup
        self._open = 0
        self._ips: list[str] = []
        self._round: asyncio.Future[Locations] | None = None
        # The futures the round's submitters wait on, one each (see Reservation.submit).
        self._waiters: list[asyncio.Future[Locations]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # IP -> the round of this request that looked it up (or is looking it up).
        self._asked_in: dict[str, asyncio.Future[Locations]] = {}

    def reserve(self) -> Reservation:
        """Call before the first await of a list resolver; submit or release it exactly once."""
        self._open += 1
        return Reservation(self)

    def _arrive(
        self, ips: Sequence[str], waiter: asyncio.Future[Locations] | None
    ) -> RunRound | None:
        """Adds a list's IPs to the round; the round's lookup when this was its last list."""
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
        if waiter is not None:
            self._waiters.append(waiter)
        self._ips.extend(ips)
        self._open -= 1
        return self._flush() if self._open == 0 else None

    def _flush(self) -> RunRound | None:
        this_round, ips, waiters = self._round, list(dict.fromkeys(self._ips)), self._waiters
        self._round, self._ips, self._waiters = None, [], []
        if this_round is None:
            return None
        earlier = {ip: self._asked_in[ip] for ip in ips if ip in self._asked_in}
        new = [ip for ip in ips if ip not in earlier]
        self._asked_in.update(dict.fromkeys(new, this_round))

        async def run() -> None:
            try:
                found = dict(zip(new, await self._lookup.many(new), strict=True)) if new else {}
                for ip, asked in earlier.items():
                    found[ip] = (await asked)[ip]
            except Exception as exc:  # handed to every waiter of the round
                _settle(this_round, waiters, {}, exc)
                return
            _settle(this_round, waiters, found, None)

        return run

    def _in_background(self, run: RunRound) -> None:
        # Hold a reference until it is done, so the task is not garbage-collected mid-flight.
        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _settle(
    this_round: asyncio.Future[Locations],
    waiters: list[asyncio.Future[Locations]],
    found: Locations,
    error: Exception | None,
) -> None:
    """Ends a round: its submitters' futures (but those whose wait was cancelled) and the round's
    own, which later rounds of the request wait on for the IPs it looked up."""
    for future in (this_round, *waiters):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(found)
    if error is not None and not this_round.cancelled():
        # Seen here: a round no later round asks again would log it as "never retrieved".
        this_round.exception()


class Reservation:
    def __init__(self, loader: GeoByIpLoader) -> None:
        self._loader = loader
        self._done = False

    async def submit(self, ips: Sequence[str]) -> Locations:
        """Waits for the round's single lookup and returns what it found for every IP."""
        self._done = True
        # A future of its own, which the round sets: this waiter being cancelled cancels only
        # that future, never the round for the others (as asyncio.shield would, with one
        # loop iteration and four callbacks more).
        waiter: asyncio.Future[Locations] = asyncio.get_running_loop().create_future()
        run = self._loader._arrive(ips, waiter)
        if run is not None:
            # The last list in runs the round's lookup itself: in a task of its own, the lookup
            # would start one loop iteration later.
            try:
                await run()
            except asyncio.CancelledError:
                # This waiter is gone, not the round: it starts again for the others (the
                # lookup only reads, and joins fetches under way).
                self._loader._in_background(run)
                raise
        return await waiter

    def release(self) -> None:
        """This list needs no lookup (no geo asked for, or it failed): don't hold the round up."""
        if not self._done:
            self._done = True
            run = self._loader._arrive((), None)
            if run is not None:
                self._loader._in_background(run)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

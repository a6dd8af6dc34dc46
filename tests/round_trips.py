"""A TCP proxy on loopback that counts round trips: each time a client speaks again after the
server has answered (or for the first time), one more. A pipeline of many commands sent at once
is one round trip, as on the wire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class CountingProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._lock = threading.Lock()
        self._round_trips = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    def settled(self, quiet: float = 0.3, bound: float = 10.0) -> int:
        """The count once nothing has moved for `quiet` seconds (work a request leaves behind,
        such as a connection going back to its pool, is counted too)."""
        deadline = time.monotonic() + bound
        last = self.round_trips
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.round_trips
            if now == last:
                return now
            last = now
        return last

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, upstream_writer))
        # Who spoke last on this connection: the server ("answered") or the client.
        state = {"answered": True}

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if from_client and state["answered"]:
                        with self._lock:
                            self._round_trips += 1
                    state["answered"] = not from_client
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                sink.close()
                self._writers.discard(sink)

        await asyncio.gather(
            pump(reader, upstream_writer, True), pump(upstream_reader, writer, False)
        )


@contextmanager
def counting_proxy(host: str, port: int) -> Iterator[CountingProxy]:
    with CountingProxy(host, port) as proxy:
        yield proxy

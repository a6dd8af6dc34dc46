"""A webhook receiver on loopback for the tests: a real HTTP server that records what it is sent
and answers what the test says (`statuses`: the codes of the next answers, then `status`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value

    def verified(self, secret: str) -> dict[str, Any]:
        """The payload, once its Standard Webhooks signature checks out with this secret."""
        value: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return value


class WebhookReceiver:
    """`port`: 0 for any free one. `hang`: seconds the first request waits before its answer
    (longer than the sender waits, it times out)."""

    def __init__(self, port: int = 0, *, hang: float = 0.0) -> None:
        self.status = 200
        self.statuses: list[int] = []  # answered first, one each, before `status`
        self.hang = hang
        self._lock = threading.Lock()
        self._received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                arrived = time.monotonic()
                with receiver._lock:
                    hang, receiver.hang = receiver.hang, 0.0
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver._received.append(Received(headers, body, status, arrived))
                time.sleep(hang)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A real HTTP server on loopback that speaks ip-api.com's batch protocol, for tests.

    with IpApiServer() as server:
        provider = IpApiProvider(server.url)
        ...
        assert len(server.requests) == 1

Settings (plain attributes, change them at any time; reset() restores them):
    remaining  requests left before rate limiting: X-Rl counts down from it, and at 0 the
               server answers 429. None = no limit (X-Rl then always says 15).
    ttl        the X-Ttl header value in seconds; None leaves X-Ttl out.
    rate_headers  False sends neither X-Rl nor X-Ttl (as if a proxy had dropped them).
    delay      seconds to wait before answering (to make clients time out; a large value hangs
               until the answer is released with release() or the server stops).
    mode       "ok", "error" (HTTP 500) or "broken-json" (200 with a truncated body).
    body       bytes to send verbatim as a 200 answer to /batch instead of the real answer, or a
               function of the queried IPs that gives them (NaN, 1e999, deep nesting, ...).
    headers    extra headers for every answer; they replace ours of the same name (so
               {"Content-Length": ...} can lie).
    drip       seconds to wait between the bytes of a body, sent one at a time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

MAX_QUERIES = 100  # like ip-api: more gets a 422
FREE_TIER_LIMIT = 15  # batch requests per minute on the free tier

Mode = Literal["ok", "error", "broken-json"]
Body = bytes | Callable[[list[str]], bytes]

# Full answers, as ip-api gives them with every field; the server trims them to `fields`.
KNOWN: dict[str, dict[str, Any]] = {
    "8.8.8.8": {
        "country": "United States",
        "countryCode": "US",
        "region": "CA",
        "regionName": "California",
        "city": "Mountain View",
        "zip": "94043",
        "lat": 37.4056,
        "lon": -122.0775,
        "timezone": "America/Los_Angeles",
        "isp": "Google LLC",
        "org": "Google Public DNS",
        "as": "AS15169 Google LLC",
        "mobile": False,
        "proxy": False,
        "hosting": True,
    },
    "81.2.69.142": {
        "country": "United Kingdom",
        "countryCode": "GB",
        "region": "ENG",
        "regionName": "England",
        "city": "London",
        "zip": "EC2V",
        "lat": 51.5142,
        "lon": -0.0931,
        "timezone": "Europe/London",
        "isp": "Andrews & Arnold Ltd",
        "org": "Andrews & Arnold Ltd",
        "as": "AS20712 Andrews & Arnold Ltd",
        "mobile": False,
        "proxy": False,
        "hosting": False,
    },
    # Empty strings are how ip-api says "unknown".
    "2a00:1450:4001:80b::200e": {
        "country": "Germany",
        "countryCode": "DE",
        "region": "",
        "regionName": "",
        "city": "",
        "zip": "",
        "lat": 51,
        "lon": 9,
        "timezone": "Europe/Berlin",
        "isp": "Google LLC",
        "org": "",
        "as": "AS15169 Google LLC",
        "mobile": False,
        "proxy": False,
        "hosting": True,
    },
    "92.40.200.7": {
        "country": "United Kingdom",
        "countryCode": "GB",
        "region": "ENG",
        "regionName": "England",
        "city": "Manchester",
        "zip": "M1",
        "lat": 53.4809,
        "lon": -2.2374,
        "timezone": "Europe/London",
        "isp": "Hutchison 3G UK Ltd",
        "org": "Three UK",
        "as": "AS206067 H3G UK",
        "mobile": True,
        "proxy": True,
        "hosting": False,
    },
}

_PRIVATE = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
]
_MADE_UP = [("US", "Texas", "Austin"), ("FR", "Île-de-France", "Paris"), ("JP", "Tokyo", "Tokyo")]


def answer_for(query: str) -> dict[str, Any]:
    """The full answer ip-api would give for one query (before trimming to `fields`)."""
    try:
        addr = ipaddress.ip_address(query)
    except ValueError:
        return {"status": "fail", "message": "invalid query", "query": query}
    if any(addr in net for net in _PRIVATE):
        return {"status": "fail", "message": "private range", "query": query}
    if not addr.is_global:
        return {"status": "fail", "message": "reserved range", "query": query}
    known = KNOWN.get(addr.compressed)
    if known is None:
        # Any other global IP gets a stable made-up answer, so tests can use hundreds of IPs.
        digest = hashlib.sha256(addr.packed).digest()
        country, region, city = _MADE_UP[digest[0] % len(_MADE_UP)]
        known = {
            "country": country,
            "countryCode": country,
            "region": region[:3].upper(),
            "regionName": region,
            "city": city,
            "zip": "",
            # On the globe: the provider refuses coordinates that are not.
            "lat": round(digest[1] / 255 * 180 - 90, 4),
            "lon": round(digest[2] / 255 * 360 - 180, 4),
            "timezone": "UTC",
            "isp": f"ISP {digest[3]}",
            "org": f"Org {digest[4]}",
            "as": f"AS{64512 + digest[5]}",
            "mobile": digest[6] % 2 == 0,
            "proxy": False,
            "hosting": digest[7] % 3 == 0,
        }
    return {"status": "success", **known, "query": query}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query_string: str
    params: dict[str, list[str]]
    body: Any  # parsed JSON, or the raw text when it was not JSON
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case

    @property
    def queries(self) -> list[str]:
        """The IPs (queries) sent in a batch body."""
        if not isinstance(self.body, list):
            return []
        return [q["query"] if isinstance(q, dict) else q for q in self.body]


class IpApiServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        # Set on stop (or release()), so a handler waiting out `delay` or `drip` goes on at once.
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forgets recorded requests and restores the default settings."""
        with self._lock:
            self._requests.clear()
            self.remaining: int | None = None
            self.ttl: int | None = 60
            self.rate_headers = True
            self.delay: float = 0.0
            self.mode: Mode = "ok"
            self.body: Body | None = None
            self.headers: dict[str, str] = {}
            self.drip: float = 0.0
        self._released = threading.Event()

    def release(self) -> None:
        """Ends every wait (`delay`, `drip`) now in progress, as if it had run out."""
        self._released.set()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def queried_ips(self) -> list[str]:
        """Every IP sent so far, in order, over all requests."""
        return [ip for r in self.requests for ip in r.queries]

    def start(self) -> IpApiServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Join handler threads on close, so nothing outlives the test.
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> IpApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Called from handler threads.

    def _pause(self, seconds: float) -> bool:
        """Waits; True when the server is stopping (the handler should give up)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and not self._released.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._stopping.wait(min(left, 0.05))
        return self._stopping.is_set()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _take_request(self) -> int | None:
        """Counts one request against the limit: X-Rl to send, or None when over the limit."""
        with self._lock:
            if self.remaining is None:
                return FREE_TIER_LIMIT
            if self.remaining <= 0:
                return None
            self.remaining -= 1
            return self.remaining


class _Handler(BaseHTTPRequestHandler):
    api: IpApiServer
    timeout = 5  # a silent client must not keep a handler thread (and stop()) waiting

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = urlsplit(self.path)
        params = parse_qs(split.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        api = self.api
        headers = {name.lower(): value for name, value in self.headers.items()}
        api._record(RecordedRequest(self.command, split.path, split.query, params, body, headers))
        if api.delay and api._pause(api.delay):
            return  # server stopping: the client has long given up
        try:
            self._answer(split.path, params, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away

    def _answer(self, path: str, params: dict[str, list[str]], body: Any) -> None:
        api = self.api
        left = api._take_request()
        if left is None:
            return self._send(429, b"Too Many Requests\n", "text/plain", 0)
        if api.mode == "error":
            return self._send(500, b"Internal Server Error\n", "text/plain", left)
        if self.command != "POST" or path != "/batch":
            return self._send(404, b"404 page not found\n", "text/plain", left)
        if not isinstance(body, list):
            return self._send(400, b"invalid JSON\n", "text/plain", left)
        if len(body) > MAX_QUERIES:
            return self._send(422, b"too many queries\n", "text/plain", left)
        fields = params.get("fields", [""])[0].split(",") if "fields" in params else None
        items = []
        for entry in body:
            query = entry.get("query", "") if isinstance(entry, dict) else entry
            full = answer_for(str(query))
            items.append(full if fields is None else {k: full[k] for k in fields if k in full})
        queries = [str(q.get("query", "") if isinstance(q, dict) else q) for q in body]
        payload = json.dumps(items).encode()
        if api.body is not None:
            payload = api.body if isinstance(api.body, bytes) else api.body(queries)
        if api.mode == "broken-json":
            payload = payload[: len(payload) // 2]
        self._send(200, payload, "application/json; charset=utf-8", left)

    def _send(self, status: int, payload: bytes, content_type: str, left: int) -> None:
        api = self.api
        headers = {"Content-Type": content_type, "Content-Length": str(len(payload))}
        if api.rate_headers:
            headers["X-Rl"] = str(left)
            if api.ttl is not None:
                headers["X-Ttl"] = str(api.ttl)
        headers.update(api.headers)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not api.drip:
            self.wfile.write(payload)
            return
        for i in range(len(payload)):
            self.wfile.write(payload[i : i + 1])
            if api._pause(api.drip):
                return

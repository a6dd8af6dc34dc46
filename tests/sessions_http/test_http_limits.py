"""HTTP limits and client mistakes, against real servers over raw sockets on loopback.

- A request line, header block or header count over its limit is refused (414 or 431) and its
  connection closed, before the server buffers more of it: hostile heads cannot grow memory.
- Requests near the limits are served as before.
- A client that disconnects in the middle of its body is counted as 499 and logged at debug
  level only: never a 500, an ERROR line or a traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sessions_config.settings import Settings
from tests.app_client import assert_healthy
from tests.servers import serve_process_with_pid

REQUESTS = "sessions_api_http_requests_total"
DEFAULTS = Settings.model_fields
MAX_URL = DEFAULTS["http_max_url_bytes"].default
MAX_HEADER_BYTES = DEFAULTS["http_max_header_bytes"].default
MAX_HEADERS = DEFAULTS["http_max_headers"].default


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path


@pytest.fixture(scope="session")
def served(
    base_settings: Settings,
    database: str,
    redis_keyspace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """`sessions-api serve` in a process of its own, with the default limits."""
    log = tmp_path_factory.mktemp("http-limits") / "serve.log"
    with serve_process_with_pid(base_settings, log) as process:
        yield Served(process.url, process.pid, log)


# -- raw HTTP/1.1 over a socket -------------------------------------------------------------


def connect(url: str, timeout: float = 10) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port  # loopback only
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; a reset ends it too. A
    server that keeps the connection open makes this raise TimeoutError."""
    answer = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(answer)
        if not chunk:
            return bytes(answer)
        answer += chunk


def exchange(url: str, request: bytes) -> bytes:
    """Sends a whole request; what the server answers before it closes the connection."""
    with connect(url) as sock:
        sock.sendall(request)
        return read_until_closed(sock)


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def assert_refused(answer: bytes, code: str) -> None:
    """The error every path but /graphql answers (the path is not known yet), no-store, and
    the connection closed."""
    header_block, _, body = answer.partition(b"\r\n\r\n")
    fields = header_block.decode("latin-1").lower().split("\r\n")[1:]
    headers = dict(field.split(": ", 1) for field in fields)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] == code and error["message"]


def head(target: str = "/healthz", *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- what the server process shows ----------------------------------------------------------


def peak_memory_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), which a spike cannot hide from."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def scrape(url: str) -> dict[tuple[str, str, str], float]:
    """sessions_api_http_requests_total by (method, route, status)."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == REQUESTS
    }


def scrape_until(
    url: str, before: dict[tuple[str, str, str], float], key: tuple[str, str, str], grown: int
) -> dict[tuple[str, str, str], float]:
    """Scrapes until the count of `key` grew by `grown` (the server counts a request when its
    handling ends); gives up after ten seconds so a miscount cannot hang the suite."""
    deadline = time.monotonic() + 10
    while True:
        after = scrape(url)
        if after.get(key, 0) - before.get(key, 0) >= grown or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def grown(
    before: dict[tuple[str, str, str], float],
    after: dict[tuple[str, str, str], float],
    *key: str,
) -> float:
    method, route, code = key
    return after.get((method, route, code), 0) - before.get((method, route, code), 0)


def assert_log_is_clean(log: Path) -> None:
    text = log.read_text("utf-8", "replace")
    assert "Traceback" not in text, text[-4000:]
    assert not [line for line in text.splitlines() if " ERROR " in line], text[-4000:]


# -- over the limits ------------------------------------------------------------------------


def test_an_endless_header_from_several_connections_is_cut_off_without_growing_memory(
    served: Served,
) -> None:
    connections, per_connection = 8, 16 * 1024 * 1024
    peak_before = peak_memory_kib(served.pid)
    everyone_sent = threading.Barrier(connections, timeout=60)

    def attack() -> bytes | None:
        """A head whose last header never ends, fed as fast as the server takes it. What the
        server answered once it was sent (or refused): b"" for a close, None for silence."""
        with connect(served.url) as sock:
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
                chunk = b"a" * 65536
                for _ in range(per_connection // len(chunk)):
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: refused
            # Held open until every connection has sent, so their memory would add up.
            everyone_sent.wait()
            try:
                return read_until_closed(sock)
            except TimeoutError:
                return None

    with ThreadPoolExecutor(connections) as pool:
        answers = list(pool.map(lambda _: attack(), range(connections)))

    grown_kib = peak_memory_kib(served.pid) - peak_before
    # Loose: the old server kept every byte (128 MiB here, several times over while copying).
    assert grown_kib * 1024 < connections * per_connection / 4, f"peak grew by {grown_kib} KiB"
    for answer in answers:
        assert answer is not None, "the server kept waiting for the rest of the header"
        assert answer == b"" or status(answer) == 431
    assert any(answers), "no connection got a 431 before the close"
    assert_healthy(httpx.get(f"{served.url}/healthz", timeout=10))


def test_too_many_headers_is_431_and_the_connection_closed(served: Served) -> None:
    answer = exchange(served.url, head("/healthz", *(f"X-Pad-{i}: v" for i in range(200))))
    assert status(answer) == 431
    assert b"content-type: application/json" in answer.lower()
    assert b'"code":"headers_too_large"' in answer.replace(b" ", b"")
    assert_refused(answer, "headers_too_large")


def test_headers_over_the_total_size_are_431(served: Served) -> None:
    # Each header is small; together they are over the limit.
    size = 4000
    count = MAX_HEADER_BYTES // size + 2
    headers = (f"X-Pad-{i}: {'v' * size}" for i in range(count))
    answer = exchange(served.url, head("/healthz", *headers))
    assert status(answer) == 431
    assert_refused(answer, "headers_too_large")


def test_a_20_kb_url_is_414_and_the_connection_closed(served: Served) -> None:
    answer = exchange(served.url, head("/healthz?pad=" + "a" * 20_000))
    assert status(answer) == 414
    assert b'"code":"uri_too_long"' in answer.replace(b" ", b"")
    assert_refused(answer, "uri_too_long")


def test_a_refusal_on_graphql_has_the_shape_of_every_other_path(served: Served) -> None:
    """Refused before the path is known: /graphql too gets `{"error": ...}`, not GraphQL's."""
    answer = exchange(served.url, head("/graphql?q=" + "a" * 20_000))
    assert status(answer) == 414
    assert_refused(answer, "uri_too_long")


def test_refusals_are_counted_and_not_logged_as_errors(served: Served) -> None:
    before = scrape(served.url)
    assert status(exchange(served.url, head("/healthz", *(f"X-{i}: v" for i in range(200))))) == 431
    assert status(exchange(served.url, head("/graphql?q=" + "a" * 20_000))) == 414
    after = scrape(served.url)
    assert grown(before, after, "GET", "unmatched", "431") == 1
    assert grown(before, after, "GET", "unmatched", "414") == 1
    assert_log_is_clean(served.log)


# -- under the limits -----------------------------------------------------------------------


def test_requests_near_the_limits_are_served(served: Served) -> None:
    near = {
        "cookie": "psession=" + "c" * 4096,
        **{f"x-pad-{i}": "v" * 100 for i in range(MAX_HEADERS - 10)},
    }
    with httpx.Client(base_url=served.url, timeout=10) as client:
        # Keep-alive: the limits are per request, not per connection.
        for _ in range(3):
            assert_healthy(client.get("/healthz", headers=near))
        assert_healthy(client.get("/healthz?pad=" + "a" * (MAX_URL - 100)))
        one_big = {"x-big": "b" * (MAX_HEADER_BYTES - 1024)}
        assert_healthy(client.get("/healthz", headers=one_big))
        # A body is not a header: a 60 KB GraphQL body with big headers is still fine.
        response = client.post(
            "/graphql",
            json={"query": "{ me { id } }", "variables": {"pad": "p" * 60_000}},
            headers={"cookie": "psession=" + "c" * 4096},
        )
        assert response.status_code == 200
        assert response.json()["data"] == {"me": None}


def test_a_big_header_that_arrives_in_many_pieces_is_served(served: Served) -> None:
    value = b"d" * (MAX_HEADER_BYTES - 2048)
    with connect(served.url) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: ")
        for start in range(0, len(value), 1000):
            sock.sendall(value[start : start + 1000])
            time.sleep(0.002)
        sock.sendall(b"\r\n\r\n")
        assert status(read_until_closed(sock)) == 200


# -- the limits are settings, and apply to every way of serving -----------------------------


def test_settings_change_the_limits_across_several_workers(
    base_settings: Settings,
    database: str,
    redis_keyspace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    log = tmp_path_factory.mktemp("http-limits-workers") / "serve.log"
    env = {"HTTP_MAX_URL_BYTES": "1024", "HTTP_MAX_HEADER_BYTES": "2048", "HTTP_MAX_HEADERS": "20"}
    with serve_process_with_pid(base_settings, log, "--workers", "2", env=env) as process:
        # New connections each time, so that both workers answer some.
        for _ in range(4):
            assert status(exchange(process.url, head("/healthz?p=" + "a" * 1100))) == 414
            assert status(exchange(process.url, head("/healthz", "Cookie: " + "c" * 2100))) == 431
            answer = exchange(process.url, head("/healthz", *(f"X-{i}: v" for i in range(21))))
            assert status(answer) == 431
            answer = exchange(process.url, head("/healthz?p=" + "a" * 900, "Cookie: " + "c" * 1900))
            assert status(answer) == 200
    assert_log_is_clean(log)


def test_the_in_process_test_server_has_the_limits_too(server: str) -> None:
    answer = exchange(server, head("/healthz", *(f"X-Pad-{i}: v" for i in range(200))))
    assert status(answer) == 431
    assert status(exchange(server, head("/healthz?pad=" + "a" * 20_000))) == 414


# -- a client that goes away mid-body -------------------------------------------------------


def test_a_disconnect_mid_body_is_a_499_not_our_error(served: Served) -> None:
    before = scrape(served.url)
    for _ in range(5):
        with connect(served.url) as sock:
            sock.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                b'{"query":'
            )
    after = scrape_until(served.url, before, ("POST", "/graphql", "499"), 5)
    assert grown(before, after, "POST", "/graphql", "499") == 5
    assert not [key for key, count in after.items() if key[2] == "500" and count]
    assert_log_is_clean(served.log)
    # And the server goes on as before.
    assert_healthy(httpx.get(f"{served.url}/healthz", timeout=10))

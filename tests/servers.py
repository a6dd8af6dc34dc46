"""The app served for real: by uvicorn in a thread of this process, or by `sessions-api serve`
in a process of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from sessions_config.settings import Settings
from sessions_http.app import create_app
from sessions_http.serving import uvicorn_options


@contextmanager
def serve(settings: Settings, *, root_path: str = "") -> Iterator[str]:
    """Serves the app with these settings (under `root_path`, as `uvicorn --root-path` does);
    yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        lifespan="on",
        root_path=root_path,
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    settings: Settings, log_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`sessions-api serve ARGS` on the Postgres database and Redis keyspace of these settings,
    with offline geolocation unless ENV (which wins) says otherwise; yields its base URL once
    /healthz answers.
    Output goes to log_path.
    """
    with serve_process_with_pid(settings, log_path, *args, env=env) as served:
        yield served.url


@dataclass(frozen=True)
class ServedProcess:
    url: str
    pid: int  # of `sessions-api serve` (with --workers N, the parent of the workers)


@contextmanager
def serve_process_with_pid(
    settings: Settings, log_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServedProcess]:
    """serve_process, also telling the server's process id (to read its memory, say)."""
    port = free_port()
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("GEO_", "ALLOWED_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        REDIS_MODE=settings.redis_mode,
        REDIS_KEY_PREFIX=settings.redis_key_prefix,
        WEBHOOK_ALLOW_PRIVATE=str(settings.webhook_allow_private).lower(),
        WEBHOOK_RETRY_SCHEDULE=",".join(
            f"{int(w.total_seconds())}s" for w in settings.webhook_retry_schedule
        ),
        EVENT_WORKERS=str(settings.event_workers).lower(),
        WEBHOOK_TIMEOUT=str(settings.webhook_timeout),
        EXPIRY_SWEEP_INTERVAL=str(settings.expiry_sweep_interval),
        GEO_PROVIDER="offline",
        LOG_LEVEL="warning",
    )
    env.update(extra)  # the caller's word is the last
    command = [
        str(Path(sys.executable).parent / "sessions-api"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "sessions-api serve did not start:\n" + log_path.read_text("utf-8")
                    )
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield ServedProcess(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

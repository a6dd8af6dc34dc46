"""Shared set-up for the benchmarks: a database and Redis prefix of their own, removed after;
the seeded sessions page; servers started and stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

from sessions_config.resources import open_resources
from sessions_config.settings import Settings
from store.migrate import migrate
from store.models import utcnow
from store.sessions import NewSession


@contextmanager
def bench_environment() -> Iterator[dict[str, str]]:
    """Yields environment variables naming a fresh database and key prefix; drops both after."""
    env = Settings()
    run = uuid.uuid4().hex[:8]
    parts = urlsplit(env.database_url)
    database_url = urlunsplit(parts._replace(path=f"/sessions_bench_{run}"))
    prefix = f"bench-{run}:"
    asyncio.run(migrate(database_url))
    try:
        yield {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": env.redis_url,
            "REDIS_KEY_PREFIX": prefix,
        }
    finally:
        asyncio.run(_cleanup(database_url, env.redis_url, prefix))


async def _cleanup(database_url: str, redis_url: str, prefix: str) -> None:
    admin = await asyncpg.connect(database_url, database="postgres")
    try:
        name = urlsplit(database_url).path.lstrip("/")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()


# The page every request benchmark reads: one user, 5 active and 50 past sessions, 55 distinct
# public IPs (so 55 geolocations per page).
SEED_USER = "bench"
ACTIVE, PAST = 5, 50


async def seed_page(env: Mapping[str, str]) -> str:
    """Seeds SEED_USER's sessions in this environment; returns the token of the newest one."""
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
    )
    now = utcnow()
    batch = [
        NewSession(
            user_id=SEED_USER,
            ip=f"81.2.{i}.10",
            user_agent="Mozilla/5.0 bench",
            created_at=now - timedelta(hours=i + 1),
        )
        for i in range(ACTIVE)
    ] + [
        NewSession(
            user_id=SEED_USER,
            ip=f"89.160.{i}.20",
            user_agent="Mozilla/5.0 bench",
            created_at=now - timedelta(days=i + 1),
            ended_at=now - timedelta(days=i),
        )
        for i in range(PAST)
    ]
    async with open_resources(settings, geo=False) as res:
        created = await res.store.create_many(batch)
    return created[0].token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(command: list[str], env: Mapping[str, str], base: str, probe: str) -> Iterator[str]:
    """Runs a server command that listens at `base`; yields `base` once `probe` (a path) answers
    with a status below 500, and stops the server after."""
    server = subprocess.Popen(command, env=dict(env))
    try:
        for _ in range(200):
            if server.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {server.returncode}")
            try:
                if httpx.get(base + probe).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{' '.join(command)} did not answer {base}{probe}")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def serve_service(env: Mapping[str, str], **extra: str) -> Iterator[str]:
    """`sessions-api serve` (one uvicorn worker) on a free loopback port; yields its base URL."""
    cli = shutil.which("sessions-api") or f"{sys.prefix}/bin/sessions-api"
    port = free_port()
    service_env = {**env, "LOG_LEVEL": "warning", **extra}
    command = [cli, "serve", "--port", str(port)]
    with served(command, service_env, f"http://127.0.0.1:{port}", "/healthz") as url:
        yield url

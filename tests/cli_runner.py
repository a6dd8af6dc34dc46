"""The `sessions-api` command run as a real subprocess on the run's Postgres and Redis, the rows
`sessions import` reads, and the checks of what the command answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sessions_config.settings import Settings
from tests.app_client import fresh_ip


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m sessions_ops.cli`."""
    script = Path(sys.executable).with_name("sessions-api")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sessions_ops.cli"]


def cli_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """This process's environment, on the Postgres, Redis and key prefix of these settings."""
    env = dict(os.environ)
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
    )
    env.update(overrides)
    return env


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def run_cli(
    settings: Settings, *args: str, stdin: str | bytes | None = None, **env_overrides: str
) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *cli_command(),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(settings, **env_overrides),
    )
    try:
        # A bound that proves "no hang", not a speed check.
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if isinstance(stdin, str) else stdin or b""),
            timeout=120,
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def start_import(settings: Settings) -> asyncio.subprocess.Process:
    """`sessions import`, started with pipes on all three streams; the test feeds and reads it."""
    return await asyncio.create_subprocess_exec(
        *cli_command(),
        "sessions",
        "import",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(settings),
    )


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    """Now, to the second (as the command stores its timestamps)."""
    return datetime.now(UTC).replace(microsecond=0)


def assert_usage_error(result: Result, *words: str) -> None:
    """Exit status 2, nothing on stdout, and a short message without a traceback."""
    assert result.code == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in message, result.stderr


async def run_create(
    settings: Settings, user_id: str, *extra: str, ip: str | None = None
) -> Result:
    """`sessions create --user-id USER_ID --ip IP EXTRA...` (a random public IP by default)."""
    return await run_cli(
        settings, "sessions", "create", "--user-id", user_id, "--ip", ip or fresh_ip(), *extra
    )


async def create(
    settings: Settings, user_id: str, *extra: str, ip: str | None = None
) -> dict[str, Any]:
    """A session made by `sessions create`: the one JSON line it printed."""
    result = await run_create(settings, user_id, "--user-agent", "cli-test", *extra, ip=ip)
    assert result.code == 0, result
    assert len(result.lines) == 1, result
    created: dict[str, Any] = json.loads(result.lines[0])
    return created


def import_row(user_id: str, index: int, **fields: Any) -> dict[str, Any]:
    """A row for `sessions import`: active, from a random public IP, agent `row-INDEX`."""
    row = {
        "user_id": user_id,
        "ip": fresh_ip(),
        "user_agent": f"row-{index}",
        "created_at": iso(now() - timedelta(days=1)),
        "expires_at": iso(now() + timedelta(days=10)),
    }
    row.update(fields)
    return row

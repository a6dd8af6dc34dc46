"""How fast `sessions-api sessions import` writes sessions.

    .venv/bin/python -m bench.import_rate [ROWS]

Generates ROWS JSON lines (default 20000; a quarter already ended, so they go straight to
history), pipes them through the real CLI, and prints rows per second of the whole command
(start-up included).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.common import bench_environment
from store.sessions import DEFAULT_TTL


def rows(count: int) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    lines = []
    for i in range(count):
        created = now - timedelta(hours=2, minutes=i)  # ended ones end an hour later, in the past
        row: dict[str, str] = {
            "user_id": f"bench-user-{i % 500}",
            "ip": f"81.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": (created + DEFAULT_TTL).isoformat().replace("+00:00", "Z"),
        }
        if i % 4 == 0:
            row["ended_at"] = (created + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            row["end_reason"] = "logout"
        lines.append(json.dumps(row))
    return "\n".join(lines) + "\n"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    data = rows(count)
    cli = shutil.which("sessions-api") or f"{sys.prefix}/bin/sessions-api"
    with bench_environment() as env:
        started = time.perf_counter()
        done = subprocess.run(
            [cli, "sessions", "import"],
            input=data,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed = time.perf_counter() - started
    printed = done.stdout.count("\n")
    assert printed == count, f"printed {printed} lines for {count} rows"
    print(f"imported {count} rows in {elapsed:.2f} s: {count / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()

"""In-process cost of one sessions page's storage and geolocation work, part by part.

    .venv/bin/python -m bench.page_parts [N] [--profile]

Seeds the benchmark page (bench.common.seed_page: 5 active and 50 past sessions, 55 distinct
public IPs), warms the geolocation cache (offline provider), then times N pages (500 by default)
of what a request for it does below GraphQL: authenticate the cookie, list the active sessions,
read a history page, look up the 55 IPs. Wall and CPU time per page and per part; `--profile`
adds a cProfile listing.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Mapping

from bench.common import SEED_USER, bench_environment, seed_page
from sessions_config.resources import open_resources
from sessions_config.settings import Settings

WARM_UP = 50


async def run(env: Mapping[str, str], n: int, profile: bool) -> None:
    token = await seed_page(env)
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
        geo_provider="offline",
    )
    async with open_resources(settings) as res:
        store, geo = res.store, res.geo
        active = await store.list_active_for_user(user_id=SEED_USER)
        history = await store.list_history_for_user(user_id=SEED_USER, first=50)
        ips = [r.client_ip for r in active + history.records]
        await geo.many(ips)
        await asyncio.sleep(0.5)  # the cache write follows the first answer
        parts: dict[str, Callable[[], Awaitable[object]]] = {
            "authenticate": lambda: store.authenticate(token),
            "list_active_for_user": lambda: store.list_active_for_user(user_id=SEED_USER),
            "list_history_for_user": lambda: store.list_history_for_user(
                user_id=SEED_USER, first=50
            ),
            "GeoLookup.many (55 IPs)": lambda: geo.many(ips),
        }
        wall = dict.fromkeys(parts, 0.0)
        cpu = dict.fromkeys(parts, 0.0)

        async def page() -> None:
            for name, call in parts.items():
                w, c = time.perf_counter(), time.process_time()
                await call()
                wall[name] += time.perf_counter() - w
                cpu[name] += time.process_time() - c

        for _ in range(WARM_UP):  # connections, statement cache, parse caches
            await page()
        wall, cpu = dict.fromkeys(parts, 0.0), dict.fromkeys(parts, 0.0)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        for _ in range(n):
            await page()
        if profiler:
            profiler.disable()
    print(
        f"{n} pages: wall {sum(wall.values()) / n * 1e3:.2f} ms, "
        f"cpu {sum(cpu.values()) / n * 1e3:.2f} ms per page"
    )
    for name in parts:
        print(f"  {name:24s} wall {wall[name] / n * 1e3:.2f} ms  cpu {cpu[name] / n * 1e3:.2f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "500"))
    with bench_environment() as env:
        asyncio.run(run(env, n, "--profile" in sys.argv))


if __name__ == "__main__":
    main()

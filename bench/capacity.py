"""What one session costs in storage: Redis bytes per active session, Postgres bytes per row.

    .venv/bin/python -m bench.capacity [--active 2000] [--users 700] [--history 200000]

In a database and key prefix of its own (bench.common.bench_environment, both removed after):

1. Creates ACTIVE sessions over USERS users through the store's public API
   (SessionStore.create_many), with browser-like user agents of about 120 characters and client
   IPs, a sixth of them IPv6. Then measures, with MEMORY USAGE on every real key, the session
   HASHes, their tokens' pointers, the users' index ZSETs, and the geolocation cache entries for
   their distinct IPs: the offline provider's own entries (written by a real lookup,
   GeoLookup.many) and entries of ip-api's shape (every field filled, written through GeoCache).
   INFO's used_memory before and after each step is the cross-check (it also counts the expiry
   table; on a shared Redis other clients move it too).
2. Creates HISTORY ended or expired sessions (create_many, 10 000 a batch, oldest first, over 400
   days), runs VACUUM ANALYZE, and measures pg_total_relation_size('sessions') (table, TOAST and
   indexes) divided by the rows, then the table alone and each index.

Prints a table, then one line of JSON with the figures (docs/SCALING.md uses them).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.common import bench_environment
from sessions_config.resources import open_resources
from sessions_config.settings import Settings
from sessions_geo.model import GeoInfo
from store.geo_cache import CacheEntry, GeoCache
from store.models import EndReason, utcnow
from store.sessions import NewSession

BATCH = 10_000
RETENTION_DAYS = 400
# What browsers send today; 108 to 135 characters.
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 "
    "(compatible; corporate build 2024.11)",
)
# ip-api's answer for a typical address: every field the service keeps, filled.
FULL_GEO = GeoInfo(
    city="Frankfurt am Main",
    region_name="Hesse",
    country_code="DE",
    lat=50.1109,
    lon=8.6821,
    isp="Deutsche Telekom AG",
    org="Deutsche Telekom AG, Residential Broadband",
    is_mobile=False,
    is_proxy=False,
    is_hosting=False,
)


def public_ip(rng: random.Random, v6: bool) -> str:
    """A random global unicast address (what a user signs in from)."""
    while True:
        if v6:
            # 2000::/3, as ISPs hand out: a /48 of a real-looking prefix, a random interface id.
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                (0x2A02 << 112) | rng.getrandbits(112)
            )
        else:
            address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            return str(address)


def user_id(n: int) -> str:
    """User ids as many identity services make them: a UUID's text (36 characters)."""
    return f"00000000-0000-4000-8000-{n:012d}"


async def memory_usage(redis: Redis, keys: Sequence[str]) -> list[int]:
    """MEMORY USAGE of each key, every element counted (SAMPLES 0)."""
    sizes: list[int] = []
    for i in range(0, len(keys), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys[i : i + 1000]:
                pipe.memory_usage(key, samples=0)
            sizes += [int(n or 0) for n in await pipe.execute()]
    return sizes


async def encodings(redis: Redis, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.object("ENCODING", key)
        for name in await pipe.execute():
            text = name.decode() if isinstance(name, bytes) else str(name)
            found[text] = found.get(text, 0) + 1
    return found


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


def mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else 0.0


async def measure_redis(env: Mapping[str, str], active: int, users: int) -> dict[str, Any]:
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
    )
    rng = random.Random(1)
    now = utcnow()
    batch = [
        NewSession(
            user_id=user_id(i % users),
            ip=public_ip(rng, v6=i % 6 == 0),
            user_agent=USER_AGENTS[i % len(USER_AGENTS)],
            created_at=now - timedelta(minutes=rng.randrange(1, 29 * 24 * 60)),
        )
        for i in range(active)
    ]
    async with open_resources(settings) as res:
        redis = res.store.redis
        keys = res.store.keys
        before = await used_memory(redis)
        created = await res.store.create_many(batch)
        after_sessions = await used_memory(redis)
        session_keys = [keys.session(c.record.user_id, c.record.token_hash) for c in created]
        index_keys = sorted({keys.user_sessions(c.record.user_id) for c in created})
        pointer_keys = [keys.token(c.record.token_hash) for c in created]
        hashes = await memory_usage(redis, session_keys)
        indexes = await memory_usage(redis, index_keys)
        pointers = await memory_usage(redis, pointer_keys)
        hash_encodings = await encodings(redis, session_keys)
        index_encodings = await encodings(redis, index_keys)

        ips = sorted({c.record.client_ip for c in created})
        await res.geo.many(ips)  # the offline provider's answers, cached as the service does
        after_geo = await used_memory(redis)
        offline = await memory_usage(redis, [keys.geo(res.geo.provider.name, ip) for ip in ips])
        full = GeoCache(redis, keys, "ip-api")
        await full.put_many({ip: CacheEntry(FULL_GEO.to_json(), 3600) for ip in ips})
        after_full = await used_memory(redis)
        full_sizes = await memory_usage(redis, [keys.geo("ip-api", ip) for ip in ips])

        config = await redis.config_get("hash-max-listpack-*")
        version = (await redis.info("server"))["redis_version"]

    per_session = mean(hashes) + mean(pointers) + sum(indexes) / len(created)
    return {
        "redis_version": version,
        "hash_max_listpack": {str(k): int(str(v)) for k, v in config.items()},
        "active_sessions": len(created),
        "users": len(index_keys),
        "user_agent_chars": round(mean([len(n.user_agent) for n in batch]), 1),
        "ipv6_share": round(sum(":" in ip for ip in ips) / len(ips), 3),
        "session_hash_bytes": round(mean(hashes), 1),
        "session_hash_encoding": hash_encodings,
        "token_pointer_bytes": round(mean(pointers), 1),
        "user_index_bytes": round(mean(indexes), 1),
        "user_index_encoding": index_encodings,
        "user_index_bytes_per_session": round(sum(indexes) / len(created), 1),
        "per_active_session_bytes": round(per_session, 1),
        "used_memory_delta_per_session": round((after_sessions - before) / len(created), 1),
        "distinct_ips": len(ips),
        "geo_offline_entry_bytes": round(mean([n for n in offline if n]), 1),
        "geo_offline_entries": sum(1 for n in offline if n),
        "geo_full_entry_bytes": round(mean(full_sizes), 1),
        "geo_full_json_chars": len(FULL_GEO.to_json()),
        "used_memory_delta_per_geo_offline": round((after_geo - after_sessions) / len(ips), 1),
        "used_memory_delta_per_geo_full": round((after_full - after_geo) / len(ips), 1),
    }


def history_batch(rng: random.Random, start: int, count: int, total: int, users: int) -> list[Any]:
    """Past sessions `start`..`start+count` of `total`, spread evenly over the retention, oldest
    first: half logged out, a tenth revoked, the rest expired (never ended, hence NULL end)."""
    now = utcnow()
    span = timedelta(days=RETENTION_DAYS).total_seconds()
    batch = []
    for i in range(start, start + count):
        created_at = now - timedelta(seconds=span * (total - i) / total + 3600)
        expires_at = created_at + timedelta(days=30)
        roll = rng.random()
        ended_at = None
        reason: EndReason | None = None
        if roll < 0.6 or expires_at > now:
            ended_at = min(created_at + timedelta(seconds=rng.randrange(600, 5 * 86400)), now)
            reason = "revoked" if roll < 0.1 else "logout"
        batch.append(
            NewSession(
                user_id=user_id(rng.randrange(users)),
                ip=public_ip(rng, v6=rng.random() < 1 / 6),
                user_agent=USER_AGENTS[rng.randrange(len(USER_AGENTS))],
                created_at=created_at,
                expires_at=expires_at,
                ended_at=ended_at,
                end_reason=reason,
            )
        )
    return batch


async def measure_postgres(env: Mapping[str, str], history: int, users: int) -> dict[str, Any]:
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        redis_key_prefix=env["REDIS_KEY_PREFIX"],
    )
    rng = random.Random(2)
    started = time.perf_counter()
    async with open_resources(settings, geo=False) as res:
        for start in range(0, history, BATCH):
            await res.store.create_many(
                history_batch(rng, start, min(BATCH, history - start), history, users)
            )
    seconds = time.perf_counter() - started
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await conn.execute("VACUUM ANALYZE sessions")
        rows = int(await conn.fetchval("SELECT count(*) FROM sessions"))
        total = int(await conn.fetchval("SELECT pg_total_relation_size('sessions')"))
        table = int(await conn.fetchval("SELECT pg_table_size('sessions')"))
        heap = int(await conn.fetchval("SELECT pg_relation_size('sessions')"))
        indexes_total = int(await conn.fetchval("SELECT pg_indexes_size('sessions')"))
        index_rows = await conn.fetch(
            """SELECT indexrelname::text, pg_relation_size(indexrelid)::bigint
                 FROM pg_stat_user_indexes WHERE relname = 'sessions' ORDER BY 1"""
        )
        avg_width = await conn.fetchval(
            "SELECT sum(avg_width) FROM pg_stats WHERE tablename = 'sessions'"
        )
    finally:
        await conn.close()
    return {
        "rows": rows,
        "rows_per_second_written": round(history / seconds),
        "total_bytes": total,
        "total_bytes_per_row": round(total / rows, 1),
        "table_bytes_per_row": round(table / rows, 1),
        "heap_bytes_per_row": round(heap / rows, 1),
        "indexes_bytes_per_row": round(indexes_total / rows, 1),
        "index_bytes_per_row": {name: round(size / rows, 1) for name, size in index_rows},
        "columns_avg_width": int(avg_width or 0),
    }


def table(redis: Mapping[str, Any], pg: Mapping[str, Any]) -> str:
    lines = [
        f"Redis, {redis['active_sessions']} active sessions of {redis['users']} users "
        f"(user agents {redis['user_agent_chars']} chars, {redis['ipv6_share']:.0%} IPv6):",
        f"  session HASH              {redis['session_hash_bytes']:>8} B  "
        f"{redis['session_hash_encoding']}",
        f"  token pointer STRING      {redis['token_pointer_bytes']:>8} B",
        f"  user index ZSET           {redis['user_index_bytes']:>8} B  "
        f"({redis['user_index_bytes_per_session']} B per session) {redis['user_index_encoding']}",
        f"  per active session        {redis['per_active_session_bytes']:>8} B  "
        f"(used_memory delta: {redis['used_memory_delta_per_session']} B)",
        f"  geo entry, offline        {redis['geo_offline_entry_bytes']:>8} B  "
        f"(used_memory delta: {redis['used_memory_delta_per_geo_offline']} B)",
        f"  geo entry, ip-api shape   {redis['geo_full_entry_bytes']:>8} B  "
        f"(used_memory delta: {redis['used_memory_delta_per_geo_full']} B)",
        f"Postgres, {pg['rows']} rows (written at {pg['rows_per_second_written']} rows/s):",
        f"  table + TOAST + indexes   {pg['total_bytes_per_row']:>8} B per row",
        f"  table                     {pg['table_bytes_per_row']:>8} B per row",
        f"  all indexes               {pg['indexes_bytes_per_row']:>8} B per row",
    ]
    indexes: Mapping[str, float] = pg["index_bytes_per_row"]
    lines += [f"    {name:<24}{size:>8} B per row" for name, size in indexes.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--active", type=int, default=2000)
    parser.add_argument("--users", type=int, default=700)
    parser.add_argument("--history", type=int, default=200_000)
    args = parser.parse_args()
    with bench_environment() as env:
        redis = asyncio.run(measure_redis(env, args.active, args.users))
        pg = asyncio.run(measure_postgres(env, args.history, max(1, args.history // 80)))
    print(table(redis, pg))
    print(json.dumps({"redis": redis, "postgres": pg}, separators=(",", ":")))


if __name__ == "__main__":
    main()

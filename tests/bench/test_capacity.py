"""bench/capacity.py measures what the store really writes: every active session's HASH, its
token's pointer and its user's index, a geo cache entry per distinct address, and the sessions
table with each of its indexes (the end index of migration 0002 included)."""

from __future__ import annotations

from bench.capacity import measure_postgres, measure_redis
from sessions_config.settings import Settings


def environment(settings: Settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
    }


async def test_redis_figures_cover_every_key_written(
    base_settings: Settings, database: str, redis_keyspace: str
) -> None:
    figures = await measure_redis(environment(base_settings), active=12, users=5)

    assert figures["active_sessions"] == 12
    assert figures["users"] == 5
    assert sum(figures["session_hash_encoding"].values()) == 12
    assert sum(figures["user_index_encoding"].values()) == 5
    assert figures["geo_offline_entries"] == figures["distinct_ips"] == 12
    assert figures["token_pointer_bytes"] > 0
    assert (
        figures["per_active_session_bytes"]
        > figures["session_hash_bytes"] + figures["token_pointer_bytes"]
    )
    assert figures["geo_full_entry_bytes"] > 0


async def test_postgres_figures_cover_the_table_and_every_index(
    base_settings: Settings, database: str, redis_keyspace: str
) -> None:
    figures = await measure_postgres(environment(base_settings), history=300, users=4)

    assert figures["rows"] >= 300
    assert set(figures["index_bytes_per_row"]) >= {
        "sessions_pkey",
        "sessions_token_hash_key",
        "sessions_user_created_idx",
        "sessions_end_idx",
    }
    parts = figures["table_bytes_per_row"] + figures["indexes_bytes_per_row"]
    assert abs(figures["total_bytes_per_row"] - parts) < 1

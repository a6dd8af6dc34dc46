"""The service's Redis connection packs commands with hiredis: the very bytes redis-py's own
packer makes, and redis-py's own refusals for what it cannot send."""

from __future__ import annotations

import pytest
from redis.asyncio import Connection
from redis.exceptions import DataError

from sessions_config.redis_connection import BoundedWritesConnection

COMMANDS: list[tuple[object, ...]] = [
    ("GET", "psession:token:" + "a" * 64),
    ("MGET", *(f"psession:geo:offline:203.0.113.{i}" for i in range(55))),
    ("EVAL", "return redis.call('TIME')", 0),
    ("SET", "k", "välue ✓", "EX", 60),
    ("SET", b"k", b"\x00\xff bytes", "EXAT", 1_800_000_000),
    ("WAIT", 1, 4000),
    ("X", 0.1, 1e20, -0.0, 2**63 - 1),
    ("CLIENT SETNAME", "sessions-api"),
    (b"CLIENT SETNAME", "sessions-api"),
    ("SET", "k", "x" * 100_000),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_same_bytes_as_redis_py(command: tuple[object, ...]) -> None:
    ours = b"".join(BoundedWritesConnection().pack_command(*command))  # type: ignore[arg-type]
    theirs = b"".join(Connection().pack_command(*command))  # type: ignore[arg-type]
    assert ours == theirs


@pytest.mark.parametrize("value", [None, True])
def test_what_redis_py_refuses_it_refuses(value: object) -> None:
    with pytest.raises(DataError):
        BoundedWritesConnection().pack_command("SET", "k", value)  # type: ignore[arg-type]

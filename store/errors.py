"""Storage outages, told apart from bugs.

`StorageUnavailable` is what the store raises when a dependency does not answer in time (a pool
that cannot hand out a connection, a connect or command that times out). `outage_of` names the
dependency behind any exception that means "Postgres or Redis is down or unreachable", so the
layers above can answer UNAVAILABLE and log one line instead of a traceback.
"""

from __future__ import annotations

from typing import Literal

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Dependency = Literal["postgres", "redis"]


class StorageUnavailable(Exception):
    """A dependency did not answer in time or refused the connection."""

    def __init__(self, dependency: Dependency, why: str) -> None:
        super().__init__(f"{dependency} is unavailable: {why}")
        self.dependency: Dependency = dependency
        self.why = why


# Errors of the connection, never of a statement: a syntax or constraint error is a bug.
_POSTGRES_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # e.g. "connection is closed", "pool is closing"
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout on the server's side
)
_REDIS_OUTAGES: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


def outage_of(exc: BaseException | None) -> Dependency | None:
    """The dependency this exception says is down, or None if it is not an outage."""
    while exc is not None:
        if isinstance(exc, StorageUnavailable):
            return exc.dependency
        if isinstance(exc, _REDIS_OUTAGES):
            return "redis"
        if isinstance(exc, _POSTGRES_OUTAGES):
            return "postgres"
        # Wrapped (GraphQL's original_error, `raise ... from`): look at the cause.
        exc = exc.__cause__
    return None

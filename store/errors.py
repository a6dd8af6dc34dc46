"""Storage outages, told apart from bugs.

`StorageUnavailable` is what the store raises when a dependency does not answer in time (a pool
that cannot hand out a connection, a connect or command that times out). `outage_of` names the
dependency behind any exception that means "Postgres or Redis is down or unreachable", so the
layers above can answer UNAVAILABLE and log one line instead of a traceback.
"""

from __future__ import annotations

import logging
from typing import Literal

import asyncpg
from redis import exceptions as redis_errors

Dependency = Literal["postgres", "redis"]


class StorageUnavailable(Exception):
    """A dependency did not answer in time or refused the connection."""

    def __init__(self, dependency: Dependency, why: str) -> None:
        super().__init__(f"{dependency} is unavailable: {why}")
        self.dependency: Dependency = dependency
        self.why = why


# Errors of the server's state, never of a statement: a syntax or constraint error is a bug.
_POSTGRES_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.InterfaceError,  # e.g. "connection is closed", "pool is closing"
    # Shutting down, starting up, cancelled by statement_timeout or an operator.
    asyncpg.exceptions.OperatorInterventionError,
    # Disk full, out of memory, too many connections.
    asyncpg.exceptions.InsufficientResourcesError,
    # A standby (a failover in progress, or DATABASE_URL naming a replica) refusing a write.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
_REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    # Includes loading, authentication, a full pool, and with REDIS_MODE=sentinel no master
    # known (MasterNotFoundError) or a demoted one (READONLY, turned into a ConnectionError).
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    # A replica (a failover in progress) or a full server refusing writes; a cluster moving.
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    # A cluster whose slot has no master (lost, not yet replaced), or a replica cut off from it.
    redis_errors.SlotNotCoveredError,
    redis_errors.MasterDownError,
)
# Refusals Redis has no error class for in redis-py (a plain ResponseError), by their code: a
# master configured with min-replicas-to-write that has too few replicas (one lost in a failover).
_REDIS_OUTAGE_CODES = ("NOREPLICAS ",)
# Clients that raise plain OSErrors (refused or reset connections, timeouts: TimeoutError is an
# OSError) from their own code: asyncpg while connecting, or on its command_timeout.
_CLIENT_PACKAGES: tuple[tuple[str, Dependency], ...] = (("asyncpg", "postgres"), ("redis", "redis"))


def outage_of(exc: BaseException | None) -> Dependency | None:
    """The dependency this exception says is down, or None if it is not an outage."""
    found = _outage(exc)
    return found[1] if found else None


def describe_outage(exc: BaseException) -> str:
    """One short line on why a dependency is taken to be down, for the log (never a client)."""
    found = _outage(exc)
    cause = found[0] if found else exc
    if isinstance(cause, StorageUnavailable):
        return cause.why
    text = " ".join(str(cause).split())
    why = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    return why if len(why) <= 200 else why[:199] + "…"


def _outage(exc: BaseException | None) -> tuple[BaseException, Dependency] | None:
    """The exception in this chain that tells of an outage, and the dependency it names."""
    while exc is not None:
        if isinstance(exc, StorageUnavailable):
            return exc, exc.dependency
        if isinstance(exc, _REDIS_OUTAGES) or _refused_by_redis(exc):
            return exc, "redis"
        if isinstance(exc, _POSTGRES_OUTAGES):
            return exc, "postgres"
        if isinstance(exc, OSError) and (client := _raised_through_client(exc)) is not None:
            return exc, client
        # Wrapped (GraphQL's original_error, `raise ... from`): look at the cause.
        exc = exc.__cause__
    return None


def _refused_by_redis(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_REDIS_OUTAGE_CODES)


def _raised_through_client(exc: BaseException) -> Dependency | None:
    """The dependency whose client library this exception passed through on its way up, if any
    (the traceback runs from where it was caught down to where it was raised)."""
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        for package, dependency in _CLIENT_PACKAGES:
            if module == package or module.startswith(package + "."):
                return dependency
        tb = tb.tb_next
    return None


def log_background_failure(logger: logging.Logger, job: str, exc: BaseException) -> None:
    """A background job's failure, for its next turn to retry: an outage is a warning (the job
    waits for the dependency), anything else a bug, logged with its traceback."""
    dependency = outage_of(exc)
    if dependency is None:
        logger.error("%s failed", job, exc_info=exc)
    else:
        logger.warning("%s waits for %s: %s", job, dependency, describe_outage(exc))

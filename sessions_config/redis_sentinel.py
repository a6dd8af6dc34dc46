"""REDIS_MODE=sentinel: a client of whichever Redis the sentinels call the master of
REDIS_SENTINEL_SERVICE, with the same bounds as the standalone client (see
resources.redis_client).

Every new connection asks the sentinels where the master is, so after a failover the client
follows the new master by itself: connections to the old one fail (refused, reset, or READONLY
once it is demoted, which redis-py turns into a ConnectionError and a disconnect) and are opened
again, through the sentinels. Meanwhile the sentinels may name no master at all
(MasterNotFoundError, a ConnectionError too). All of these are outages (store/errors.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessions_config.redis_connection import BoundedWritesConnection
from sessions_config.settings import Settings


class SentinelConnection(SentinelManagedConnection, BoundedWritesConnection):
    """A connection to the sentinels' master, with the bounded writes of the standalone one."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        # A connection dropped since the pool handed it out (a failed health check, a retry)
        # reopens through the sentinels, to the master of now, not to the address it had.
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)


class Sentinels(Sentinel):
    """redis-py's Sentinel, safe to ask from several requests at once."""

    async def discover_master(self, service_name: str) -> Any:
        """As redis-py's (as of 8.1): the first sentinel that names a master in good state is
        believed, and asked first next time. redis-py moves it to the front by swapping places
        remembered across an await, so concurrent calls (every connection being opened after a
        failover) can list one sentinel twice and drop another, never closed or asked again."""
        errors = []
        for sentinel in list(self.sentinels):
            try:
                masters = await sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                errors.append(f"{sentinel} - {exc!r}")
                continue
            state = masters.get(service_name) if isinstance(masters, dict) else None
            if state and self.check_master_state(state, service_name):
                self.sentinels.remove(sentinel)
                self.sentinels.insert(0, sentinel)
                return state["ip"], state["port"]
        why = f" : {', '.join(errors)}" if errors else ""
        raise MasterNotFoundError(f"No master found for {service_name!r}{why}")


class SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool, blocking like the standalone one; it closes the sentinels' clients with
    its own connections."""

    async def get_master_address(self) -> Any:
        address = await self.sentinel_manager.discover_master(self.service_name)
        if address != self.master_address:
            self.master_address = address
            # Idle connections to the old master leave the pool before they are closed. (redis-py
            # closes them in place, and a request that takes one meanwhile and reconnects it can
            # have its new socket orphaned by the close finishing after.)
            idle = list(self._available_connections)
            self._available_connections.clear()
            await asyncio.gather(*(c.disconnect() for c in idle), return_exceptions=True)
        return address

    async def release(self, connection: Any) -> None:
        # A connection to an address that is no longer the master's (it was in use when a
        # failover was noticed) goes back closed, to reopen through the sentinels.
        if self.master_address and (connection.host, connection.port) != self.master_address:
            await connection.disconnect(nowait=True)
        await super().release(connection)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def client(settings: Settings, bounds: dict[str, Any]) -> Redis:
    """The client of the master, its connections bounded by `bounds` (the pool's and socket
    settings of the standalone client). REDIS_URL gives the database number, user and password
    of the data nodes; its host and port are not used."""
    url = parse_url(settings.redis_url)
    password = settings.redis_sentinel_password
    sentinels = Sentinels(  # type: ignore[no-untyped-call]
        settings.redis_sentinels,
        # A sentinel is asked as a connection opens: it has the connect's bound to answer, and
        # one that does not is passed over for the next one.
        sentinel_kwargs={
            "socket_connect_timeout": settings.storage_connect_timeout,
            "socket_timeout": settings.storage_connect_timeout,
            "password": password.get_secret_value() if password else None,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        },
    )
    master: Redis = sentinels.master_for(
        settings.redis_sentinel_service or "",
        connection_pool_class=SentinelPool,
        connection_class=SentinelConnection,
        db=url.get("db", 0),
        username=url.get("username"),
        password=url.get("password"),
        **bounds,
    )
    return master

"""The TCP connection of every Redis client this service opens (standalone or sentinel)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import hiredis
from redis.asyncio import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT


class BoundedWritesConnection(Connection):
    """redis-py's TCP connection, its writes bounded by `asyncio.timeout` rather than
    `asyncio.wait_for`, which on Python 3.11 runs each write as a task of its own (a tenth of
    a command's cost). Otherwise redis-py's own `send_packed_command` (as of redis 8.1, which
    constraints.txt pins): the same checks, errors and disconnects.

    Commands are packed by hiredis (C), as redis-py's synchronous client does but its asyncio
    one does not: the same bytes (tests/sessions_config/test_redis_connection.py), for a
    fifth of the cost of a page's commands (the 55 keys of its geolocation MGET, a script's
    text)."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if (b" " in name) if isinstance(name, bytes) else (" " in str(name)):
            return super().pack_command(*args)  # "CLIENT SETNAME": split as redis-py does
        try:
            return [hiredis.pack_command(cast(Any, args))]
        except TypeError:  # what redis-py refuses (None, a bool): its own error
            return super().pack_command(*args)

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.socket_timeout:
            await super().send_packed_command(command, check_health)
            return
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with asyncio.timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)
            if len(e.args) == 1:
                err_no, errmsg = "UNKNOWN", e.args[0]
            else:
                err_no, errmsg = e.args[0], e.args[1]
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            # As redis-py: a write cut off half-way leaves the connection unusable.
            await self.disconnect(nowait=True)
            raise

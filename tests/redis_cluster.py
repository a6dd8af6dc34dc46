"""A Redis Cluster of the test run's own: three masters on free loopback ports (no replicas),
made with `redis-cli --cluster create`, stopped and removed on exit."""

from __future__ import annotations

import subprocess
import time
from types import TracebackType

from tests.infra import RedisServer, free_port

# The cluster bus listens on port + 10000, so a node's port must leave room for it.
MAX_PORT = 55535


def _cluster_port() -> int:
    while (port := free_port()) > MAX_PORT:
        pass
    return port


class RedisCluster:
    def __init__(self, masters: int = 3, options: tuple[str, ...] = ()) -> None:
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            node = RedisServer(
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", *options
            )
            node.port = _cluster_port()
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """Any one node: the client discovers the others."""
        return self.nodes[0].url

    def __enter__(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                check=True,
                timeout=60,
            )
            self._wait_until_ok()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster did not become ok within {timeout:.0f} s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in self.nodes:
            node.kill()
            node.cleanup()

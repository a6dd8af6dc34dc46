"""Servers of the test run's own, on free loopback ports, for tests that pause, kill or restart
them: a `redis-server`, and a Postgres cluster made with `initdb`. The shared servers named by
DATABASE_URL and REDIS_URL are never paused or stopped.

Both are context managers that stop the server and remove its files on exit. pause() sends
SIGSTOP (to the postmaster and every child, for Postgres), resume() SIGCONT; kill() and start()
take the server down and bring it back on the same port, with the same data for Postgres.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

PG_BIN = Path(
    os.environ.get("PG_BIN")
    or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)),
        "/usr/lib/postgresql/15/bin",
    )
)


def _dying_with_us(*command: str, user: str | None = None) -> list[str]:
    """The command, run so that the kernel kills it if this test run dies without cleaning up
    (killed, or its job cancelled): setpriv's parent-death signal, set after any change of user
    (which would clear it) and kept across the exec, so the server is this process's child."""
    as_user = [f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
    return ["setpriv", "--pdeathsig", "KILL", *as_user, *command]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(ready: object, what: str, timeout: float = 30.0) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "T"


class _Server:
    process: subprocess.Popen[bytes] | None = None
    _paused = False

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        self.cleanup()

    def start(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        return [self.process.pid, *_children(self.process.pid)]

    def pause(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        # A process may be caught stopped a moment after our SIGCONT (a parent that stops itself
        # when it sees its child stopped, as runuser does); continue until nothing stays stopped.
        for _ in range(50):
            for pid in self.pids():
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)
            if not any(_stopped(pid) for pid in self.pids()):
                break
        self._paused = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def kill(self) -> None:
        """Stops the server at once (SIGKILL for Redis, an immediate shutdown for Postgres)."""
        if self.process is None:
            return
        if self._paused:
            self.resume()
        self._stop(self.process)
        self.process = None

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait(timeout=30)


class RedisServer(_Server):
    """A redis-server of its own: memory-only, unless `options` say otherwise (they come last,
    so they win: e.g. "--appendonly", "yes")."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-redis-"))
        self.options = options

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            _dying_with_us(
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                *self.options,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(lambda: _answers(self.port), f"redis-server on port {self.port}")
        # The port answers a moment before the server reads commands.
        _wait_until(self._pong, f"redis-server on port {self.port}")

    def _pong(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() == "PONG"

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer(_Server):
    """A Postgres cluster of its own (initdb once, then start/kill/start keeps its data).

    As root, the cluster belongs to the `postgres` user, as Postgres refuses to run as root.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-postgres-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def _user(self) -> str | None:
        # The user is switched by an exec (Popen's user=, setpriv), never by a parent process such
        # as runuser's: it would stop itself when its child is stopped, breaking pause() and kill().
        return "postgres" if self._as_postgres else None

    def _run(self, *args: str) -> None:
        user = self._user()
        subprocess.run(args, check=True, capture_output=True, user=user, group=user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        log = (self.dir / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            _dying_with_us(
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                user=self._user(),
            ),
            stdout=log,
            stderr=log,
        )
        log.close()
        _wait_until(self._ready, f"postgres on port {self.port}")

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        # An immediate shutdown: like a crash, but the postmaster takes its children with it.
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in self.pids():
                os.kill(pid, signal.SIGKILL)
            process.wait(timeout=30)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresReplica(PostgresServer):
    """A streaming replica of `primary` (a PostgresServer of the run's own): a base backup of it
    (`pg_basebackup -R`, which also writes how to stream from it), started on a port of its own.
    pause_replay() and resume_replay() stop and restart applying what it receives."""

    def __init__(self, primary: PostgresServer) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-postgres-replica-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
            # A checkpoint at once, not spread over minutes.
            "--checkpoint=fast",
        )  # fmt: skip

    def sql(self, query: str, database: str = "postgres") -> str:
        """The first value `query` returns, as psql writes it."""
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-Atqc", query],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def pause_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_resume()")


class SentinelServer(_Server):
    """A Redis Sentinel watching `service` at the master on `master_port` (quorum 2), quick to
    act: a master is down after a second without answers."""

    def __init__(self, service: str, master_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-sentinel-"))
        # Sentinel rewrites its configuration file as it learns (peers, replicas, failovers).
        (self.dir / "sentinel.conf").write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
            f"sentinel parallel-syncs {service} 1\n"
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            _dying_with_us("redis-server", str(self.dir / "sentinel.conf"), "--sentinel"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until(lambda: _answers(self.port), f"redis sentinel on port {self.port}")

    def cli(self, *args: str) -> list[str]:
        """The lines redis-cli prints for a command ([] if the sentinel does not answer)."""
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.splitlines() if result.returncode == 0 else []

    def fields(self, *args: str) -> list[dict[str, str]]:
        """A reply of flat name/value lists (SENTINEL MASTER, SENTINEL REPLICAS) as dicts; one
        dict per entry (redis-cli prints nested replies as one flat list of lines)."""
        lines = self.cli(*args)
        entries: list[dict[str, str]] = []
        for name, value in zip(lines[::2], lines[1::2], strict=False):
            if name == "name" or not entries:
                entries.append({})
            entries[-1][name] = value
        return entries

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A Redis master, one replica of it and three sentinels watching them, all of the test
    run's own. kill_master() takes the master down for good (SIGKILL); the sentinels promote
    the replica; rejoin() brings the killed node back as a replica of the new master, so the
    group is whole again for later tests."""

    SERVICE = "test-sessions"
    # A replica's first sync starts at once, not after the default 5 s.
    NODE_OPTIONS = ("--repl-diskless-sync-delay", "0")

    def __init__(self) -> None:
        self.nodes = [RedisServer(*self.NODE_OPTIONS), RedisServer(*self.NODE_OPTIONS)]
        self.sentinels = [SentinelServer(self.SERVICE, self.nodes[0].port) for _ in range(3)]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def __enter__(self) -> SentinelGroup:
        try:
            self.nodes[0].start()
            self._start_replica(self.nodes[1], of=self.nodes[0])
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_whole()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in (*self.sentinels, *self.nodes):
            server.kill()
            server.cleanup()

    def master(self) -> RedisServer:
        """The node the sentinels call the master (they must agree)."""
        ports = {self._master_port(s) for s in self.sentinels}
        assert len(ports) == 1, f"the sentinels disagree on the master: {ports}"
        return next(n for n in self.nodes if n.port in ports)

    def replica(self) -> RedisServer:
        master = self.master()
        return next(n for n in self.nodes if n is not master)

    def kill_master(self) -> RedisServer:
        """SIGKILLs the master; returns it (down) for rejoin()."""
        master = self.master()
        master.kill()
        return master

    def wait_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Waits until every sentinel names another master, which says it is one."""

        def moved() -> bool:
            ports = {self._master_port(s) for s in self.sentinels}
            if len(ports) != 1 or old.port in ports:
                return False
            node = next((n for n in self.nodes if n.port in ports), None)
            return node is not None and "role:master" in _info(node, "replication")

        _wait_until(moved, "a failover", timeout)
        return self.master()

    def rejoin(self, node: RedisServer) -> None:
        """Restarts a killed node as a replica of the current master."""
        self._start_replica(node, of=self.master())
        self.wait_whole()

    def wait_whole(self, timeout: float = 30.0) -> None:
        """Waits until the sentinels know each other, agree on a master that answers, and see
        its replica up, which is in sync with it."""
        _wait_until(self._whole, "the sentinel group", timeout)

    def _whole(self) -> bool:
        ports = {self._master_port(s) for s in self.sentinels}
        if len(ports) != 1:
            return False
        master = next((n for n in self.nodes if n.port in ports), None)
        if master is None or master.process is None:
            return False
        replica = next(n for n in self.nodes if n is not master)
        if replica.process is None or "master_link_status:up" not in _info(replica, "replication"):
            return False
        for sentinel in self.sentinels:
            state = sentinel.fields("sentinel", "master", self.SERVICE)
            if not state or state[0].get("flags") != "master":
                return False
            if state[0].get("num-other-sentinels") != str(len(self.sentinels) - 1):
                return False
            replicas = sentinel.fields("sentinel", "replicas", self.SERVICE)
            seen = {r.get("port"): r for r in replicas}
            # Known and up (what a sentinel says of the replica's own link is refreshed every
            # 10 s only: the link is asked of the replica itself, above).
            known = seen.get(str(replica.port))
            if known is None or known.get("flags") != "slave":
                return False
        return True

    def _master_port(self, sentinel: SentinelServer) -> int | None:
        lines = sentinel.cli("sentinel", "get-master-addr-by-name", self.SERVICE)
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    @staticmethod
    def _start_replica(node: RedisServer, *, of: RedisServer) -> None:
        node.options = (*SentinelGroup.NODE_OPTIONS, "--replicaof", "127.0.0.1", str(of.port))
        node.start()


def _info(node: RedisServer, section: str) -> str:
    try:
        return node.cli("info", section)
    except subprocess.CalledProcessError:
        return ""

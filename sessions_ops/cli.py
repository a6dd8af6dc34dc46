"""The `sessions-api` command: serve, migrate (Postgres and Redis), prune history, export the
schema, and write sessions."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from pydantic import ValidationError
from redis.exceptions import RedisError

from sessions_config.logs import configure
from sessions_config.settings import Settings, get_settings, parse_age
from sessions_ops import admin_commands, webhook_commands
from sessions_ops.output import say
from store.errors import StorageUnavailable
from store.models import CLI, WRITER_END_REASONS, format_timestamp, parse_timestamp, utcnow
from store.sessions import DEFAULT_TTL, InvalidSession, IssuedSession, NewSession, NotUndone
from store.tokens import hash_token

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600

IMPORT_FORMAT = """Reads one JSON object per line on stdin, writes them in batches of 1000, and
prints one {"token", "token_suffix"} line per row, in order.

Fields of a row:
  user_id      string, required: whose session (1 to 128 characters)
  ip           string, required: IPv4 or IPv6 address it signed in from
  created_at   string, required: ISO 8601, e.g. 2026-03-01T10:00:00Z
  expires_at   string, required: ISO 8601, after created_at
  user_agent   string, optional: the browser's User-Agent (cut to 1024 characters)
  ended_at     string, optional: ISO 8601; with it, the row goes straight to history
  end_reason   string, optional: logout, revoked or expired (with ended_at)
  token        string, optional: an existing cookie value to keep working

Example line:
  {"user_id": "u-42", "ip": "203.0.113.7", "created_at": "2026-03-01T10:00:00Z",
   "expires_at": "2026-03-31T10:00:00Z", "user_agent": "Mozilla/5.0"}

A bad line stops the import (exit 1) and is named: every row before it was imported and
printed, none after."""
# Rows one prune batch (one transaction) deletes at most.
MAX_PRUNE_BATCH = 10_000

# Options whose values may legitimately start with "-" (any token string, a user
# agent, a user id), which argparse would otherwise read as an option.
# `--older-than -5d` too, so that it is refused as an age rather than taken for an option.
FREE_TEXT_OPTIONS = frozenset({"--token", "--user-id", "--user-agent", "--older-than"})
# `--token -` reads the token from standard input.
FROM_STDIN = "-"


def _attach_free_text_values(argv: Sequence[str]) -> list[str]:
    """Rewrite `--token VALUE` as `--token=VALUE` so VALUE is never taken for an option."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            out.append(arg)
            out.extend(args)
            break
        if arg in FREE_TEXT_OPTIONS:
            value = next(args, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def _read_token(args: argparse.Namespace) -> str | None:
    """The token of --token; `--token -` reads it from standard input instead, which keeps it
    out of `ps` and shell history. None (after saying so) when there is none."""
    token = str(args.token)
    if args.token == FROM_STDIN:
        try:
            if sys.stdin is None:
                token = ""
            elif sys.stdin.isatty():
                token = getpass.getpass("token: ")
            else:
                # Bytes that are not UTF-8 make a token that matches nothing, not a traceback.
                token = sys.stdin.buffer.readline().decode("utf-8", "replace")
        except EOFError:
            token = ""
        token = token.strip()
    if not token:
        say("no token given: use --token TOKEN, or --token - to read it from stdin")
        return None
    return token


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: with them, `--tok -abc` would read -abc as an option again.

    With `one_line_errors`, a usage error is one line (no usage text), for commands that run
    unattended (cron) and whose errors end up in a log."""

    def __init__(self, *args: Any, one_line_errors: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.one_line_errors = one_line_errors

    def error(self, message: str) -> NoReturn:
        if not self.one_line_errors:
            super().error(message)
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _whole_number(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} must be a whole number from {low} to {high}")
    return value


def _port(text: str) -> int:
    return _whole_number(text, 0, 65535, "a port")


def _workers(text: str) -> int:
    return _whole_number(text, 1, 64, "workers")


def _timestamp(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-03-01T10:00:00Z"
        ) from None


def _ttl(text: str) -> int:
    return _whole_number(text, 1, MAX_TTL_SECONDS, "a lifetime in seconds (at most 10 years)")


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch(text: str) -> int:
    return _whole_number(text, 1, MAX_PRUNE_BATCH, "a batch")


def _max_batches(text: str) -> int:
    return _whole_number(text, 1, 1_000_000_000, "max batches")


def _pause(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:  # NaN fails too
        raise argparse.ArgumentTypeError("a pause must be a number of seconds from 0 to 60")
    return value


def _token_hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", text.strip().lower()):
        raise argparse.ArgumentTypeError("a token hash is 64 hexadecimal digits")
    return text.strip().lower()


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _print_issued(issued: IssuedSession) -> None:
    _print_json({"token": issued.token, "token_suffix": issued.record.token_suffix})


def _print_left(owners: Mapping[str, str]) -> None:
    """Names, one line each, the sessions a failed write could not remove (token hash -> user
    id; hashes, never tokens), so that an operator can end them."""
    if not owners:
        return
    say(
        f"{len(owners)} sessions whose tokens were never printed could not "
        "be removed and may stay active; end each with `sessions-api sessions end` and the "
        "options on its line:"
    )
    for token_hash in sorted(owners):
        user = shlex.quote(owners[token_hash])
        say(f"not removed: --user-id {user} --token-hash {token_hash}")


# -- commands -----------------------------------------------------------------------------------


async def _why_not_migrated(settings: Settings) -> str | None:
    """Why the database cannot serve yet, said so an operator knows what to run; None if it can."""
    from store.migrate import pending

    try:
        missing = await pending(settings.database_url)
    except asyncpg.InvalidCatalogNameError as exc:
        return f"{exc}: run `sessions-api migrate` first"
    if missing:
        return f"the database lacks migrations {', '.join(missing)}: run `sessions-api migrate`"
    return None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_http.app import traces_problem
    from sessions_http.metrics import MULTIPROC_ENV

    # A bad OTEL_* value (when they ask for traces), found here, is one line like the settings'
    # own; found by each worker, traces would be off, and said only in the log.
    if problem := traces_problem():
        say(f"bad configuration: {problem}")
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    # A taken port, found here, is one line that says what holds it; found by uvicorn, many.
    if problem := _port_problem(host, port):
        say(problem)
        return 1
    if args.check_port:
        print(f"port {port} on {host} is free")
        return 0
    # Found here, this is one clear line; found by the app at startup, a traceback.
    if reason := asyncio.run(_why_not_migrated(settings)):
        say(f"{reason}")
        return 1
    # Several workers share their metrics through files, so /metrics adds all of them up
    # whichever worker answers it. The directory must start empty: a fresh one each run.
    metrics_dir = None
    if args.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="sessions-api-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        _run_uvicorn(args, settings)
    except SystemExit as exc:
        # uvicorn exits 3 when it cannot start (port taken, app startup failed); it has logged
        # why. Ours is 1, like every other failure.
        return 0 if exc.code in (0, None) else 1
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why serve cannot listen on host:port (and what answers there), or None."""
    if port == 0:
        return None
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return f"cannot listen on port {port} of {host} ({exc.strerror or exc}): {_who(host, port)}"
    return None


def _who(host: str, port: int) -> str:
    """What answers at host:port, in a few words."""
    import httpx

    name = f"[{host}]" if ":" in host else host
    name = "127.0.0.1" if host in ("0.0.0.0", "") else name  # noqa: S104
    base = f"http://{name}:{port}"
    try:
        answer = httpx.get(f"{base}/healthz", timeout=1.0)
    except httpx.HTTPError:
        return "something that does not speak HTTP holds it"
    if answer.status_code == 200 and answer.headers.get("content-type", "").startswith(
        "application/json"
    ):
        try:
            if answer.json() == {"status": "ok"}:
                return f"a sessions-api answers there already ({base}/)"
        except ValueError:
            pass
    return f"another HTTP server answers there ({base})"


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from sessions_http.serving import uvicorn_options

    options: dict[str, Any] = {
        "factory": True,
        "host": args.host or settings.host,
        "port": args.port if args.port is not None else settings.port,
        "workers": args.workers,
        **uvicorn_options(settings),
    }
    admin = settings.admin_address
    if admin is None:
        uvicorn.run("sessions_http.app:create_app", **options)
        return
    # Two listeners, one app: the admin API answers on ADMIN_LISTEN only (admin_boundary.py),
    # which tells them apart by port.
    if admin[1] == options["port"]:
        say(
            f"ADMIN_LISTEN {settings.admin_listen} needs a port of its own, "
            f"not the main one ({options['port']})"
        )
        raise SystemExit(2)
    config = uvicorn.Config("sessions_http.app:create_app", **options)
    try:
        admin_socket = _listening_socket(*admin)
    except OSError as exc:
        say(f"cannot listen on ADMIN_LISTEN {settings.admin_listen}: {exc}")
        raise SystemExit(1) from None
    sockets = [config.bind_socket(), admin_socket]
    server = uvicorn.Server(config)
    if args.workers > 1:
        from uvicorn.supervisors.multiprocess import Multiprocess

        Multiprocess(config, sockets=sockets).run()
    else:
        server.run(sockets=sockets)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, as uvicorn binds its own (for workers to share)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from store.migrate import migrate

    applied = await migrate(settings.database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


async def cmd_migrate_redis(args: argparse.Namespace, settings: Settings) -> int:
    """Moves every session of the old Redis layout; progress on stderr, a JSON summary on
    stdout. Safe to run again: what moved is not in the old layout any more."""
    from sessions_config.resources import open_resources

    if settings.redis_mode == "cluster":
        say(
            "the old layout only ever lived on a single Redis; run migrate-redis "
            "against it (REDIS_MODE=standalone) before moving the data to a cluster"
        )
        return 2
    moved = ended = 0
    skipped: list[str] = []
    async with open_resources(settings, geo=False) as res:
        async for done in res.store.move_legacy_redis():
            moved, ended = moved + done.moved, ended + done.ended
            skipped += done.skipped
            say(f"migrate-redis: {moved} sessions moved")
    for token_hash in skipped:
        say(f"left in the old layout (no user_id or no expiry): {token_hash}")
    _print_json({"moved": moved, "ended": ended, "skipped": len(skipped)})
    return 0


def cmd_export_schema(args: argparse.Namespace, settings: Settings) -> int:
    from graph.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
        return 0
    try:
        Path(args.output).write_text(sdl, encoding="utf-8")
    except OSError as exc:
        say(f"cannot write {args.output}: {exc.strerror or exc}")
        return 1
    say(f"wrote {args.output}")
    return 0


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when Postgres (the server; the database may not exist yet) and Redis answer."""
    from sessions_config.resources import redis_client

    ok = True
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=3)
        await conn.close()
        print("postgres: answering at DATABASE_URL")
    except asyncpg.InvalidCatalogNameError:
        # The server answers; `migrate` creates the database.
        print("postgres: answering at DATABASE_URL (no database yet: run migrate)")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        say(f"postgres: not answering at DATABASE_URL ({exc.__class__.__name__})")
        ok = False
    redis = redis_client(settings)
    where = "the sentinels' master" if settings.redis_mode == "sentinel" else "REDIS_URL"
    try:
        async with asyncio.timeout(3):
            await redis.ping()
        print(f"redis: answering at {where}")
    except Exception as exc:  # any failure means "not there"
        say(f"redis: not answering at {where} ({exc.__class__.__name__})")
        ok = False
    finally:
        await redis.aclose()
    if ok:
        print("ok")
    return 0 if ok else 1


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources
    from sessions_http.cookie import COOKIE
    from sessions_ops.demo import DEMO_USER, seed_demo

    async with open_resources(settings, geo=False) as res:
        token, active, past = await seed_demo(res.store)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    base = (args.base_url or f"http://{host}:{settings.port}").rstrip("/")
    print(f"Demo user {DEMO_USER!r}: {active} active sessions, {past} past ones.")
    print(f"  The page: {base}/#{COOKIE}={token}")
    print(f"  GraphiQL: {base}/graphql#{COOKIE}={token}")
    print("            (both sign that browser in; on localhost only)")
    print(f"  REST:     curl -b '{COOKIE}={token}' {base}/v1/users/me/sessions")
    return 0


async def cmd_sessions_create(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    # --ttl counts from now, DEFAULT_TTL unless given; --expires-at is a moment. With neither,
    # the store's default applies: DEFAULT_TTL from creation, which is now.
    expires_at = args.expires_at
    if expires_at is None and (args.ttl is not None or args.created_at is not None):
        expires_at = utcnow() + (timedelta(seconds=args.ttl) if args.ttl else DEFAULT_TTL)
    created_at = args.created_at
    new = NewSession(
        user_id=args.user_id,
        ip=args.ip,
        user_agent=args.user_agent,
        created_at=created_at,
        expires_at=expires_at,
    )
    async with open_resources(settings, geo=False) as res:
        issued = await res.store.create(new)
        try:
            _print_issued(issued)
        except BrokenPipeError:
            await res.store.discard([issued])  # nobody got its token
            raise
    return 0


async def cmd_sessions_end(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    if args.token_hash is not None:
        token_hash = args.token_hash
    elif (token := _read_token(args)) is not None:
        token_hash = hash_token(token)
    else:
        return 2
    async with open_resources(settings, geo=False) as res:
        record = await res.store.end_by_hash(
            token_hash, reason=args.reason, user_id=args.user_id, actor=CLI
        )
    if record is None:
        say(f"no session has this {'token' if args.token else 'token hash'}")
        return 1
    assert record.ended_at is not None
    _print_json(
        {
            "token_suffix": record.token_suffix,
            "ended_at": format_timestamp(record.ended_at),
            "end_reason": record.end_reason,
        }
    )
    return 0


async def cmd_sessions_touch(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources

    if (token := _read_token(args)) is None:
        return 2
    async with open_resources(settings, geo=False) as res:
        record = await res.store.touch(token)
    if record is None or record.last_seen_at is None:
        say("no active session has this token")
        return 1
    _print_json(
        {"token_suffix": record.token_suffix, "last_seen_at": format_timestamp(record.last_seen_at)}
    )
    return 0


async def cmd_sessions_restore(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources
    from sessions_ops.progress import Shown

    with Shown("restoring: checked", "sessions") as shown:

        def checked(count: int, restored: int, finished: int) -> None:
            shown.advance(count, more=f"{restored:,} restored, {finished:,} ends finished")

        async with open_resources(settings, geo=False) as res:
            done = await res.store.restore_active(progress=checked)
        shown.summary(f"checked {shown.done:,} sessions, restored {done.restored:,}")
    _print_json({"restored": done.restored, "ends_finished": done.finished})
    return 0


async def cmd_sessions_import(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources
    from sessions_ops.importer import ImportInterrupted, ImportStopped, import_lines, lines_of

    if sys.stdin is None:
        say("standard input is closed; pipe JSON lines into it")
        return 2

    # Ctrl-C stops the import between batches: the batch being written finishes and is
    # printed, rows read after it are dropped. A second Ctrl-C interrupts at once.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_ctrl_c() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_ctrl_c)
    from sessions_ops.progress import Shown

    shown = Shown("importing", "rows")

    def emit(issued: IssuedSession) -> None:
        _print_issued(issued)
        shown.advance()

    async with open_resources(settings, geo=False) as res:
        try:
            with shown:
                total = await import_lines(res.store, lines_of(sys.stdin.fileno(), stop), emit)
        except ImportInterrupted as exc:
            say(
                f"import interrupted at line {exc.line}. Every row whose token was printed was "
                "imported; nothing from that line on was."
            )
            return 130
        except ImportStopped as exc:
            say(
                f"import stopped at {exc}. Every row before it was imported and printed; "
                "nothing from it on was."
            )
            _print_left(exc.left)
            return 1
    shown.summary(f"imported {total:,} sessions, 0 errors")
    return 0


async def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from sessions_config.resources import open_resources
    from sessions_ops.prune import Pruned, prune_audit, prune_history

    retention: timedelta = args.older_than or settings.history_retention
    before = utcnow() - retention

    def report(done: Pruned) -> None:
        say(f"prune: {done.deleted} deleted in {done.batches} batches, {done.seconds:.1f} s")

    # Ctrl-C or SIGTERM (a CronJob's deadline) stops it between batches, with its summary; a
    # second one stops it at once (the batch under way is rolled back).
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        stop.set()
        for signum in signals:
            loop.remove_signal_handler(signum)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    async with open_resources(settings, geo=False) as res:
        done = await prune_history(
            res.store,
            before=before,
            batch=args.batch,
            pause=args.pause,
            max_batches=args.max_batches,
            stop=stop,
            progress=report,
        )
        # The audit trail has a retention of its own (AUDIT_RETENTION), and --max-batches of
        # its own: a history backlog that takes every run's batches must not starve it.
        audit = await prune_audit(
            res.store.pool,
            before=utcnow() - settings.audit_retention,
            batch=args.batch,
            pause=args.pause,
            max_batches=args.max_batches,
            stop=stop,
        )
    _print_json(
        {
            "deleted": done.deleted,
            "batches": done.batches,
            "older_than": format_timestamp(before),
            "seconds": round(done.seconds + audit.seconds, 3),
            "complete": done.complete and audit.complete,
            "audit_deleted": audit.deleted,
        }
    )
    return 130 if stop.is_set() else 0


# -- argument parsing ---------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sessions-api")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sessions-api",
        description="The sessions API: serve it, migrate and prune its database, write sessions.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(sub)
    sessions = sub.add_parser("sessions", help="write sessions (the login service's side)")
    ssub = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_session_commands(ssub)
    admin_commands.add_session_commands(ssub)
    keys = sub.add_parser("admin-keys", help="keys of the admin API (/admin/v1)")
    admin_commands.add_key_commands(
        keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    )
    admin_commands.add_audit_command(sub)
    hooks = sub.add_parser("webhooks", help="webhook endpoints, and the event workers")
    webhook_commands.add_commands(
        hooks.add_subparsers(dest="action", required=True, metavar="ACTION"), _timestamp
    )
    return parser


def _add_service_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """Running the service: serve, migrate, check, demo, prune, export-schema."""
    defaults = Settings.model_fields
    serve = sub.add_parser("serve", help="serve HTTP with uvicorn (HOST, PORT)")
    serve.add_argument("--host", help=f"default: HOST, else {defaults['host'].default}")
    serve.add_argument("--port", type=_port, help=f"default: PORT, else {defaults['port'].default}")
    serve.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--check-port",
        action="store_true",
        help="only check that the port is free (exit 0), else say what answers there (exit 1)",
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser(
        "migrate", help="create the database if needed and apply migrations"
    ).set_defaults(func=cmd_migrate)
    sub.add_parser(
        "migrate-redis",
        help="move active sessions from the Redis layout before hash tags (docs/DATA.md)",
    ).set_defaults(func=cmd_migrate_redis)
    sub.add_parser("check", help="exit 0 when Postgres and Redis answer").set_defaults(
        func=cmd_check
    )
    demo = sub.add_parser("demo", help="(re)seed the demo user and print its psession cookie")
    demo.add_argument(
        "--base-url",
        help="where the server answers, for the links (default: from HOST and PORT)",
    )
    demo.set_defaults(func=cmd_demo)

    prune = sub.add_parser(
        "prune",
        help="delete past sessions that ended longer ago than the retention, in batches",
        one_line_errors=True,
    )
    prune.add_argument(
        "--older-than",
        type=_age,
        metavar="AGE",
        help="an age: 400d (days) or 36h (hours); default: HISTORY_RETENTION, else "
        f"{defaults['history_retention'].default.days}d",
    )
    prune.add_argument(
        "--batch",
        type=_batch,
        default=1000,
        metavar="N",
        help=f"sessions deleted per transaction, 1 to {MAX_PRUNE_BATCH} (default 1000)",
    )
    prune.add_argument(
        "--pause",
        type=_pause,
        default=0.0,
        metavar="SECONDS",
        help="seconds between batches, up to 60 (default 0)",
    )
    prune.add_argument(
        "--max-batches",
        type=_max_batches,
        metavar="N",
        help="stop after this many batches; the next run goes on (default: no limit)",
    )
    prune.set_defaults(func=cmd_prune)

    export = sub.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", "-o", default="schema.graphql", help="a file, or - for stdout")
    export.set_defaults(func=cmd_export_schema)


def _add_session_commands(ssub: argparse._SubParsersAction[_Parser]) -> None:
    """Writing sessions: create, end, touch, restore, import."""
    create = ssub.add_parser("create", help="create a session and print its token as JSON")
    create.add_argument(
        "--user-id", required=True, help="whose session it is (1 to 128 characters)"
    )
    create.add_argument("--ip", required=True, help="the address it signed in from (IPv4 or IPv6)")
    create.add_argument("--user-agent", default="", help="the browser's User-Agent header")
    create.add_argument("--created-at", type=_timestamp, help="ISO 8601; default now")
    lifetime = create.add_mutually_exclusive_group()
    lifetime.add_argument("--expires-at", type=_timestamp, help="ISO 8601")
    lifetime.add_argument(
        "--ttl", type=_ttl, help=f"seconds from now (default: {DEFAULT_TTL.days} days from now)"
    )
    create.set_defaults(func=cmd_sessions_create)

    end = ssub.add_parser("end", help="end a session by its token (or token hash)")
    which = end.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", help="the session's token; - reads it from stdin")
    which.add_argument(
        "--token-hash",
        type=_token_hash,
        help="the SHA-256 of the token, in hex (as a failed import names them)",
    )
    end.add_argument(
        "--user-id",
        help="whose session it is, for one Redis holds without its token's pointer and "
        "Postgres does not know (as a failed import names them)",
    )
    end.add_argument(
        "--reason",
        choices=WRITER_END_REASONS,
        default="logout",
        help="logout (the user signed out; the default) or revoked",
    )
    end.set_defaults(func=cmd_sessions_end)

    touch = ssub.add_parser("touch", help="mark a session as seen now (its lastSeenAt)")
    touch.add_argument("--token", required=True, help="the session's token; - reads it from stdin")
    touch.set_defaults(func=cmd_sessions_touch)

    restore = ssub.add_parser(
        "restore", help="rewrite to Redis the active sessions it lost (from Postgres)"
    )
    restore.set_defaults(func=cmd_sessions_restore)

    imp = ssub.add_parser(
        "import",
        help="bulk-create sessions from JSON lines on stdin",
        description=IMPORT_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.set_defaults(func=cmd_sessions_import)


def _stdout_closed() -> None:
    # Whoever read the output stopped reading (`| head`). Nothing more can be printed, and
    # Python must not try again at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    say("standard output was closed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_free_text_values(sys.argv[1:] if argv is None else argv))
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            say(f"bad configuration: {name}: {message}")
        return 2
    configure(settings.log_level if args.command == "serve" else "warning", settings.log_format)
    try:
        result = args.func(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except InvalidSession as exc:
        say(f"{exc}")
        return 2
    except BrokenPipeError:
        _stdout_closed()
        return 1
    except NotUndone as exc:
        # A write failed and its undo could not remove all of it.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, BrokenPipeError):
            _stdout_closed()
        else:
            say(f"cannot reach storage: {cause}")
        _print_left(exc.owners)
        return 1
    except (OSError, TimeoutError, RedisError, StorageUnavailable) as exc:
        say(f"cannot reach storage: {exc}")
        return 1
    except asyncpg.PostgresError as exc:
        say(f"Postgres refused: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

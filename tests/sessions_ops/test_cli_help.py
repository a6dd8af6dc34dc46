"""The CLI explains itself: --version, help text on every option and argument, the import
format in `sessions import --help`, and messages that start with `sessions-api:`."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator

from sessions_config.settings import Settings
from sessions_ops.cli import build_parser
from tests.cli_runner import run_cli
from tests.packages import PYPROJECT


def _parsers(
    parser: argparse.ArgumentParser, path: str = "sessions-api"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_and_argument_says_what_it_is() -> None:
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert missing == []


async def test_version(base_settings: Settings) -> None:
    result = await run_cli(base_settings, "--version")
    assert result.code == 0, result
    version = next(
        line.split('"')[1]
        for line in PYPROJECT.read_text("utf-8").splitlines()
        if line.startswith("version = ")
    )
    assert result.stdout.strip() == f"sessions-api {version}"


async def test_import_help_describes_the_format(base_settings: Settings) -> None:
    result = await run_cli(base_settings, "sessions", "import", "--help")
    assert result.code == 0, result
    for field in ("user_id", "ip", "created_at", "expires_at", "user_agent", "ended_at", "token"):
        assert field in result.stdout
    example = next(
        line for line in result.stdout.splitlines() if line.strip().startswith('{"user_id"')
    )
    assert example


async def test_check_says_what_it_checked(base_settings: Settings) -> None:
    result = await run_cli(base_settings, "check")
    assert result.code == 0, result
    assert result.stdout.strip().splitlines()[-1] == "ok"
    assert "postgres" in result.stdout and "redis" in result.stdout


async def test_failures_are_messages_that_start_with_the_name(base_settings: Settings) -> None:
    failures = [
        await run_cli(base_settings, "sessions", "end", "--token", "x" * 43),
        await run_cli(base_settings, "sessions", "touch", "--token", "x" * 43),
        await run_cli(
            base_settings, "admin-keys", "revoke", "00000000-0000-4000-8000-000000000000"
        ),
        await run_cli(base_settings, "check", REDIS_URL="redis://127.0.0.1:1"),
    ]
    for result in failures:
        assert result.code == 1, result
        lines = result.stderr.strip().splitlines()
        assert lines and all(line.startswith("sessions-api: ") for line in lines), result.stderr


async def test_a_taken_port_is_one_line_that_names_it(
    base_settings: Settings, database: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(base_settings, "serve", "--port", str(port))
    assert result.code == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sessions-api: ") and str(port) in line


async def test_demo_prints_links_to_the_base_url_given(base_settings: Settings) -> None:
    result = await run_cli(base_settings, "demo", "--base-url", "http://sessions.test:9090/")
    assert result.code == 0, result
    links = [word for word in result.stdout.split() if word.startswith("http")]
    assert links and all(link.startswith("http://sessions.test:9090/") for link in links)


async def test_serve_check_port_says_what_answers_there(
    base_settings: Settings, server: str
) -> None:
    port = server.rsplit(":", 1)[1]
    busy = await run_cli(base_settings, "serve", "--port", port, "--check-port")
    assert busy.code == 1, busy
    (line,) = busy.stderr.strip().splitlines()
    assert f"port {port}" in line and "sessions-api answers" in line
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    ok = await run_cli(base_settings, "serve", "--port", str(free), "--check-port")
    assert ok.code == 0, ok

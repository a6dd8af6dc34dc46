"""schema.graphql, committed at the repository root, is the code's schema exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graph.schema import schema
from tests.packages import PYPROJECT

ROOT = PYPROJECT.parent
SCHEMA_FILE = ROOT / "schema.graphql"
STALE = "schema.graphql is out of date: run `sessions-api export-schema` and commit the result."


def test_schema_file_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema.as_str() + "\n", STALE


def export_schema(command: list[str], output: str) -> subprocess.CompletedProcess[str]:
    """`COMMAND export-schema --output OUTPUT`, run from the repository root."""
    return subprocess.run(
        [*command, "export-schema", "--output", output],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_export_schema_to_stdout_prints_the_same() -> None:
    cli = Path(sys.executable).parent / "sessions-api"
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "sessions_ops.cli"]
    result = export_schema(command, "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout == schema.as_str() + "\n"


def test_export_schema_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out.graphql"
    result = export_schema([sys.executable, "-m", "sessions_ops.cli"], str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == schema.as_str() + "\n"

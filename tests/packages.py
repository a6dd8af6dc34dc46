"""The project's own packages, as pyproject.toml's import-linter contract lists them (top floor
first): one list for the layer test and for the tests that pick out our own log lines."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

OUR_PACKAGES: tuple[str, ...] = tuple(
    tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["importlinter"]["root_packages"]
)


def is_ours(logger_name: str) -> bool:
    """Whether a log record's logger belongs to one of our packages."""
    return logger_name.split(".")[0] in OUR_PACKAGES

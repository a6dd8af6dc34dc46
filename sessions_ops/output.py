"""What `sessions-api` writes: results on stdout (JSON, a line each), and messages on stderr, a
line each, every one starting with `sessions-api:` so that it can be told apart in a log."""

from __future__ import annotations

import sys

PREFIX = "sessions-api: "


def say(message: str) -> None:
    """One message on stderr."""
    print(PREFIX + message, file=sys.stderr, flush=True)

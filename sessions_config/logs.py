"""Logging set-up shared by the server and the CLI: one line per event, to stderr."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, force=True)
    # httpx logs every request URL at INFO; the ip-api key would travel in it.
    logging.getLogger("httpx").setLevel(logging.WARNING)

"""Logging set-up shared by the server and the CLI: one line per event, to stderr.

LOG_FORMAT=text (the default) writes `time LEVEL logger: message [request_id]`; LOG_FORMAT=json
writes one JSON object per line (time, level, logger, message, and request_id when the line was
written while serving a request), for log pipelines. Nothing here ever writes a cookie or a
token: no log call is given one."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(request_suffix)s"

# The id of the request being served, where there is one (sessions_http/metrics.py sets it).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


_make_record = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every record carries the id of the request its task serves (None outside one), whatever
    handler writes it."""
    record = _make_record(*args, **kwargs)
    request_id = REQUEST_ID.get()
    record.request_id = request_id
    record.request_suffix = f" [{request_id}]" if request_id else ""
    return record


logging.setLogRecordFactory(_record_with_request_id)


def configure(level: str = "info", log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs every request URL at INFO; the ip-api key would travel in it.
    logging.getLogger("httpx").setLevel(logging.WARNING)

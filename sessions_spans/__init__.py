"""Spans of the service's own work (a GraphQL operation, a geolocation lookup) for traces.

Without traces this is all there is: `span()` hands back one shared context that does nothing,
so the code that marks its work costs a function call. sessions_http/tracing.py (OpenTelemetry,
the `otel` extra) installs a real start when traces are on. Nothing here imports OpenTelemetry,
and every package may use it: it is the bottom layer, importing none of ours.

Whether the OTEL_* variables ask for traces is decided here too (`exporters_asked_for`), without
OpenTelemetry: when they do not, tracing.py is never imported, so no OTEL_* value can matter
(importing OpenTelemetry reads some, and raises on a bad OTEL_PROPAGATORS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]

# Any of these asks for traces; OTEL_SDK_DISABLED=true overrides them.
_ASKING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def exporters_asked_for(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (`otlp` when only an endpoint is set); none when
    no variable asks for traces, or OTEL_SDK_DISABLED is true, or the exporter is `none`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    if not any(environ.get(name, "").strip() for name in _ASKING):
        return []
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    return [name.strip() for name in names.split(",") if name.strip() not in ("", "none")]


class BadConfiguration(Exception):
    """Traces were asked for, but an OTEL_* value cannot work: `what` (the variable, or the
    variables) and `why`, one line."""

    def __init__(self, what: str, why: str) -> None:
        self.what = what
        self.why = " ".join(why.split()) or "invalid"
        super().__init__(f"{what}: {self.why}")


class Span(Protocol):
    """What our code does with a span (OpenTelemetry's spans are such)."""

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def update_name(self, name: str) -> None: ...


class _NoSpan:
    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass


# Starts a span, the current one's child, as the current span for a `with` block.
StartSpan = Callable[[str, Attributes | None], AbstractContextManager[Span]]

# One for every caller: nullcontext keeps no state between uses.
_NOTHING: AbstractContextManager[Span] = nullcontext(_NoSpan())
_start: StartSpan | None = None


def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Span]:
    """A span named `name` around a `with` block, while traces are on; else nothing."""
    start = _start
    return _NOTHING if start is None else start(name, attributes)


def enabled() -> bool:
    return _start is not None


def install(start: StartSpan | None) -> None:
    """Traces on (with how to start a span) or, with None, off."""
    global _start
    _start = start

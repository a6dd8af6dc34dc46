"""Scalars. Timestamps: ISO 8601 UTC to the second with a trailing Z, as the v1 contract shows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types.scalar import ScalarDefinition

from store.models import format_timestamp, parse_timestamp


def _parse(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be a string like 2026-03-01T10:00:00Z")
    return parse_timestamp(value)


DateTime = strawberry.scalar(
    name="DateTime",
    description="A UTC instant to the second, ISO 8601 with a trailing Z: 2026-03-01T10:00:00Z.",
    serialize=format_timestamp,
    parse_value=_parse,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {datetime: DateTime}

# Serializers that make a string of every value of one Python type (never null): compiled plans
# call them directly for such values (graph/compiled/plan.py).
TOTAL_SERIALIZERS: dict[Callable[[Any], Any], type] = {format_timestamp: datetime}

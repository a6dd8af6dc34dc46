"""Whether a value must be awaited: Strawberry's check, as the fallback engine uses it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard, cast

from strawberry.execution.is_awaitable import optimized_is_awaitable

# Primitives, the values most fields hold, are told apart by their type alone.
is_awaitable = cast(Callable[[Any], TypeGuard[Awaitable[Any]]], optimized_is_awaitable)

"""Per-process memos of pure parsers of short texts: the same stored ids, times, addresses and
cache entries are read on every look at a page, and parsing them again costs more than the rest
of their reading.

A memo is bounded by entries, and by its key: a text longer than `max_text` (longer than any
value the memo is for) is parsed without it, so no entry is large. Only what parses is kept (an
exception is never memoised), so damaged data is refused, and read again, every time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K", str, bytes, str | bytes)
T = TypeVar("T")


def memo_of_short_texts(
    *, entries: int, max_text: int
) -> Callable[[Callable[[K], T]], Callable[[K], T]]:
    def memoised(parse: Callable[[K], T]) -> Callable[[K], T]:
        cached = functools.lru_cache(maxsize=entries)(parse)

        @functools.wraps(parse)
        def parse_text(text: K) -> T:
            return cached(text) if len(text) <= max_text else parse(text)

        return parse_text

    return memoised

"""What a geolocation lookup knows about one IP. Every field may be unknown (None).

Provider answers and cache entries are untrusted input, and both are checked here, by one set of
rules: coordinates are finite and on the globe, texts are short printable strings, the country is
two letters, the flags are booleans. A provider's value that breaks a rule is unknown (None); a
cache entry that breaks one is not used at all (the lookup treats it as a miss).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from store.memo import memo_of_short_texts

# Longer than any real city, region or network name; bounds what one IP can put in a page.
MAX_TEXT = 200
# C0 and C1 control characters, and lone surrogates (which cannot be encoded as UTF-8, so a
# response carrying one could not be sent).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_TEXT or _UNPRINTABLE.search(value):
        return None  # "" is how ip-api says "unknown"
    return value


def _country(value: object) -> str | None:
    # ISO 3166-1 alpha-2.
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _degrees(limit: float) -> Callable[[object], float | None]:
    def check(value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        # False for NaN and the infinities; compares a huge int without converting it to float
        # (which would raise OverflowError).
        if not -limit <= value <= limit:
            return None
        return float(value)

    return check


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


# Field name -> the check that gives its value, or None when the value is unusable.
_CHECKS: dict[str, Callable[[object], Any]] = {
    "city": _text,
    "region_name": _text,
    "country_code": _country,
    "lat": _degrees(90.0),
    "lon": _degrees(180.0),
    "isp": _text,
    "org": _text,
    "is_mobile": _flag,
    "is_proxy": _flag,
    "is_hosting": _flag,
}


@dataclass(frozen=True, slots=True)
class GeoInfo:
    city: str | None = None
    region_name: str | None = None
    country_code: str | None = None
    lat: float | None = None
    lon: float | None = None
    isp: str | None = None
    org: str | None = None
    is_mobile: bool | None = None
    is_proxy: bool | None = None
    is_hosting: bool | None = None

    @classmethod
    def from_untrusted(cls, values: Mapping[str, object]) -> Checked:
        """A GeoInfo from a provider's values, keyed by field name, and the names of the fields
        whose value was refused (of the wrong type or out of range; those are unknown). A value
        that is missing, None or blank is simply unknown, not refused."""
        checked = {name: check(values.get(name)) for name, check in _CHECKS.items()}
        refused = [n for n, v in checked.items() if v is None and _given(values.get(n))]
        return Checked(cls(**checked), refused)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def to_json(self) -> str:
        # allow_nan=False: a NaN or an infinity is an error here, never a cache entry.
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> GeoInfo | None:
        """Reads a cached entry; "null" is a cached failure.

        Raises ValueError (or RecursionError, for absurdly nested text) when the entry is not one
        that to_json could have written: not JSON, not an object, or a field that fails its check
        (say "Infinity" written by an older version). Fields it does not know are ignored.
        """
        return _decode(text)


# Cache entries are decoded once per process (store/memo.py), keyed by their text: every page
# reads the same entries again, and a GeoInfo is an immutable value, so one decoded entry serves
# every reader. to_json writes at most ~1.3 k characters for ASCII names; only long non-ASCII
# ones, which JSON escapes, go past 2048 and are decoded each time. At most 8 M characters of
# keys in all, a few MB in practice.
@memo_of_short_texts(entries=4096, max_text=2048)
def _decode(text: str | bytes) -> GeoInfo | None:
    data: Any = json.loads(text)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("a geo cache entry must be a JSON object or null")
    values: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        value = data.get(name)
        checked = check(value)
        # Exactly what to_json writes: same value, same type (51 is not 51.0, "us" not "US").
        if value is not None and (checked != value or type(checked) is not type(value)):
            raise ValueError(f"geo cache entry has an invalid {name}")
        values[name] = value
    return GeoInfo(**values)


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


class Checked(NamedTuple):
    """A provider's answer for one IP, checked: what is usable, and the fields refused."""

    info: GeoInfo
    refused: list[str]

"""What a geolocation lookup knows about one IP. Every field may be unknown (None)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


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

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> GeoInfo | None:
        """Reads a cached entry; "null" is a cached failure."""
        data: Any = json.loads(text)
        if data is None:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

"""GeoByIpLoader: one per request, shared by Session.geo and History.geo, so that one query
makes a single batched lookup for all its distinct IPs."""

from __future__ import annotations

from strawberry.dataloader import DataLoader

from loaders.geo.lookup import GeoLookup
from loaders.geo.model import GeoInfo


class GeoByIpLoader(DataLoader[str, GeoInfo | None]):
    def __init__(self, lookup: GeoLookup) -> None:
        # Never create one at module level: its cache would be shared across users.
        super().__init__(load_fn=lookup.many)

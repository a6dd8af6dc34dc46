"""Where an IP is, through the request's GeoByIpLoader (so every IP of a query is looked up
in one batch)."""

from __future__ import annotations

from graph.context import Context
from loaders.geo.model import GeoInfo


async def geo_of(ctx: Context, ip: str) -> GeoInfo | None:
    return await ctx.geo.load(ip)

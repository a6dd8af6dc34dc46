"""The default provider: no network at all.

Country and network (ASN name) come from geoip2fast's bundled data, built from MaxMind
GeoLite2. When GEO_MMDB_PATH names a MaxMind City database, city, region and coordinates come
from it too (read with maxminddb).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import geoip2fast
import maxminddb
from geoip2fast import GeoIP2Fast

from sessions_geo.model import GeoInfo

log = logging.getLogger(__name__)

# Country + ASN for IPv4 and IPv6, shipped inside the geoip2fast package.
DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"


def _name(node: Any) -> str | None:
    if isinstance(node, dict):
        names = node.get("names")
        if isinstance(names, dict):
            value = names.get("en")
            return value if isinstance(value, str) and value else None
    return None


class OfflineProvider:
    name = "offline"
    max_batch = 1000

    def __init__(self, mmdb_path: str | None = None) -> None:
        """Loads the data files (about half a second): build it once, at start-up."""
        data = os.path.join(os.path.dirname(geoip2fast.__file__), DATA_FILE)
        self._fast = GeoIP2Fast(geoip2fast_data_file=data, verbose=False)
        self._city: maxminddb.Reader | None = None
        if mmdb_path:
            # A configured file that cannot be opened is a start-up error, not a silent downgrade.
            self._city = maxminddb.open_database(mmdb_path)
            log.info("geolocation: offline data plus city database %s", mmdb_path)
        if self._city is not None:
            # Cache entries from a provider with city data must not mix with ones without it.
            self.name = "offline+city"

    def _lookup_one(self, ip: str) -> GeoInfo | None:
        fast = self._fast.lookup(ip)
        network = fast.asn_name or None
        # geoip2fast answers "--" (and a private-range pseudo-code) when it has nothing; the
        # checks in GeoInfo.from_untrusted keep only a two-letter code.
        values: dict[str, object] = {
            "country_code": fast.country_code,
            "isp": network,
            "org": network,
        }
        if self._city is not None:
            try:
                found = self._city.get(ip)
            except ValueError:
                found = None
            if isinstance(found, dict):
                values["city"] = _name(found.get("city"))
                subdivisions = found.get("subdivisions")
                if isinstance(subdivisions, list) and subdivisions:
                    values["region_name"] = _name(subdivisions[0])
                location = found.get("location")
                if isinstance(location, dict):
                    values["lat"] = location.get("latitude")
                    values["lon"] = location.get("longitude")
                country_node = found.get("country")
                if isinstance(country_node, dict):
                    code = country_node.get("iso_code")
                    # Preferred to geoip2fast's, when it is a usable code.
                    if GeoInfo.from_untrusted({"country_code": code}).info.country_code:
                        values["country_code"] = code
        # The same checks as ip-api's answers: a City file is data from outside too.
        info, _refused = GeoInfo.from_untrusted(values)
        return None if info.is_empty() else info

    async def lookup(self, ips: Sequence[str]) -> Mapping[str, GeoInfo | None]:
        # In-memory lookups of a few microseconds each: no need to leave the event loop.
        return {ip: self._lookup_one(ip) for ip in ips}

    async def aclose(self) -> None:
        if self._city is not None:
            self._city.close()

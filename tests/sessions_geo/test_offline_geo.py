"""The offline geolocation provider (geoip2fast country + ASN data, and an optional MaxMind City
file) on real addresses, and the lookup pipeline in front of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MmdbF64, MMDBWriter
from netaddr import IPSet

from sessions_config.resources import Resources, make_provider
from sessions_config.settings import Settings
from sessions_geo.lookup import GeoLookup
from sessions_geo.model import GeoInfo
from sessions_geo.offline import OfflineProvider
from store.geo_cache import GeoCache


@pytest.fixture(scope="module")
def offline() -> OfflineProvider:
    """Loading the bundled data takes about half a second: once for the module."""
    return OfflineProvider()


def _city(
    city: str, region: str, region_code: str, country: str, lat: float, lon: float
) -> dict[str, object]:
    """A record shaped like MaxMind's GeoIP2/GeoLite2 City database."""
    return {
        "city": {"geoname_id": 1, "names": {"en": city}},
        "subdivisions": [{"iso_code": region_code, "names": {"en": region}}],
        "country": {"iso_code": country, "names": {"en": country}},
        "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon)},
    }


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny City database, laid out like MaxMind's (IPv6 tree, IPv4 under ::/96)."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-City",
        languages=["en"],
        description="test city database",
    )
    writer.insert_network(
        IPSet(["81.2.69.0/24"]), _city("London", "England", "ENG", "GB", 51.5142, -0.0931)
    )
    writer.insert_network(
        IPSet(["2001:4860::/32"]),
        _city("Mountain View", "California", "CA", "US", 37.4056, -122.0775),
    )
    path = tmp_path_factory.mktemp("mmdb") / "city.mmdb"
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture(scope="module")
async def with_city(city_db: str) -> AsyncIterator[OfflineProvider]:
    provider = OfflineProvider(city_db)
    yield provider
    await provider.aclose()


async def lookup_one(provider: OfflineProvider, ip: str) -> GeoInfo | None:
    return (await provider.lookup([ip]))[ip]


class RecordingProvider:
    """Passes lookups on to a real provider and remembers which IPs it was asked about."""

    def __init__(self, inner: OfflineProvider) -> None:
        self.inner = inner
        self.name = f"recording-{uuid.uuid4().hex[:8]}"  # a cache namespace of its own
        self.max_batch = inner.max_batch
        self.asked: list[str] = []

    async def lookup(self, ips: Sequence[str]) -> Mapping[str, GeoInfo | None]:
        self.asked.extend(ips)
        return await self.inner.lookup(ips)

    async def aclose(self) -> None:
        return None


def lookup_over(provider: RecordingProvider | OfflineProvider, resources: Resources) -> GeoLookup:
    """A GeoLookup like the app's, on the run's Redis, in front of `provider`."""
    settings = resources.settings
    return GeoLookup(
        provider,
        GeoCache(resources.store.redis, resources.store.keys, provider.name),
        ttl=settings.geo_cache_ttl,
        failure_ttl=settings.geo_failure_ttl,
    )


# -- geoip2fast's bundled data -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country", "network"),
    [
        ("8.8.8.8", "US", "GOOGLE"),
        ("2001:4860:4860::8888", "US", "GOOGLE"),
        ("81.2.69.142", "GB", "Andrews & Arnold Ltd"),
        ("1.1.1.1", "AU", "CLOUDFLARENET"),
    ],
)
async def test_real_addresses_get_country_and_network(
    offline: OfflineProvider, ip: str, country: str, network: str
) -> None:
    assert await lookup_one(offline, ip) == GeoInfo(country_code=country, isp=network, org=network)


@pytest.mark.parametrize("ip", ["2d00::1", "4000::1"])
async def test_an_unallocated_address_is_unknown(offline: OfflineProvider, ip: str) -> None:
    assert await lookup_one(offline, ip) is None


async def test_one_lookup_answers_every_ip_it_was_given(offline: OfflineProvider) -> None:
    answer = await offline.lookup(["8.8.8.8", "2d00::1", "81.2.69.142"])
    assert set(answer) == {"8.8.8.8", "2d00::1", "81.2.69.142"}
    assert answer["2d00::1"] is None


# -- the lookup pipeline (resources.geo) ---------------------------------------------------------


async def test_lookup_answers_in_input_order_with_duplicates(resources: Resources) -> None:
    ips = ["8.8.8.8", "10.0.0.1", "81.2.69.142", "8.8.8.8", "::1", "2001:4860:4860::8888", "x"]
    geos = await resources.geo.many(ips)
    countries = [g.country_code if g else None for g in geos]
    assert countries == ["US", None, "GB", "US", None, "US", None]
    assert geos[0] == geos[3]


async def test_non_global_ips_are_null_even_where_the_data_has_an_entry(
    resources: Resources, offline: OfflineProvider
) -> None:
    """geoip2fast itself answers IANA.ORG for these; the lookup never asks it about them."""
    special = ["0.1.2.3", "198.18.0.1", "240.0.0.1"]
    assert all(g is not None for g in (await offline.lookup(special)).values())
    assert await resources.geo.many(special) == [None, None, None]


async def test_non_global_ips_never_reach_the_provider(
    resources: Resources, offline: OfflineProvider
) -> None:
    provider = RecordingProvider(offline)
    lookup = lookup_over(provider, resources)
    ips = [
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "127.0.0.1",
        "100.64.0.1",
        "169.254.1.1",
        "203.0.113.7",
        "198.51.100.5",
        "192.0.2.1",
        "0.1.2.3",
        "::1",
        "fe80::1",
        "fc00::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "8.8.8.8",
    ]
    geos = await lookup.many(ips)
    assert geos[:-1] == [None] * (len(ips) - 1)
    assert geos[-1] is not None and geos[-1].country_code == "US"
    assert provider.asked == ["8.8.8.8"]

    # Asked again, the global one comes from the cache and the others still go nowhere.
    assert await lookup.many(ips) == geos
    assert provider.asked == ["8.8.8.8"]


async def test_text_that_is_not_an_address_is_null_on_every_lookup(
    resources: Resources, offline: OfflineProvider
) -> None:
    """What a stored client_ip may hold: damaged text is null (never an error), padded or
    IPv4-mapped text is its address, and asking again (answered from per-process caches) gives
    the same. Text longer than any address, padded or not, is classified the same way."""
    provider = RecordingProvider(offline)
    lookup = lookup_over(provider, resources)
    damaged = ["x", "", "   ", "999.1.2.3", "8.8.8.8 junk", "8.8.8.8/32", "a" * 100, "1" * 100]
    padded = [" 8.8.8.8 ", "\t8.8.8.8\n", " " * 100 + "8.8.8.8", "::ffff:8.8.8.8"]
    for _ in range(2):
        geos = await lookup.many(damaged + padded)
        assert geos[: len(damaged)] == [None] * len(damaged)
        assert [g.country_code if g else None for g in geos[len(damaged) :]] == ["US"] * 4
    assert provider.asked == ["8.8.8.8"]


# -- a MaxMind City database (GEO_MMDB_PATH) -----------------------------------------------------


async def test_city_database_adds_city_region_and_coordinates(with_city: OfflineProvider) -> None:
    assert await lookup_one(with_city, "81.2.69.142") == GeoInfo(
        city="London",
        region_name="England",
        country_code="GB",
        lat=51.5142,
        lon=-0.0931,
        isp="Andrews & Arnold Ltd",  # still from the ASN data
        org="Andrews & Arnold Ltd",
    )
    assert await lookup_one(with_city, "2001:4860:4860::8888") == GeoInfo(
        city="Mountain View",
        region_name="California",
        country_code="US",
        lat=37.4056,
        lon=-122.0775,
        isp="GOOGLE",
        org="GOOGLE",
    )


async def test_an_ip_outside_the_city_database_keeps_country_and_network(
    with_city: OfflineProvider,
) -> None:
    assert await lookup_one(with_city, "8.8.8.8") == GeoInfo(
        country_code="US", isp="GOOGLE", org="GOOGLE"
    )
    assert await lookup_one(with_city, "2d00::1") is None


async def test_geo_mmdb_path_from_the_environment_is_used(
    city_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEO_PROVIDER", "offline")
    monkeypatch.setenv("GEO_MMDB_PATH", city_db)
    provider = await make_provider(Settings())
    try:
        geo = (await provider.lookup(["81.2.69.142"]))["81.2.69.142"]
        assert geo is not None and geo.city == "London"
    finally:
        await provider.aclose()


def test_a_missing_city_database_is_an_error_at_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "GeoLite2-City.mmdb"
    with pytest.raises(FileNotFoundError, match=r"nowhere/GeoLite2-City\.mmdb"):
        OfflineProvider(str(missing))


def test_a_file_that_is_not_a_city_database_is_an_error_at_start_up(tmp_path: Path) -> None:
    junk = tmp_path / "city.mmdb"
    junk.write_bytes(b"not a MaxMind database\n" * 10)
    with pytest.raises(maxminddb.InvalidDatabaseError, match="valid MaxMind DB"):
        OfflineProvider(str(junk))


async def test_answers_with_and_without_city_data_are_cached_apart(
    resources: Resources, with_city: OfflineProvider, offline: OfflineProvider
) -> None:
    """After a City database is configured, country-only answers cached before it are not
    served: the two providers name different cache namespaces."""
    assert offline.name != with_city.name
    ip = f"81.2.69.{uuid.uuid4().int % 254 + 1}"
    before = (await resources.geo.many([ip]))[0]
    assert before is not None and before.city is None  # now cached without a city

    after = (await lookup_over(with_city, resources).many([ip]))[0]
    assert after is not None and after.city == "London"
    assert (await resources.geo.many([ip]))[0] == before

"""What IpApiProvider's tests share: the clock it is given, which the test moves, and what it
makes of the fake ip-api server's answer for 8.8.8.8."""

from __future__ import annotations

from sessions_geo.model import GeoInfo

GOOGLE_DNS = GeoInfo(
    city="Mountain View",
    region_name="California",
    country_code="US",
    lat=37.4056,
    lon=-122.0775,
    isp="Google LLC",
    org="Google Public DNS",
    is_mobile=False,
    is_proxy=False,
    is_hosting=True,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

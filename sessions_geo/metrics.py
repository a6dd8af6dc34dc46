"""Geolocation metrics: how often the cache answers, how often the provider is asked, and how
often it fails (each failure leaves `geo` null until a later lookup succeeds)."""

from __future__ import annotations

from prometheus_client import Counter

IPS = Counter(
    "sessions_api_geo_ips_total",
    "Global IP addresses geolocated, by where the answer came from: cache (a hit, including "
    "a cached 'unknown'), provider (an answer, possibly 'unknown to the provider', possibly from "
    "a lookup another request started), or none (no answer this time: the provider failed, is "
    "rate-limited, or did not answer within GEO_WAIT; geo is null).",
    ["source"],
)
PROVIDER_BATCHES = Counter(
    "sessions_api_geo_provider_batches_total",
    "Batches of at most the provider's batch size handed to the geolocation provider "
    "(ip-api sends nothing while rate-limited or backing off after a failure).",
    ["provider"],
)
PROVIDER_FAILURES = Counter(
    "sessions_api_geo_provider_failures_total",
    "Provider lookups that failed, by reason: rate_limited, timeout, transport, bad_answer "
    "(an answer that could not be used).",
    ["provider", "reason"],
)

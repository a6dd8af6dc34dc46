"""Webhook metrics, on /metrics with the rest."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "sessions_api_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered (2xx), retried (anything else, to be tried "
    "again), failed (the last retry), gone (410: the endpoint is disabled), refused (its URL "
    "resolves to a non-public address).",
    ["outcome"],
)
OLDEST_PENDING = Gauge(
    "sessions_api_webhook_oldest_pending_seconds",
    "Age of the oldest session event not yet fanned out or delivered to every endpoint.",
)
ATTEMPTS = Histogram(
    "sessions_api_webhook_attempts",
    "Attempts a delivery took, when it finished (delivered or failed).",
    buckets=(1, 2, 3, 4, 5, 6, 7, 10),
)

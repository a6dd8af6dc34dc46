"""The request's DataLoader, GeoByIpLoader: one batched geolocation round per request. The
geolocation itself (providers, cache policy) is in sessions_geo."""

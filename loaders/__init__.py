"""DataLoaders, and the geolocation behind them (cache and providers)."""

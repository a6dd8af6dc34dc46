"""IP geolocation: the lookup pipeline (loaders.geo.lookup) and its providers."""

"""IP geolocation: the lookup pipeline (sessions_geo.lookup) and its providers."""

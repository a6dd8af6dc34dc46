"""The one home for storage: Postgres (every session ever created) and Redis (active sessions,
the geolocation cache). No other package speaks SQL or Redis commands."""

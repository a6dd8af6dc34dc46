"""Configuration (environment variables), logging set-up, and the resources the configuration
opens: the Postgres pool, the Redis client and the geolocation provider."""

"""The GraphQL surface and the HTTP app of the sessions API."""

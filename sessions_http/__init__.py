"""The HTTP surface: the Starlette app, the GraphQL endpoint (and GraphiQL), the v1 REST routes,
the origin check, health, metrics, and how uvicorn serves it all."""

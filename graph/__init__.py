"""GraphQL only: the schema, its types, the request context, the error policy, scalars, query
limits, execution, and the per-user limit on executions in flight (fairness)."""

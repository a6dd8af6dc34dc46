"""Runs one GraphQL document for one HTTP request. The GraphQL endpoint and the REST shim both
come through here, so they share the schema, its limits and its error policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import GraphQLError
from prometheus_client import Counter
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph.context import Context
from graph.schema import schema
from resolvers.errors import RateLimited
from sessions_config.resources import Resources

EXECUTIONS = Counter(
    "sessions_api_graphql_executions_total",
    "GraphQL operations run, by engine: compiled (a cached plan, graph/compiled/) or fallback "
    "(Strawberry and graphql-core: introspection, mutations, invalid documents, anything the "
    "compiler does not handle).",
    ["engine"],
)


async def execute(
    resources: Resources,
    *,
    query: str,
    token: str | None,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    allowed: Iterable[OperationType] = (OperationType.QUERY,),
    compiled: bool = True,
) -> ExecutionResult:
    """Runs the document through its compiled plan when there is one (and `compiled`), else
    through Strawberry. Both give the same result; tests compare them."""
    context = Context.for_request(resources, token=token, operation_name=operation_name)
    try:
        EXECUTIONS.labels("fallback").inc()
        return await schema.execute(
            query,
            variable_values=dict(variables) if variables else None,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=allowed,
        )
    except (CannotGetOperationTypeError, InvalidOperationTypeError) as exc:
        # Strawberry raises these (unknown operationName, an operation type the method does not
        # allow) instead of returning them: they are request errors, with no data.
        message = (
            exc.as_http_error_reason()
            if isinstance(exc, CannotGetOperationTypeError)
            else "This operation type is not allowed here."
        )
        return ExecutionResult(data=None, errors=[GraphQLError(message, original_error=exc)])
    finally:
        # Also when the client went away mid-request: its user's slot is given back, and
        # nothing it started keeps running.
        context.close()


def is_request_error(result: ExecutionResult) -> bool:
    """True when the document never executed (syntax, validation, variables, operation): then
    there is no `data` at all. Errors raised while executing carry the path of their field."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def to_json(result: ExecutionResult) -> dict[str, Any]:
    """The response map of the GraphQL spec: errors first when present, then data — which is
    there (possibly null) whenever execution started."""
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    if not is_request_error(result):
        body["data"] = result.data
    return body


def first_code(errors: Iterable[GraphQLError] | None) -> str | None:
    for error in errors or ():
        code = (error.extensions or {}).get("code")
        if isinstance(code, str):
            return code
    return None


def retry_after(errors: Iterable[GraphQLError] | None) -> int | None:
    """Seconds a RATE_LIMITED client is told to wait (for a Retry-After header), if it was."""
    for error in errors or ():
        extensions = error.extensions or {}
        if extensions.get("code") == RateLimited.code:
            return int(extensions.get("retryAfter", 1))
    return None

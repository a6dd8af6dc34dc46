"""Runs one GraphQL document for one HTTP request. The GraphQL endpoint and the REST shim both
come through here, so they share the schema, its limits and its error policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph.context import Context
from graph.resources import Resources
from graph.schema import schema


async def execute(
    resources: Resources,
    *,
    query: str,
    token: str | None,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    allowed: Iterable[OperationType] = (OperationType.QUERY,),
) -> ExecutionResult:
    try:
        return await schema.execute(
            query,
            variable_values=dict(variables) if variables else None,
            context_value=Context.for_request(resources, token=token),
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


def to_json(result: ExecutionResult) -> dict[str, Any]:
    """The response map of the GraphQL spec: errors first when present, then data."""
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return body


def first_code(errors: Iterable[GraphQLError] | None) -> str | None:
    for error in errors or ():
        code = (error.extensions or {}).get("code")
        if isinstance(code, str):
            return code
    return None

"""Runs one GraphQL document for one HTTP request. The GraphQL endpoint and the REST shim both
come through here, so they share the schema, its limits and its error policy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode
from prometheus_client import Counter
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph.compiled.documents import Documents, operation_of
from graph.compiled.run import Run
from graph.context import Context
from graph.errors import report_errors, shaped
from graph.schema import schema
from resolvers.errors import RateLimited
from sessions_config.resources import Resources
from sessions_spans import Span, span
from store.models import Actor

EXECUTIONS = Counter(
    "sessions_api_graphql_executions_total",
    "GraphQL operations run, by engine: compiled (a cached plan, graph/compiled/) or fallback "
    "(Strawberry and graphql-core: introspection, mutations, invalid documents, anything the "
    "compiler does not handle).",
    ["engine"],
)

# The compiled documents of this process (a bounded cache).
DOCUMENTS = Documents()
# The operation's span, until it is named after the operation.
OPERATION_SPAN = "GraphQL Operation"


async def execute(
    resources: Resources,
    *,
    query: str,
    token: str | None,
    actor_of: Callable[[], Actor] | None = None,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    allowed: Iterable[OperationType] = (OperationType.QUERY,),
    compiled: bool = True,
) -> ExecutionResult:
    """Runs the document through its compiled plan when there is one (and `compiled`), else
    through Strawberry. Both give the same result; tests compare them. With traces on, in a
    span named after the operation (its storage and geolocation spans are its children)."""
    with span(OPERATION_SPAN) as traced:
        context = Context.for_request(
            resources, token=token, operation_name=operation_name, actor_of=actor_of
        )
        try:
            if compiled and OperationType.QUERY in allowed:
                result = await _run_compiled(query, variables, operation_name, context, traced)
                if result is not None:
                    return result
            EXECUTIONS.labels("fallback").inc()
            if traced.is_recording():
                _describe(traced, operation_of(query, operation_name), "fallback")
            return await _run_strawberry(query, variables, operation_name, allowed, context)
        finally:
            # Also when the client went away mid-request: its user's slot is given back, and
            # nothing it started keeps running.
            context.close()


def _describe(traced: Span, operation: OperationDefinitionNode | None, engine: str) -> None:
    """Names the span as OpenTelemetry's GraphQL conventions do ("query RestV1Sessions"); never
    with the document, whose literals are the client's."""
    traced.set_attribute("sessions_api.graphql.engine", engine)
    if operation is None:
        return  # it does not parse, or names no operation: its errors say so
    kind = operation.operation.value
    traced.set_attribute("graphql.operation.type", kind)
    if operation.name is None:
        traced.update_name(kind)
        return
    traced.set_attribute("graphql.operation.name", operation.name.value)
    traced.update_name(f"{kind} {operation.name.value}")


def compile_at_start(*queries: str) -> None:
    """Prepares documents before the first request needs them (the REST routes' own)."""
    for query in queries:
        prepared = DOCUMENTS.get(query, None)
        if prepared is None:
            raise ValueError(f"the compiler does not take this document: {query}")
        prepared.compile_now()


async def _run_compiled(
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    context: Context,
    traced: Span,
) -> ExecutionResult | None:
    """The document's plan, run; None when the compiler does not take this request."""
    prepared = DOCUMENTS.get(query, operation_name)
    if prepared is None:
        return None
    coerced = prepared.coerce(variables)
    if isinstance(coerced, list):
        return None  # graphql-core words these errors; the fallback reports them
    plan = prepared.plan_for(coerced)
    if plan is None:
        return None
    EXECUTIONS.labels("compiled").inc()
    if traced.is_recording():
        _describe(traced, prepared.operation, "compiled")
    run = Run(schema._schema, prepared.operation, prepared.fragment_definitions, coerced, context)
    result = await run.execute(plan)
    errors = result.errors
    if errors:
        # As Strawberry does: the log sees the errors as raised, the client as shaped.
        name = prepared.operation.name
        operation = "query" + (f" {name.value}" if name is not None else "")
        report_errors(errors, operation=operation, context=context)
        errors = [shaped(error) for error in errors]
    return ExecutionResult(data=result.data, errors=errors)


async def _run_strawberry(
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    allowed: Iterable[OperationType],
    context: Context,
) -> ExecutionResult:
    try:
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

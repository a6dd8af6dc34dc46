"""The error policy: what clients see of errors, and what the log says of them.

- A refusal (resolvers/errors.py) reaches the client with its message and `extensions.code`.
- A storage outage (store/errors.py) reaches it as UNAVAILABLE, and is logged in one line per
  dependency and request.
- Any other exception is a bug of ours: logged with its traceback, shown as "Unexpected error.".
"""

from __future__ import annotations

import contextlib
import logging
import time

from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from graph.context import Context
from resolvers.errors import Refused
from store.errors import Dependency, describe_outage, outage_of

log = logging.getLogger(__name__)

MESSAGE_UNAVAILABLE = "This cannot be read right now: part of the storage is not answering."
UNAVAILABLE = "UNAVAILABLE"

# Errors meant for the client: GraphQL's own (syntax, validation), refusals (resolvers/errors.py),
# and what Strawberry raises for a request that names no usable operation, or one the HTTP
# method does not allow (a mutation over GET): the client's mistake, said plainly.
_CLIENT_MISTAKES = (GraphQLError, InvalidOperationTypeError, CannotGetOperationTypeError, Refused)


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors raised by a bug or an outage rather than on purpose for the client."""
    if error.original_error is None or isinstance(error.original_error, _CLIENT_MISTAKES):
        return False
    # An error that points into the document but at no field path was raised while reading
    # the client's literals or variables (an Int of 5000 digits): the client's mistake too.
    return not (error.path is None and error.locations)


def _located(
    error: GraphQLError, message: str, extensions: dict[str, object] | None
) -> GraphQLError:
    """The same place in the document and the answer, with another message and extensions."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


MESSAGE_UNEXPECTED = "Unexpected error."


def shaped(error: GraphQLError) -> GraphQLError:
    """What the client sees of one error: a refusal with its code, an outage as UNAVAILABLE,
    a bug of ours as "Unexpected error.", anything else (the client's mistakes) as it is."""
    cause = error.original_error
    if isinstance(cause, Refused):
        return _located(error, cause.message, {"code": cause.code, **cause.details})
    if not is_unexpected(error):
        return error
    if outage_of(cause) is not None:
        return _located(error, MESSAGE_UNAVAILABLE, {"code": UNAVAILABLE})
    return _located(error, MESSAGE_UNEXPECTED, None)


class ShapeErrors(MaskErrors):
    """The error policy (`shaped`) as Strawberry's error-masking extension, for the operations
    Strawberry runs (graph/execution.py)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: shaped(error) is not error)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return shaped(error)


def log_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    """Strawberry's `process_errors`: `report_errors` for the operations it runs."""
    operation = "operation"
    context = None
    if execution_context is not None:
        with contextlib.suppress(RuntimeError):  # a document without a usable operation
            operation = execution_context.operation_type.value
        if execution_context.operation_name:
            operation += f" {execution_context.operation_name}"
        if isinstance(execution_context.context, Context):
            context = execution_context.context
    report_errors(errors, operation=operation, context=context)


def report_errors(errors: list[GraphQLError], *, operation: str, context: Context | None) -> None:
    """Client mistakes (bad query, no session) are routine and not logged. A storage outage is
    one line per dependency and request; only our own bugs get a traceback (once per exception,
    however many aliases it failed). `operation` is e.g. "query RestV1Sessions"."""
    outages: dict[Dependency, list[GraphQLError]] = {}
    logged: set[int] = set()
    for error in errors:
        dependency = outage_of(error.original_error)
        if dependency is not None:
            outages.setdefault(dependency, []).append(error)
        elif is_unexpected(error) and id(error.original_error) not in logged:
            logged.add(id(error.original_error))
            log.error(
                "resolver failed at %s: %s",
                ".".join(map(str, error.path or [])),
                error.message,
                exc_info=error.original_error,
            )
    for dependency, failed in outages.items():
        _log_outage(dependency, failed, operation, context)


def _field(error: GraphQLError) -> str:
    """The error's field path without list indices: me.sessions.isNewLocation."""
    return ".".join(str(p) for p in error.path or () if isinstance(p, str)) or "(document)"


def _log_outage(
    dependency: Dependency, errors: list[GraphQLError], operation: str, context: Context | None
) -> None:
    """One line: which dependency, which operation and fields, how long it held the request,
    and why (e.g. "postgres unavailable: query RestV1Sessions failed at me.history after 5.0 s:
    no connection within 5.0 s")."""
    fields = list(dict.fromkeys(_field(e) for e in errors))
    where = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    # The client chose the operation's name (a GraphQL name, any length): the log keeps 80
    # characters of it.
    kind, _, name = operation.partition(" ")
    operation = f"{kind} {name[:80]}" if name else kind
    held = f" after {time.monotonic() - context.started:.1f} s" if context is not None else ""
    log.warning(
        "%s unavailable: %s failed at %s%s: %s",
        dependency,
        operation,
        where,
        held,
        describe_outage(errors[0].original_error or Exception()),
    )

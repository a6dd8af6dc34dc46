"""The schema, its guards against abusive queries, and its error policy."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import strawberry
from graphql import ASTValidationRule, GraphQLError, OperationDefinitionNode
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from graph.context import Context
from graph.errors import unavailable
from graph.limits import query_limits
from graph.scalars import SCALAR_MAP
from graph.types import Mutation, Query
from store.errors import Dependency, describe_outage, outage_of

log = logging.getLogger("graph.errors")

MAX_DEPTH = 10
# The v1 REST document alone uses 20 aliases (its snake_case keys); leave room above it.
MAX_ALIASES = 40
MAX_TOKENS = 2000


# Raised by Strawberry for a request that names no usable operation, or one the HTTP method
# does not allow (a mutation over GET): the client's mistake, said plainly.
_CLIENT_MISTAKES = (GraphQLError, InvalidOperationTypeError, CannotGetOperationTypeError)


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors raised by a bug or an outage rather than on purpose for the client."""
    if error.original_error is None or isinstance(error.original_error, _CLIENT_MISTAKES):
        return False
    # An error that points into the document but at no field path was raised while reading
    # the client's literals or variables (an Int of 5000 digits): the client's mistake too.
    return not (error.path is None and error.locations)


def _field(error: GraphQLError) -> str:
    """The error's field path without list indices: me.sessions.isNewLocation."""
    return ".".join(str(p) for p in error.path or () if isinstance(p, str)) or "(document)"


class SessionsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Client mistakes (bad query, no session) are routine and not logged. A storage outage
        # is one line per dependency and request; only our own bugs get a traceback (once per
        # exception, however many aliases it failed).
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
            _log_outage(dependency, failed, execution_context)


def _log_outage(
    dependency: Dependency, errors: list[GraphQLError], execution_context: ExecutionContext | None
) -> None:
    """One line: which dependency, which operation and fields, how long it held the request,
    and why (e.g. "postgres unavailable: query RestV1Sessions failed at me.history after 5.0 s:
    no connection within 5.0 s")."""
    fields = list(dict.fromkeys(_field(e) for e in errors))
    where = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
    operation = "operation"
    held = ""
    if execution_context is not None:
        with contextlib.suppress(RuntimeError):  # a document without a usable operation
            operation = execution_context.operation_type.value
        if execution_context.operation_name:
            # The client chose the name (a GraphQL name, any length): the log keeps 80 characters.
            operation += f" {execution_context.operation_name[:80]}"
        if isinstance(execution_context.context, Context):
            held = f" after {time.monotonic() - execution_context.context.started:.1f} s"
    log.warning(
        "%s unavailable: %s failed at %s%s: %s",
        dependency,
        operation,
        where,
        held,
        describe_outage(errors[0].original_error or Exception()),
    )


class ShapeErrors(MaskErrors):
    """What clients see of errors: storage outages as UNAVAILABLE, our bugs as "Unexpected
    error.", and errors meant for them as they are."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if outage_of(error.original_error) is not None:
            return unavailable(error)
        return super().anonymise_error(error)


class OneOperationUnlessNamed(SchemaExtension):
    """The GraphQL spec's GetOperation(): without `operationName`, a document must hold exactly
    one operation. Strawberry on its own would quietly run the first."""

    def on_parse(self) -> Iterator[None]:
        yield
        document = self.execution_context.graphql_document
        context = self.execution_context.context
        if document is None or (isinstance(context, Context) and context.operation_name):
            return
        operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
        if operations > 1:
            raise GraphQLError(
                "The document has several operations: name the one to run with `operationName`."
            )


# The rule class is made once, here: the validation cache is keyed by the rules, and a fresh
# class per request would never hit it.
_LIMIT_RULES: list[type[ASTValidationRule]] = [
    query_limits(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)
]

schema = SessionsSchema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    # Factories: Strawberry builds fresh extensions per request (the parse and validation
    # caches behind ParserCache and ValidationCache are shared all the same).
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        OneOperationUnlessNamed,
        lambda: AddValidationRules(_LIMIT_RULES),
        ShapeErrors,
    ],
)

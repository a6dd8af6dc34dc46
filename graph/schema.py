"""The schema, its guards against abusive queries, and its error policy."""

from __future__ import annotations

import logging
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
from graph.limits import query_limits
from graph.scalars import SCALAR_MAP
from graph.types import Mutation, Query

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


class SessionsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Client mistakes (bad query, no session) are routine; only our own failures are logged
        # with a traceback.
        for error in errors:
            if is_unexpected(error):
                log.error(
                    "resolver failed at %s: %s",
                    ".".join(map(str, error.path or [])),
                    error.message,
                    exc_info=error.original_error,
                )


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
        lambda: MaskErrors(should_mask_error=is_unexpected),
    ],
)

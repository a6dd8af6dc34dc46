"""The schema, with its guards against abusive queries and its error policy (graph/errors.py)."""

from __future__ import annotations

from collections.abc import Iterator

import strawberry
from graphql import ASTValidationRule, GraphQLError, OperationDefinitionNode
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.context import Context
from graph.errors import ShapeErrors, log_errors
from graph.limits import query_limits
from graph.scalars import SCALAR_MAP
from graph.types import Mutation, Query, Subscription

MAX_DEPTH = 10
# The v1 REST document alone uses 20 aliases (its snake_case keys); leave room above it.
MAX_ALIASES = 40
MAX_TOKENS = 2000


class SessionsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


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
LIMIT_RULES: list[type[ASTValidationRule]] = [
    query_limits(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)
]

schema = SessionsSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    # Factories: Strawberry builds fresh extensions per request (the parse and validation
    # caches behind ParserCache and ValidationCache are shared all the same).
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        OneOperationUnlessNamed,
        lambda: AddValidationRules(LIMIT_RULES),
        ShapeErrors,
    ],
)

"""Documents, parsed, validated and made into plans once: a bounded cache by document text and
operation name.

A document is prepared the first time it is seen: parsed (with the schema's token limit),
validated (with the schema's rules), its operation picked. What the compiler does not take is
remembered as such, so the fallback runs it without asking again. The plans of one document are
kept by the values of the variables its `@skip`/`@include` read (at most `MAX_SWITCHED_PLANS`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    Visitor,
    parse,
    specified_rules,
    visit,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.schema.schema import validate_document

from graph.compiled.plan import ObjectPlan, Unsupported, compile_operation
from graph.schema import LIMIT_RULES, MAX_TOKENS, schema

# Distinct documents (text and operation name) whose plans are kept.
MAX_DOCUMENTS = 256
# Plans kept for one document: one for each set of values of the variables its directives read.
MAX_SWITCHED_PLANS = 16

# Sets of variable values kept coerced for one document, and which.
MAX_COERCED = 32
MAX_COERCED_VARIABLES = 4
MAX_COERCED_TEXT = 64
_KEPT_TYPES = (int, bool, type(None))

_GRAPHQL_SCHEMA = schema._schema
_RULES = (*specified_rules, *LIMIT_RULES)


@dataclass(eq=False)
class Prepared:
    """A validated query the compiler takes, and its plans."""

    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDetails]
    fragment_definitions: dict[str, FragmentDefinitionNode]
    # The variables that @skip/@include read: the plan depends on their values.
    switches: tuple[str, ...]
    plans: dict[tuple[Any, ...], ObjectPlan] = field(default_factory=dict)
    # Set when compiling showed the compiler does not take it after all.
    unsupported: bool = False
    # Coerced variables by the values requests gave, when those are few and immutable (the REST
    # route's limit): coercing them costs more than finding them here. Never changed once made.
    _coerced: dict[tuple[Any, ...], VariableValues] = field(default_factory=dict)

    def coerce(self, variables: Mapping[str, Any] | None) -> VariableValues | list[GraphQLError]:
        """graphql-core's coercion of the request's variables: their values, or its errors."""
        given = dict(variables or {})
        key = _key_of(given)
        known = self._coerced.get(key) if key is not None else None
        if known is not None:
            return known
        coerced = get_variable_values(
            _GRAPHQL_SCHEMA, self.operation.variable_definitions or (), given
        )
        if key is not None and not isinstance(coerced, list):
            if len(self._coerced) >= MAX_COERCED:
                self._coerced.clear()
            self._coerced[key] = coerced
        return coerced

    def plan_for(self, variables: VariableValues) -> ObjectPlan | None:
        """The plan for these coerced variables; None when the fallback must run it."""
        if self.unsupported:
            return None
        values = variables.coerced
        key = tuple(values.get(name) for name in self.switches)
        if not all(isinstance(value, bool) for value in key):
            # A directive whose variable has no value: graphql-core reports it.
            return None
        plan = self.plans.get(key)
        if plan is None:
            try:
                plan = compile_operation(_GRAPHQL_SCHEMA, self.fragments, variables, self.operation)
            except (Unsupported, GraphQLError):
                self.unsupported = True
                return None
            if len(self.plans) < MAX_SWITCHED_PLANS:
                self.plans[key] = plan
        return plan

    def compile_now(self) -> None:
        """Makes the plan ahead of the first request, for a document without switches (whose
        plan depends on no variable)."""
        if not self.switches:
            self.plan_for(VariableValues({}, {}))


def _key_of(variables: dict[str, Any]) -> tuple[Any, ...] | None:
    """The variables as a key (types too: True == 1, and they coerce differently), or None for
    values not worth keeping: lists, objects, floats, long strings."""
    if len(variables) > MAX_COERCED_VARIABLES:
        return None
    key = []
    for name, value in variables.items():
        kind = type(value)
        if not (kind in _KEPT_TYPES or (kind is str and len(value) <= MAX_COERCED_TEXT)):
            return None
        key.append((name, kind, value))
    return tuple(key)


class Documents:
    """The prepared documents, least recently used dropped first beyond `size`."""

    def __init__(self, size: int = MAX_DOCUMENTS) -> None:
        self._size = size
        self._prepared: OrderedDict[tuple[str, str | None], Prepared | None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._prepared)

    def get(self, query: str, operation_name: str | None) -> Prepared | None:
        """The prepared query; None when the fallback is to run this document."""
        key = (query, operation_name)
        with self._lock:
            if key in self._prepared:
                self._prepared.move_to_end(key)
                return self._prepared[key]
        prepared = prepare(query, operation_name)
        with self._lock:
            self._prepared[key] = prepared
            while len(self._prepared) > self._size:
                self._prepared.popitem(last=False)
        return prepared


def prepare(query: str, operation_name: str | None) -> Prepared | None:
    """Parses, validates and picks the operation; None for anything the compiler leaves to
    graphql-core (which then gives its own errors for documents that do not validate)."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except (GraphQLError, RecursionError):
        return None
    if validate_document(_GRAPHQL_SCHEMA, document, _RULES):
        return None
    operation = _operation(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    fragment_definitions: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                return None
            fragment_definitions[definition.name.value] = definition
    scan = _Scan()
    try:
        visit(document, scan)
    except RecursionError:
        return None
    if scan.introspection:
        return None
    return Prepared(
        operation=operation,
        fragments={name: FragmentDetails(d) for name, d in fragment_definitions.items()},
        fragment_definitions=fragment_definitions,
        switches=tuple(sorted(scan.switches)),
    )


def operation_of(query: str, operation_name: str | None) -> OperationDefinitionNode | None:
    """The operation a request names, the document parsed but not validated (what the fallback
    runs, for its span's name); None where `_operation` is None or the document does not parse."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except (GraphQLError, RecursionError):
        return None
    return _operation(document, operation_name)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation to run, as graphql-core picks it; None where graphql-core (or Strawberry,
    for several operations without a name) gives an error instead."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    named = [op for op in operations if op.name is not None and op.name.value == name]
    return named[-1] if named else None


class _Scan(Visitor):
    """Introspection anywhere, and the variables that @skip/@include read."""

    def __init__(self) -> None:
        super().__init__()
        self.introspection = False
        self.switches: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        if node.name.value in ("__schema", "__type"):
            self.introspection = True

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        if node.name.value not in ("skip", "include"):
            return
        for argument in node.arguments or ():
            if isinstance(argument.value, VariableNode):
                self.switches.add(argument.value.name.value)
            elif not isinstance(argument.value, BooleanValueNode):
                self.switches.add("")  # never a variable's name: makes plan_for fall back

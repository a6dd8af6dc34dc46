"""Generated documents for the schema (schema.graphql): hypothesis-graphql's plain selections,
dressed up here with what it does not write: aliases, the same field twice, named fragments
(also spread inside fragments), inline fragments with and without a type condition,
@skip/@include with literals and with variables (with and without defaults), __typename, and
history arguments in and out of range, as literals or variables, with real cursors and garbage.
A few documents break the schema on purpose (hypothesis-graphql's negative mode)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, cast

import hypothesis_graphql
from graphql import (
    ArgumentNode,
    BooleanValueNode,
    ConstValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    NameNode,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    StringValueNode,
    TypeNode,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    build_schema,
    get_named_type,
    parse,
    print_ast,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.graph.differential import CURSOR_MARK

SDL = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
SCHEMA = build_schema(SDL)
PAST_SESSIONS = 9  # of the seeded user (differential.seed): the valid cursors


def _as_document(document: DocumentNode) -> DocumentNode:
    return document


PLAIN = hypothesis_graphql.queries(SDL, print_ast=_as_document, allow_x00=False)
BROKEN = hypothesis_graphql.queries(
    SDL, print_ast=print_ast, allow_x00=False, mode=hypothesis_graphql.Mode.NEGATIVE
)

GARBAGE_CURSORS = st.one_of(
    st.sampled_from(
        [
            "",
            "nonsense",
            "==",
            "x" * 101,
            base64.urlsafe_b64encode(b"12:not-a-uuid").decode(),
            base64.urlsafe_b64encode(b"nonsense").decode(),
            base64.urlsafe_b64encode(b"-1:00000000-0000-0000-0000-000000000000").decode(),
            base64.urlsafe_b64encode(b"99999999999999999999:00000000-0000-0000-0000-000000000000")
            .decode()
            .rstrip("="),
        ]
    ),
    st.text(max_size=20),
)
IN_RANGE = st.integers(0, 200)
OUT_OF_RANGE = st.one_of(
    st.integers(-1000, -1), st.integers(201, 10_000), st.sampled_from([2**31 - 1, -(2**31)])
)


_HISTORY = parse("{ history { edges { cursor node { id endReason } } pageInfo { endCursor } } }")
HISTORY = cast(
    FieldNode, cast(OperationDefinitionNode, _HISTORY.definitions[0]).selection_set.selections[0]
)


@dataclass(frozen=True)
class Generated:
    query: str
    variables: dict[str, Any]


def _name(value: str) -> NameNode:
    return NameNode(value=value)


def _type(name: str, *, required: bool) -> TypeNode:
    named = NamedTypeNode(name=_name(name))
    return NonNullTypeNode(type=named) if required else named


class _Dresser:
    """Rewrites one generated selection set, collecting the fragments and variables it adds."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.numbers = count()
        self.fragments: list[FragmentDefinitionNode] = []
        self.variable_definitions: list[VariableDefinitionNode] = []
        self.values: dict[str, Any] = {}

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) < percent

    def variable(
        self,
        prefix: str,
        type_name: str,
        value: Any,
        default: ConstValueNode | None,
        *,
        required: bool,
    ) -> VariableNode:
        """A new variable, declared; its value is sent unless drawn otherwise (then its default,
        or none at all), but always for a required one."""
        name = f"{prefix}{next(self.numbers)}"
        self.variable_definitions.append(
            VariableDefinitionNode(
                variable=VariableNode(name=_name(name)),
                type=_type(type_name, required=required),
                default_value=default,
                directives=(),
            )
        )
        if required or not self.chance(20):
            self.values[name] = value
        return VariableNode(name=_name(name))

    def directives(self) -> tuple[DirectiveNode, ...]:
        """@skip, @include or both, each with a literal or a variable (Boolean!, or Boolean with
        a default: the only ones allowed where Boolean! is expected)."""
        names = self.draw(st.sampled_from([["skip"], ["include"], ["skip", "include"]]))
        found = []
        for name in names:
            value = self.draw(st.booleans())
            literal: ValueNode
            if self.chance(50):
                literal = BooleanValueNode(value=value)
            elif self.chance(30):
                default = BooleanValueNode(value=self.draw(st.booleans()))
                literal = self.variable("b", "Boolean", value, default, required=False)
            else:
                literal = self.variable("b", "Boolean", value, None, required=True)
            found.append(
                DirectiveNode(
                    name=_name(name),
                    arguments=(ArgumentNode(name=_name("if"), value=literal),),
                )
            )
        return tuple(found)

    def history_arguments(self) -> tuple[ArgumentNode, ...]:
        arguments = []
        how = self.draw(st.sampled_from(["omit", "literal", "variable"]))
        if how != "omit":
            first = self.draw(IN_RANGE if self.chance(75) else OUT_OF_RANGE)
            value: ValueNode
            if how == "literal":
                value = IntValueNode(value=str(first))
            else:
                default = IntValueNode(value=str(self.draw(IN_RANGE))) if self.chance(30) else None
                value = self.variable("f", "Int", first, default, required=False)
            arguments.append(ArgumentNode(name=_name("first"), value=value))
        how = self.draw(st.sampled_from(["omit", "literal", "variable"]))
        if how != "omit":
            after: str | None
            kind = self.draw(st.integers(0, 9))
            if kind < 5:
                after = CURSOR_MARK.format(self.draw(st.integers(0, PAST_SESSIONS - 1)))
            elif kind < 9:
                after = self.draw(GARBAGE_CURSORS)
            else:
                after = None
            if how == "literal":
                value = NullValueNode() if after is None else StringValueNode(value=after)
            else:
                value = self.variable("c", "String", after, None, required=False)
            arguments.append(ArgumentNode(name=_name("after"), value=value))
        return tuple(arguments)

    def selection_set(self, node: SelectionSetNode, parent: GraphQLObjectType) -> SelectionSetNode:
        out: list[SelectionNode] = []
        fields = [selection for selection in node.selections if isinstance(selection, FieldNode)]
        # History is where arguments, cursors and their errors are: ask for it more often than
        # a plain draw of the fields of Me would.
        if parent.name == "Me" and all(f.name.value != "history" for f in fields):
            if self.chance(40):
                fields.append(HISTORY)
        for selection in fields:
            out.append(self.selection(selection, parent))
            if self.chance(10):  # the same field again, dressed otherwise
                out.append(self.selection(selection, parent))
        if self.chance(15):
            alias = _name(f"t{next(self.numbers)}") if self.chance(50) else None
            typename = FieldNode(alias=alias, name=_name("__typename"), arguments=(), directives=())
            out.insert(self.draw(st.integers(0, len(out))), typename)
        return SelectionSetNode(selections=tuple(out))

    def selection(self, node: FieldNode, parent: GraphQLObjectType) -> SelectionNode:
        name = node.name.value
        field_type = get_named_type(parent.fields[name].type)
        selection_set = (
            self.selection_set(node.selection_set, field_type)
            if node.selection_set is not None and isinstance(field_type, GraphQLObjectType)
            else node.selection_set
        )
        field = FieldNode(
            alias=_name(f"a{next(self.numbers)}") if self.chance(25) else None,
            name=node.name,
            arguments=self.history_arguments() if name == "history" else node.arguments,
            directives=self.directives() if self.chance(15) else (),
            selection_set=selection_set,
        )
        wrap = self.draw(st.integers(0, 99))
        if wrap < 70:
            return field
        directives = self.directives() if self.chance(25) else ()
        selections = SelectionSetNode(selections=(field,))
        if wrap < 80:
            return InlineFragmentNode(
                type_condition=None, directives=directives, selection_set=selections
            )
        if wrap < 90:
            condition = NamedTypeNode(name=_name(parent.name))
            return InlineFragmentNode(
                type_condition=condition, directives=directives, selection_set=selections
            )
        fragment = f"F{next(self.numbers)}"
        self.fragments.append(
            FragmentDefinitionNode(
                name=_name(fragment),
                type_condition=NamedTypeNode(name=_name(parent.name)),
                directives=(),
                selection_set=selections,
            )
        )
        return FragmentSpreadNode(name=_name(fragment), directives=directives)


@st.composite
def documents(draw: st.DrawFn) -> Generated:
    if draw(st.integers(0, 99)) < 5:
        return Generated(draw(BROKEN), {})
    plain = draw(PLAIN)
    [operation] = plain.definitions
    assert isinstance(operation, OperationDefinitionNode)
    assert SCHEMA.query_type is not None
    dresser = _Dresser(draw)
    selection_set = dresser.selection_set(operation.selection_set, SCHEMA.query_type)
    named = draw(st.booleans()) or bool(dresser.variable_definitions)
    document = DocumentNode(
        definitions=(
            OperationDefinitionNode(
                operation=OperationType.QUERY,
                name=_name("Generated") if named else None,
                variable_definitions=tuple(dresser.variable_definitions),
                directives=(),
                selection_set=selection_set,
            ),
            *dresser.fragments,
        )
    )
    return Generated(print_ast(document), dresser.values)


def generate(documents_wanted: int) -> list[Generated]:
    """That many different documents, the same ones on every run (derandomized: CI is never
    flaky). Hypothesis draws some twice; drawing twice as many leaves enough different ones."""
    found: dict[tuple[str, str], Generated] = {}

    @settings(
        max_examples=2 * documents_wanted,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
    )
    @given(documents())
    def collect(generated: Generated) -> None:
        key = (generated.query, json.dumps(generated.variables, sort_keys=True))
        found.setdefault(key, generated)

    collect()
    return list(found.values())[:documents_wanted]

"""The validation rule that bounds what one operation may ask for: its depth and its aliases
(only one operation of a document runs per request).

Both are counted through fragments as if they were written out, but each fragment is measured
once and remembered. A document that spreads fragments into fragments (four spreads a level,
twelve levels: sixteen million paths in a few hundred bytes) is judged in time proportional to
its size; a walk of every path would hold the event loop for minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)


@dataclass(frozen=True)
class Size:
    depth: int  # nested fields with selections (leaves count 0), as Strawberry's limiter counts
    aliases: int  # aliased fields, each fragment counted at every spread


_NOTHING = Size(0, 0)


class _Measure:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._known: dict[str, Size] = {}
        self._open: set[str] = set()  # fragments being measured: a cycle (reported by the
        # spec's NoFragmentCycles rule) counts nothing here instead of recursing forever

    def selections(self, selection_set: SelectionSetNode | None) -> Size:
        depth = aliases = 0
        for selection in selection_set.selections if selection_set else ():
            size = self._selection(selection)
            depth = max(depth, size.depth)
            aliases += size.aliases
        return Size(depth, aliases)

    def _selection(self, node: object) -> Size:
        if isinstance(node, FieldNode):
            inner = self.selections(node.selection_set)
            # Introspection (`__schema`, `__type`) is exempt from the depth limit: GraphiQL's
            # own introspection query is deeper than any query of ours needs to be.
            exempt = node.name.value.startswith("__") or node.selection_set is None
            return Size(0 if exempt else 1 + inner.depth, inner.aliases + (1 if node.alias else 0))
        if isinstance(node, InlineFragmentNode):
            return self.selections(node.selection_set)
        if isinstance(node, FragmentSpreadNode):
            return self._fragment(node.name.value)
        return _NOTHING

    def _fragment(self, name: str) -> Size:
        if name in self._known:
            return self._known[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._open:
            return _NOTHING  # unknown fragments are reported by the spec's rules
        self._open.add(name)
        size = self.selections(fragment.selection_set)
        self._open.discard(name)
        self._known[name] = size
        return size


def query_limits(*, max_depth: int, max_aliases: int) -> type[ValidationRule]:
    """A validation rule class refusing operations deeper than max_depth or with more than
    max_aliases aliases."""

    class QueryLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            measure = _Measure(
                {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
            )
            for operation in definitions:
                if not isinstance(operation, OperationDefinitionNode):
                    continue
                try:
                    size = measure.selections(operation.selection_set)
                except RecursionError:
                    # Nested deeper than Python recurses (inline fragments in inline fragments):
                    # far over any limit.
                    size = Size(max_depth + 1, 0)
                name = operation.name.value if operation.name else "anonymous"
                if size.depth > max_depth:
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            operation,
                        )
                    )
                if size.aliases > max_aliases:
                    context.report_error(
                        GraphQLError(f"{size.aliases} aliases found. Allowed: {max_aliases}")
                    )

    return QueryLimits

"""Runs a plan for one request, with graphql-core's semantics.

Each method here is the counterpart of one of graphql-core's `Executor` methods (named in its
docstring) with the decisions the plan already took left out: the order fields run in, when
errors are recorded, which awaitables are gathered together and which are cancelled when a
non-null error propagates are the same, so the errors come out in the same order too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from graphql import (
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    located_error,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path, Undefined, gather_with_cancel, is_iterable
from graphql.type.definition import GraphQLResolveInfoHelpers

from graph.compiled.awaitable import is_awaitable
from graph.compiled.plan import Complete, ObjectPlan, Step


class Run:
    """The state of one execution: its inputs, and the errors recorded so far."""

    __slots__ = (
        "_background",
        "_error_positions",
        "_helpers",
        "context",
        "errors",
        "fragment_definitions",
        "operation",
        "schema",
        "variables",
    )

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragment_definitions: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
        context: Any,
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragment_definitions = fragment_definitions
        self.variables = variables
        self.context = context
        self.errors: list[GraphQLError] = []
        self._error_positions: set[Path | None] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._helpers = GraphQLResolveInfoHelpers(self._gather, self._track)

    async def execute(self, plan: ObjectPlan) -> ExecutionResult:
        """Executor.execute_operation, for a query."""
        try:
            result = plan.execute(self, None, None)
            data = await result if is_awaitable(result) else result
        except GraphQLError as error:
            self._add(error, None)
            return ExecutionResult(None, self.errors or None)
        return ExecutionResult(data, self.errors or None)

    async def gather_fields(self, results: dict[str, Any], pending: list[str]) -> Any:
        if len(pending) == 1:
            results[pending[0]] = await results[pending[0]]
        else:
            awaited = await gather_with_cancel(*(results[key] for key in pending))
            results.update(zip(pending, awaited, strict=True))
        return results

    def execute_field(self, step: Step, source: Any, path: Path) -> Any:
        """Executor.execute_field for a step that is not a plain leaf attribute."""
        try:
            if step.method is not None:
                value = step.method(source)
            elif step.resolve is None:
                value = getattr(source, step.attribute)  # type: ignore[arg-type]
            else:
                info = self._info(step, path)
                arguments = (
                    get_argument_values(step.definition, step.first, self.variables)
                    if step.takes_arguments
                    else {}
                )
                value = step.resolve(source, info, **arguments)
                if is_awaitable(value):
                    return self._complete_awaitable(step.complete, step, path, value)
            completed = step.complete(self, step, path, value)
            if is_awaitable(completed):
                return self._await_completed(completed, step.non_null, step, path)
        except Exception as raw:
            return self.field_error(raw, step, path)
        return completed

    async def _complete_awaitable(
        self, complete: Complete, step: Step, path: Path, value: Awaitable[Any]
    ) -> Any:
        """Executor.complete_awaitable_value."""
        try:
            resolved = await value
            completed = complete(self, step, path, resolved)
            if is_awaitable(completed):
                completed = await completed
        except Exception as raw:
            return self.field_error(raw, step, path)
        return completed

    async def _await_completed(
        self, completed: Awaitable[Any], non_null: bool, step: Step, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as raw:
            return self._handle(raw, non_null, step, path)

    def complete_list(
        self,
        item: Complete,
        item_non_null: bool,
        field: str,
        step: Step,
        path: Path,
        value: Any,
    ) -> Any:
        """Executor.complete_list_value and complete_iterable_value (plans never hold
        awaitable items: the resolvers return lists of values)."""
        if not isinstance(value, list) and not is_iterable(value):
            raise GraphQLError(f"Expected Iterable, but did not find one for field '{field}'.")
        completed: list[Any] = []
        append = completed.append
        pending: list[int] | None = None
        for index, each in enumerate(value):
            item_path = Path(path, index, None)
            try:
                done = item(self, step, item_path, each)
                if is_awaitable(done):
                    done = self._await_completed(done, item_non_null, step, item_path)
                    if pending is None:
                        pending = []
                    pending.append(index)
            except Exception as raw:
                done = self._handle(raw, item_non_null, step, item_path)
            append(done)
        if not pending:
            return completed
        return self._gather_items(completed, pending)

    def complete_objects(
        self,
        plan: ObjectPlan,
        null: str | None,
        field: str,
        step: Step,
        path: Path,
        value: Any,
    ) -> list[Any]:
        """complete_list for items of an object type whose fields have no resolvers: each item
        is its object's function, called directly. `null` is the message for a null item where
        items are non-null."""
        if not isinstance(value, list) and not is_iterable(value):
            raise GraphQLError(f"Expected Iterable, but did not find one for field '{field}'.")
        execute = plan.execute
        completed: list[Any] = []
        append = completed.append
        for index, each in enumerate(value):
            item_path = Path(path, index, None)
            try:
                if each is None or each is Undefined:
                    if null is not None:
                        raise TypeError(null)
                    append(None)
                    continue
                if isinstance(each, Exception):
                    raise each
                append(execute(self, each, item_path))
            except Exception as raw:
                append(self._handle(raw, null is not None, step, item_path))
        return completed

    async def _gather_items(self, completed: list[Any], pending: list[int]) -> list[Any]:
        if len(pending) == 1:
            completed[pending[0]] = await completed[pending[0]]
        else:
            awaited = await gather_with_cancel(*(completed[index] for index in pending))
            for index, each in zip(pending, awaited, strict=True):
                completed[index] = each
        return completed

    def field_error(self, raw: Exception, step: Step, path: Path) -> Any:
        """Executor.handle_field_error for the field itself."""
        return self._handle(raw, step.non_null, step, path)

    def item_error(self, raw: Exception, non_null: bool, step: Step, path: Path) -> Any:
        """Executor.handle_field_error for an item of a list."""
        return self._handle(raw, non_null, step, path)

    def _handle(self, raw: Exception, non_null: bool, step: Step, path: Path) -> Any:
        """The value of a failed position: null, with the error recorded; or the error raised
        to the parent, for a non-null position."""
        error = located_error(raw, step.nodes, path.as_list())
        if non_null:
            raise error
        self._add(error, path)
        return None

    def _add(self, error: GraphQLError, path: Path | None) -> None:
        """CollectedErrors.add: nothing below a position already nulled is recorded."""
        positions = self._error_positions
        at = path
        while at is not None:
            if at in positions:
                return
            at = at.prev
        if None in positions:
            return
        positions.add(path)
        self.errors.append(error)

    def _info(self, step: Step, path: Path) -> GraphQLResolveInfo[Any]:
        return GraphQLResolveInfo(
            step.field_name,
            step.nodes,
            step.definition.type,
            step.parent,
            path,
            self.schema,
            self.fragment_definitions,
            None,
            self.operation,
            self.variables,
            self.context,
            is_awaitable,
            None,
            self._helpers,
        )

    def settle_in_background(self, awaitables: Sequence[Awaitable[Any]]) -> None:
        future = asyncio.gather(*awaitables, return_exceptions=True)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def _gather(self, values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        return gather_with_cancel(*values)

    def _track(self, values: Iterable[Any]) -> None:
        awaitables = [value for value in values if is_awaitable(value)]
        if awaitables:
            self.settle_in_background(awaitables)

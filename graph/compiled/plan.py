"""The compiler: an operation's collected fields, made into steps once.

graphql-core's executor decides, for every field of every object of every request, how to
resolve it, which subfields to collect and how to complete its type. Those decisions depend only
on the document, the schema and the values of the variables `@skip`/`@include` read, so the
compiler takes them once, with graphql-core's own `collect_fields`, and leaves the plan only
what the data changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues
from graphql.pyutils import Path, Undefined, inspect
from graphql.type.scalars import (
    serialize_boolean,
    serialize_float,
    serialize_id,
    serialize_string,
)
from strawberry import ID
from strawberry.types.base import StrawberryOptional
from strawberry.types.field import StrawberryField

from graph.compiled.generate import generate
from graph.scalars import TOTAL_SERIALIZERS
from graph.types import SHARED_VALUES

if TYPE_CHECKING:
    from graph.compiled.run import Run

# Completes a value of a field's type at a path (or raises, as graphql-core's completeValue).
Complete = Callable[["Run", "Step", Path, Any], Any]
# Completes a leaf value: what the step's scalar or enum type writes for it (or raises).
CompleteLeaf = Callable[[Any], Any]


class Unsupported(Exception):
    """Something the compiler does not take; the document goes through graphql-core instead."""


@dataclass(slots=True, eq=False)
class Step:
    """One response key of an object: where its value comes from and how it is completed."""

    key: str
    field_name: str
    nodes: list[FieldNode]
    first: FieldNode
    definition: GraphQLField
    parent: GraphQLObjectType
    non_null: bool
    complete: Complete
    # Exactly one way to get the value: a plain attribute of the object (no resolver, no info),
    # a plain method of it (a resolver of `self` alone), the type's name (`__typename`), or the
    # field's resolver (with its info and arguments).
    attribute: str | None = None
    method: Callable[[Any], Any] | None = None
    typename: str | None = None
    resolve: Callable[..., Any] | None = None
    takes_arguments: bool = False
    # Set for a plain attribute of a leaf type: the whole step is `leaf(getattr(...))`.
    leaf: CompleteLeaf | None = None
    # Set for a plain attribute of an object type: that object's plan.
    sub: ObjectPlan | None = None
    # Set for a plain attribute holding a list of objects without resolvers below: the items'
    # plan, and whether items are non-null.
    items: ObjectPlan | None = None
    items_non_null: bool = False
    # True when neither this field nor any below it has a resolver: it never awaits.
    is_sync: bool = True


@dataclass(slots=True, eq=False)
class ObjectPlan:
    type: GraphQLObjectType
    name: str
    steps: list[Step]
    # True when no field at or below this object has a resolver: its completion never awaits.
    is_sync: bool = True
    # True for a value shared and never changed (graph.types.SHARED_VALUES) whose fields are all
    # leaves read off it: its answer for one object is its answer every time.
    is_shared_value: bool = False
    # The steps as one generated function (graph/compiled/generate.py): (run, source, path) to
    # the object's response map, or an awaitable of it. Generated when first called: most
    # objects are written inline into their parent's function and never need their own.
    execute: Callable[[Run, Any, Path | None], Any] = field(init=False)


@dataclass(slots=True, eq=False)
class _Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDetails]
    variables: VariableValues
    operation: OperationDefinitionNode
    # The object plan made for each field's details (kept alive by the plan being compiled).
    _plans_by_field: dict[int, ObjectPlan] = field(default_factory=dict)
    # The same, for the fields whose lists of objects go straight to their items' function.
    _lists_by_field: dict[int, tuple[ObjectPlan, bool]] = field(default_factory=dict)
    # How many steps with resolvers at or below them were compiled so far.
    _async_objects: int = 0

    def root(self) -> ObjectPlan:
        root_type = self.schema.get_root_type(self.operation.operation)
        if root_type is None:
            raise Unsupported("no root type for this operation")
        collected = collect_fields(
            self.schema, self.fragments, self.variables, root_type, self.operation
        )
        return self.object(root_type, collected.grouped_field_set)

    def object(self, type_: GraphQLObjectType, grouped: GroupedFieldSet) -> ObjectPlan:
        if type_.is_type_of is not None:
            raise Unsupported(f"{type_.name} has is_type_of")
        steps = []
        for key, details in grouped.items():
            if any(d.fragment_variable_values is not None for d in details):
                raise Unsupported("fragment variables")
            step = self.step(type_, key, details)
            if step is not None:
                steps.append(step)
        plan = ObjectPlan(type_, type_.name, steps, is_sync=all(s.is_sync for s in steps))
        plan.is_shared_value = type_.name in SHARED_VALUES and all(
            s.typename is not None or (s.leaf is not None and s.resolve is None) for s in steps
        )
        plan.execute = _generated_on_first_call(plan)
        return plan

    def step(self, parent: GraphQLObjectType, key: str, details: FieldDetailsList) -> Step | None:
        first = details[0].node
        name = first.name.value
        definition = self.schema.get_field(parent, name)
        if definition is None:
            return None  # graphql-core leaves it out of the response too
        if name in ("__schema", "__type"):
            raise Unsupported("introspection")
        return_type = definition.type
        async_before = self._async_objects
        step = Step(
            key=key,
            field_name=name,
            nodes=[d.node for d in details],
            first=first,
            definition=definition,
            parent=parent,
            non_null=is_non_null_type(return_type),
            complete=self.completer(return_type, details, parent, name),
        )
        strawberry_field = definition.extensions.get("strawberry-definition")
        if name == "__typename":
            step.typename = parent.name
        elif getattr(definition.resolve, "_is_default", False) and strawberry_field is not None:
            # A field without a resolver: Strawberry itself only reads the attribute.
            step.attribute = strawberry_field.python_name
            step.leaf = self.leaf_completer(return_type, parent, name)
            step.sub = self.sub_plan(return_type, details)
            step.items, step.items_non_null = self.object_list(return_type, details)
        elif (method := _plain_method(strawberry_field)) is not None:
            # What Strawberry's wrapper would end up calling, without the info it would make.
            step.method = method
            step.leaf = self.leaf_completer(return_type, parent, name)
            step.sub = self.sub_plan(return_type, details)
            step.items, step.items_non_null = self.object_list(return_type, details)
        elif definition.resolve is not None:
            step.resolve = _direct_resolver(self.schema, strawberry_field) or definition.resolve
            step.takes_arguments = bool(definition.args or first.arguments)
        else:
            raise Unsupported(f"{parent.name}.{name} has no resolver")
        step.is_sync = step.resolve is None and self._async_objects == async_before
        if not step.is_sync:
            self._async_objects += 1
        return step

    def completer(
        self,
        type_: GraphQLOutputType,
        details: FieldDetailsList,
        parent: GraphQLObjectType,
        name: str,
    ) -> Complete:
        """graphql-core's completeValue for one type, with every type test taken now."""
        if is_non_null_type(type_):
            assert isinstance(type_, GraphQLNonNull)
            if is_leaf_type(type_.of_type):
                leaf = _leaf(type_.of_type, _null_message(parent, name))
                return lambda run, step, path, value: leaf(value)
            return _non_null(self.completer(type_.of_type, details, parent, name), parent, name)
        if is_list_type(type_):
            assert isinstance(type_, GraphQLList)
            item_type = type_.of_type
            async_before = self._async_objects
            item = self.completer(item_type, details, parent, name)
            inner = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
            plan = self._plans_by_field.get(id(details))
            if (
                isinstance(inner, GraphQLObjectType)
                and plan is not None
                and plan.is_sync
                and self._async_objects == async_before
            ):
                self._lists_by_field[id(details)] = (plan, is_non_null_type(item_type))
                return _objects(plan, is_non_null_type(item_type), parent, name)
            return _list(item, is_non_null_type(item_type), f"{parent}.{name}")
        if is_leaf_type(type_):
            nullable = _leaf(type_)
            return lambda run, step, path, value: nullable(value)
        if is_abstract_type(type_):
            raise Unsupported("interfaces and unions")
        if is_object_type(type_):
            assert isinstance(type_, GraphQLObjectType)
            sub = collect_subfields(
                self.schema, self.fragments, self.variables, self.operation, type_, details
            )
            plan = self.object(type_, sub.grouped_field_set)
            self._plans_by_field[id(details)] = plan
            return _object(plan)
        raise Unsupported(f"output type {type_}")

    def object_list(
        self, type_: GraphQLOutputType, details: FieldDetailsList
    ) -> tuple[ObjectPlan | None, bool]:
        """For a list of objects (not a list of lists) without resolvers below: the items' plan,
        and whether items are non-null."""
        outer = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if not isinstance(outer, GraphQLList):
            return None, False
        item = outer.of_type.of_type if isinstance(outer.of_type, GraphQLNonNull) else outer.of_type
        if not isinstance(item, GraphQLObjectType):
            return None, False
        return self._lists_by_field.get(id(details), (None, False))

    def sub_plan(self, type_: GraphQLOutputType, details: FieldDetailsList) -> ObjectPlan | None:
        """The plan of the object a field holds (null or not), or None for other types."""
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if not isinstance(inner, GraphQLObjectType):
            return None
        return self._plans_by_field.get(id(details))

    def leaf_completer(
        self, type_: GraphQLOutputType, parent: GraphQLObjectType, name: str
    ) -> CompleteLeaf | None:
        """The whole completion of a plain attribute of a leaf type, or None."""
        if isinstance(type_, GraphQLNonNull):
            return (
                _leaf(type_.of_type, _null_message(parent, name))
                if is_leaf_type(type_.of_type)
                else None
            )
        return _leaf(type_) if is_leaf_type(type_) else None


def _plain_method(strawberry_field: Any) -> Callable[[Any], Any] | None:
    """The function of a resolver that takes the object alone, is not async and has no field
    extensions (nor permissions, which are extensions): Strawberry calls it as `f(source)` and
    hands graphql-core what it returns, which is all the plan does too. None for any other."""
    resolver = getattr(strawberry_field, "base_resolver", None)
    if (
        resolver is None
        or strawberry_field.extensions
        or strawberry_field.is_async
        or resolver.arguments
        or resolver.info_parameter is not None
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
        or resolver.self_parameter is None
    ):
        return None
    method: Callable[[Any], Any] = resolver.wrapped_func
    return method


# Argument types Strawberry hands to a resolver as graphql-core coerced them (its
# convert_argument returns a leaf's value unchanged; GlobalID, enums and inputs are converted).
_UNCONVERTED = (str, int, float, bool, ID)


def _direct_resolver(schema: GraphQLSchema, strawberry_field: Any) -> Callable[..., Any] | None:
    """What Strawberry's resolver wrapper does for a field without extensions (nor permissions,
    which are extensions) or exception handlers, whose arguments it passes unconverted: it makes
    an Info, renames the arguments and calls the function. None for any other field, which keeps
    the wrapper."""
    resolver = getattr(strawberry_field, "base_resolver", None)
    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    if (
        resolver is None
        or strawberry_schema is None
        or strawberry_schema.exception_handlers
        or type(strawberry_field) is not StrawberryField
        or strawberry_field.extensions
        or strawberry_field.permission_classes
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
    ):
        return None
    config = strawberry_schema.config
    names = {}
    for argument in strawberry_field.arguments:
        type_ = argument.type
        if type(type_) is StrawberryOptional:
            type_ = type_.of_type
        if type_ not in _UNCONVERTED:
            return None
        names[config.name_converter.from_argument(argument)] = argument.python_name
    function: Callable[..., Any] = resolver.wrapped_func
    make_info = config.info_class
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    takes_self = resolver.self_parameter is not None

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        kwargs = {names[name]: value for name, value in arguments.items()}
        if info_name is not None:
            kwargs[info_name] = make_info(_raw_info=info, _field=strawberry_field)
        return function(source, **kwargs) if takes_self else function(**kwargs)

    return resolve


def compile_operation(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDetails],
    variables: VariableValues,
    operation: OperationDefinitionNode,
) -> ObjectPlan:
    """The plan of one operation for these values of the variables its directives read;
    Unsupported for what only graphql-core runs."""
    try:
        return _Compiler(schema, fragments, variables, operation).root()
    except RecursionError:
        raise Unsupported("selections nested too deeply") from None


def _leaf(type_: Any, non_null: str | None = None) -> CompleteLeaf:
    """graphql-core's completeValue for a scalar or enum type; `non_null` is the message for a
    null where the type is non-null. The built-in scalars keep a value of their own Python type
    unchanged, so such a value is checked first and returned as it is."""
    coerce = type_.coerce_output_value
    same: type | None = {
        serialize_string: str,
        serialize_id: str,
        serialize_boolean: bool,
    }.get(coerce)
    is_float = coerce is serialize_float

    def complete(value: Any) -> Any:
        if type(value) is same:
            return value
        if value is None or value is Undefined:
            if non_null is not None:
                raise TypeError(non_null)
            return None
        if isinstance(value, Exception):
            raise value
        if is_float and type(value) is float and math.isfinite(value):
            return value
        result = coerce(value)
        if result is Undefined or result is None:
            raise TypeError(
                f"Expected `{inspect(type_)}.coerce_output_value({inspect(value)})`"
                f" to return non-nullable value, returned: {inspect(result)}"
            )
        return result

    complete.kept = same  # type: ignore[attr-defined]
    # A serializer that makes a string of any value of one Python type: generated code calls it
    # for such a value, without the checks above (graph/compiled/generate.py).
    total = TOTAL_SERIALIZERS.get(coerce)
    complete.direct = None if total is None else (coerce, total)  # type: ignore[attr-defined]
    return complete


def _null_message(parent: GraphQLObjectType, name: str) -> str:
    return f"Cannot return null for non-nullable field {parent}.{name}."


def _non_null(inner: Complete, parent: GraphQLObjectType, name: str) -> Complete:
    message = _null_message(parent, name)

    def complete(run: Run, step: Step, path: Path, value: Any) -> Any:
        completed = inner(run, step, path, value)
        if completed is None:
            raise TypeError(message)
        return completed

    return complete


def _list(item: Complete, item_non_null: bool, field: str) -> Complete:
    def complete(run: Run, step: Step, path: Path, value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        return run.complete_list(item, item_non_null, field, step, path, value)

    return complete


def _generated_on_first_call(plan: ObjectPlan) -> Callable[[Run, Any, Path | None], Any]:
    def first_call(run: Run, source: Any, path: Path | None) -> Any:
        if plan.execute is first_call:
            plan.execute = generate(plan)
        return plan.execute(run, source, path)

    return first_call


def _objects(
    plan: ObjectPlan, item_non_null: bool, parent: GraphQLObjectType, name: str
) -> Complete:
    """A list of objects without resolvers below: each item goes straight to its object's
    function (Run.complete_objects)."""
    null = _null_message(parent, name) if item_non_null else None
    field = f"{parent}.{name}"

    def complete(run: Run, step: Step, path: Path, value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        return run.complete_objects(plan, null, field, step, path, value)

    return complete


def _object(plan: ObjectPlan) -> Complete:
    def complete(run: Run, step: Step, path: Path, value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        return plan.execute(run, value, path)

    return complete

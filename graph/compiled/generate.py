"""Generated code for an object's steps: graphql-core's executeFields for one selection, unrolled.

For each object of a plan, one Python function is written and compiled:

- a plain attribute of a leaf type is one attribute read and, for a string or boolean of its own
  type (or a null where the field may be null), no call at all; a plain method (a resolver of
  the object alone) is one call instead of the read;
- a plain attribute or method holding an object whose fields have no resolvers is read, and that
  object's steps are written inline, down to `MAX_INLINE` levels (below, its function is called);
- `__typename` is a constant;
- any other field calls `Run.execute_field`, and is awaited with its siblings at the end.

Each step keeps its own error handling, so a failing field is recorded (or propagated to the
nearest field that may be null) as in graphql-core. The response path of a field is only built
when it fails, or when a resolver or a list needs it.

What goes into the source: response keys (GraphQL names, which the parser has checked), the
schema's attribute and type names, all written as Python literals with `repr`; the step objects
and functions are passed in as globals, never written as source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError
from graphql.pyutils import Path, Undefined, is_iterable

from graph.compiled.awaitable import is_awaitable

if TYPE_CHECKING:
    from graph.compiled.plan import ObjectPlan, Step
    from graph.compiled.run import Run

ExecuteObject = Callable[["Run", Any, Path | None], Any]

# Nested blocks (try, for) one generated function may hold: Python allows 20. An object or a
# list that would go deeper is left to its own function.
MAX_BLOCKS = 18


def generate(plan: ObjectPlan) -> ExecuteObject:
    writer = _Writer()
    lines = [
        "def execute(run, source, path):",
        "    results = {}",
        "    pending = None",
        "    try:",
        "        pass",  # an object whose fields are all skipped has no step
    ]
    lines += writer.steps(plan, "source", "results", "path", blocks=1, indent=8)
    lines += [
        "    except Exception:",
        "        if pending:",
        "            run.settle_in_background([results[key] for key in pending])",
        "        raise",
        "    if not pending:",
        "        return results",
        "    return run.gather_fields(results, pending)",
    ]
    exec(compile("\n".join(lines), f"<plan of {plan.name}>", "exec"), writer.names)  # noqa: S102
    execute: ExecuteObject = writer.names["execute"]
    return execute


@dataclass
class _Writer:
    names: dict[str, Any] = field(
        default_factory=lambda: {
            "Path": Path,
            "Undefined": Undefined,
            "is_awaitable": is_awaitable,
            "is_iterable": is_iterable,
            "GraphQLError": GraphQLError,
            "SHARED": _SHARED,
            "share": _share,
            "str": str,
            "bool": bool,
        }
    )
    count: int = 0

    def steps(
        self, plan: ObjectPlan, source: str, results: str, path: str, *, blocks: int, indent: int
    ) -> list[str]:
        """The lines of one object's steps, within `blocks` nested blocks. `source` and
        `results` name its variables; `path` is the expression of its response path (evaluated
        only where needed)."""
        lines: list[str] = []
        for step in plan.steps:
            lines += self.step(plan, step, source, results, path, blocks=blocks, indent=indent)
        return lines

    def step(
        self,
        plan: ObjectPlan,
        step: Step,
        source: str,
        results: str,
        path: str,
        *,
        blocks: int,
        indent: int,
    ) -> list[str]:
        n = self.count
        self.count += 1
        self.names[f"S{n}"] = step
        key = repr(step.key)
        at = f"Path({path}, {key}, {plan.name!r})"
        read = self.read(n, step, source)
        pad = " " * indent
        if step.typename is not None:
            return [f"{pad}{results}[{key}] = {step.typename!r}"]
        if read is not None and step.leaf is not None:
            self.names[f"L{n}"] = step.leaf
            return [
                f"{pad}try:",
                f"{pad}    v = {read}",
                f"{pad}    {results}[{key}] = {_leaf_value(n, step, self.names)}",
                f"{pad}except Exception as raw:",
                f"{pad}    {results}[{key}] = run.field_error(raw, S{n}, {at})",
            ]
        sub = step.sub
        if read is not None and sub is not None and sub.is_sync:
            self.names[f"N{n}"] = (
                f"Cannot return null for non-nullable field {plan.name}.{step.field_name}."
            )
            null = f"raise TypeError(N{n})" if step.non_null else f"{results}[{key}] = None"
            inner_source, inner_results = f"s{blocks}", f"r{blocks}"
            inline = blocks + 2 <= MAX_BLOCKS
            if inline and sub.is_shared_value:
                inner = [
                    f"{pad}        known = SHARED.get((S{n}, id({inner_source})))",
                    f"{pad}        if known is not None and known[0] is {inner_source}:",
                    f"{pad}            {results}[{key}] = known[1]",
                    f"{pad}        else:",
                    f"{pad}            errors = len(run.errors)",
                    f"{pad}            {inner_results} = {{}}",
                    *self.steps(
                        sub, inner_source, inner_results, at, blocks=blocks + 1, indent=indent + 12
                    ),
                    f"{pad}            {results}[{key}] = {inner_results}",
                    f"{pad}            if len(run.errors) == errors:",
                    f"{pad}                share(S{n}, {inner_source}, {inner_results})",
                ]
            elif inline:
                inner = [f"{pad}        {inner_results} = {{}}"]
                inner += self.steps(
                    sub, inner_source, inner_results, at, blocks=blocks + 1, indent=indent + 8
                )
                inner += [f"{pad}        {results}[{key}] = {inner_results}"]
            else:
                self.names[f"X{n}"] = sub
                inner = [f"{pad}        {results}[{key}] = X{n}.execute(run, {inner_source}, {at})"]
            return [
                f"{pad}try:",
                f"{pad}    {inner_source} = {read}",
                f"{pad}    if {inner_source} is None or {inner_source} is Undefined:",
                f"{pad}        {null}",
                f"{pad}    else:",
                f"{pad}        if isinstance({inner_source}, Exception):",
                f"{pad}            raise {inner_source}",
                *inner,
                f"{pad}except Exception as raw:",
                f"{pad}    {results}[{key}] = run.field_error(raw, S{n}, {at})",
            ]
        items = step.items
        if read is not None and items is not None and blocks + 4 <= MAX_BLOCKS:
            return self.object_list(plan, n, step, items, read, results, at, blocks, pad)
        if blocks > 1:
            # Within an object written inline, every step is of one without resolvers: a list.
            return [f"{pad}{results}[{key}] = run.execute_field(S{n}, {source}, {at})"]
        return [
            f"{pad}value = run.execute_field(S{n}, {source}, {at})",
            f"{pad}{results}[{key}] = value",
            f"{pad}if is_awaitable(value):",
            f"{pad}    if pending is None:",
            f"{pad}        pending = []",
            f"{pad}    pending.append({key})",
        ]

    def object_list(
        self,
        plan: ObjectPlan,
        n: int,
        step: Step,
        items: ObjectPlan,
        read: str,
        results: str,
        at: str,
        blocks: int,
        pad: str,
    ) -> list[str]:
        """A plain attribute or method holding a list of objects without resolvers: the loop of
        Run.complete_objects, with each item's steps written inline."""
        field = f"{plan.name}.{step.field_name}"
        self.names[f"N{n}"] = f"Cannot return null for non-nullable field {field}."
        self.names[f"I{n}"] = f"Expected Iterable, but did not find one for field '{field}'."
        key = repr(step.key)
        null = f"raise TypeError(N{n})" if step.non_null else f"{results}[{key}] = None"
        item_null = (
            [f"{pad}                    raise TypeError(N{n})"]
            if step.items_non_null
            else [
                f"{pad}                    out.append(None)",
                f"{pad}                    continue",
            ]
        )
        source, answer, index, listed = f"s{blocks}", f"r{blocks}", f"i{blocks}", f"l{blocks}"
        item_path = f"Path(at{blocks}, {index}, None)"
        return [
            f"{pad}at{blocks} = {at}",
            f"{pad}try:",
            f"{pad}    {listed} = {read}",
            f"{pad}    if {listed} is None or {listed} is Undefined:",
            f"{pad}        {null}",
            f"{pad}    else:",
            f"{pad}        if isinstance({listed}, Exception):",
            f"{pad}            raise {listed}",
            f"{pad}        if not isinstance({listed}, list) and not is_iterable({listed}):",
            f"{pad}            raise GraphQLError(I{n})",
            f"{pad}        out = []",
            f"{pad}        for {index}, {source} in enumerate({listed}):",
            f"{pad}            try:",
            f"{pad}                if {source} is None or {source} is Undefined:",
            *item_null,
            f"{pad}                if isinstance({source}, Exception):",
            f"{pad}                    raise {source}",
            f"{pad}                {answer} = {{}}",
            *self.steps(items, source, answer, item_path, blocks=blocks + 3, indent=len(pad) + 16),
            f"{pad}                out.append({answer})",
            f"{pad}            except Exception as raw:",
            f"{pad}                out.append(run.item_error(raw, {step.items_non_null}, S{n}, "
            f"{item_path}))",
            f"{pad}        {results}[{key}] = out",
            f"{pad}except Exception as raw:",
            f"{pad}    {results}[{key}] = run.field_error(raw, S{n}, at{blocks})",
        ]

    def read(self, n: int, step: Step, source: str) -> str | None:
        """The expression that reads the step's value off the object, for a plain attribute or
        a plain method; None for a step that needs `Run.execute_field`."""
        if step.method is not None:
            self.names[f"M{n}"] = step.method
            return f"M{n}({source})"
        if step.attribute is not None and step.attribute.isidentifier():
            return f"{source}.{step.attribute}"
        return None


# Answers made for shared values (graph.types.SHARED_VALUES), by the step and the value's
# identity, both kept with the answer so that neither identity can be reused while it is here.
# Only answers made without an error are kept. Answers are never changed once made (the REST
# shim and the encoders only read them), so one may appear in several.
_SHARED: dict[tuple[Step, int], tuple[object, dict[str, Any]]] = {}
MAX_SHARED = 4096


def _share(step: Step, value: object, answer: dict[str, Any]) -> None:
    if len(_SHARED) >= MAX_SHARED:
        _SHARED.clear()
    _SHARED[(step, id(value))] = (value, answer)


def _leaf_value(n: int, step: Step, names: dict[str, Any]) -> str:
    """The expression for a leaf's answer: values the scalar keeps as they are (strings and
    booleans of their own type, and null where the field may be null) without a call, and
    values of the type its serializer always takes (graph.scalars.TOTAL_SERIALIZERS) with a
    call of that serializer alone."""
    kept = getattr(step.leaf, "kept", None)
    keeps = [f"type(v) is {kept.__name__}"] if kept in (str, bool) else []
    if not step.non_null:
        keeps.append("v is None")
    other = f"L{n}(v)"
    direct = getattr(step.leaf, "direct", None)
    if direct is not None:
        names[f"F{n}"], names[f"T{n}"] = direct
        other = f"(F{n}(v) if type(v) is T{n} else L{n}(v))"
    return f"v if {' or '.join(keeps)} else {other}" if keeps else other

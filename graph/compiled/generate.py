"""Generated code for an object's steps: graphql-core's executeFields for one selection, unrolled.

For each object of a plan, one Python function is written and compiled:

- a plain attribute of a leaf type is one attribute read and, for a string or boolean of its own
  type, no call at all;
- a plain attribute of an object type whose fields have no resolvers is one read and a call of
  that object's own function;
- `__typename` is a constant;
- any other field calls `Run.execute_field`, and is awaited with its siblings at the end.

Each step keeps its own error handling, so a failing field is recorded (or propagated) as in
graphql-core. What goes into the source: response keys (GraphQL names, which the parser has
checked), the schema's attribute and type names, all written as Python literals with `repr`;
the step objects and functions are passed in as globals, never written as source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphql.pyutils import Path, Undefined

from graph.compiled.awaitable import is_awaitable

if TYPE_CHECKING:
    from graph.compiled.plan import ObjectPlan, Step
    from graph.compiled.run import Run

ExecuteObject = Callable[["Run", Any, Path | None], Any]


def generate(plan: ObjectPlan) -> ExecuteObject:
    names: dict[str, Any] = {
        "Path": Path,
        "Undefined": Undefined,
        "is_awaitable": is_awaitable,
        "str": str,
        "bool": bool,
    }
    lines = [
        "def execute(run, source, path):",
        "    results = {}",
        "    pending = None",
        "    try:",
        "        pass",  # an object whose fields are all skipped has no step
    ]
    for index, step in enumerate(plan.steps):
        names[f"S{index}"] = step
        lines += _step(plan, index, step, names)
    lines += [
        "    except Exception:",
        "        if pending:",
        "            run.settle_in_background([results[key] for key in pending])",
        "        raise",
        "    if not pending:",
        "        return results",
        "    return run.gather_fields(results, pending)",
    ]
    exec(compile("\n".join(lines), f"<plan of {plan.name}>", "exec"), names)  # noqa: S102
    execute: ExecuteObject = names["execute"]
    return execute


def _step(plan: ObjectPlan, index: int, step: Step, names: dict[str, Any]) -> list[str]:
    key = repr(step.key)
    at = f"Path(path, {key}, {plan.name!r})"
    read = _read(index, step, names)
    if step.typename is not None:
        return [f"        results[{key}] = {step.typename!r}"]
    if read is not None and step.leaf is not None:
        names[f"L{index}"] = step.leaf
        return [
            "        try:",
            f"            v = {read}",
            f"            results[{key}] = {_leaf_value(index, step)}",
            "        except Exception as raw:",
            f"            results[{key}] = run.field_error(raw, S{index}, {at})",
        ]
    if read is not None and step.sub is not None and step.sub.is_sync:
        names[f"X{index}"] = step.sub.execute
        names[f"N{index}"] = (
            f"Cannot return null for non-nullable field {plan.name}.{step.field_name}."
        )
        null = f"raise TypeError(N{index})" if step.non_null else f"results[{key}] = None"
        return [
            f"        at = {at}",
            "        try:",
            f"            v = {read}",
            "            if v is None or v is Undefined:",
            f"                {null}",
            "            else:",
            "                if isinstance(v, Exception):",
            "                    raise v",
            f"                results[{key}] = X{index}(run, v, at)",
            "        except Exception as raw:",
            f"            results[{key}] = run.field_error(raw, S{index}, at)",
        ]
    return [
        f"        value = run.execute_field(S{index}, source, {at})",
        f"        results[{key}] = value",
        "        if is_awaitable(value):",
        "            if pending is None:",
        "                pending = []",
        f"            pending.append({key})",
    ]


def _read(index: int, step: Step, names: dict[str, Any]) -> str | None:
    """The expression that reads the step's value off `source`, for a plain attribute or a
    plain method; None for a step that needs `Run.execute_field`."""
    if step.method is not None:
        names[f"M{index}"] = step.method
        return f"M{index}(source)"
    if step.attribute is not None and step.attribute.isidentifier():
        return f"source.{step.attribute}"
    return None


def _leaf_value(index: int, step: Step) -> str:
    """The expression for a leaf's answer: values the scalar keeps as they are (strings and
    booleans of their own type, and null where the field may be null) without a call."""
    kept = getattr(step.leaf, "kept", None)
    keeps = [f"type(v) is {kept.__name__}"] if kept in (str, bool) else []
    if not step.non_null:
        keeps.append("v is None")
    return f"v if {' or '.join(keeps)} else L{index}(v)" if keeps else f"L{index}(v)"

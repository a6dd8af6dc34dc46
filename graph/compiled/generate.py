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
    attribute = step.attribute if step.attribute and step.attribute.isidentifier() else None
    if step.typename is not None:
        return [f"        results[{key}] = {step.typename!r}"]
    if attribute is not None and step.leaf is not None:
        names[f"L{index}"] = step.leaf
        same = _kept_type(step)
        value = f"v if type(v) is {same} else L{index}(v)" if same else f"L{index}(v)"
        return [
            "        try:",
            f"            v = source.{attribute}",
            f"            results[{key}] = {value}",
            "        except Exception as raw:",
            f"            results[{key}] = run.field_error(raw, S{index}, {at})",
        ]
    if attribute is not None and step.sub is not None and step.sub.is_sync:
        names[f"X{index}"] = step.sub.execute
        names[f"N{index}"] = (
            f"Cannot return null for non-nullable field {plan.name}.{step.field_name}."
        )
        null = f"raise TypeError(N{index})" if step.non_null else f"results[{key}] = None"
        return [
            f"        at = {at}",
            "        try:",
            f"            v = source.{attribute}",
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


def _kept_type(step: Step) -> str | None:
    """The Python type whose values the step's scalar returns unchanged, if any."""
    kept = getattr(step.leaf, "kept", None)
    return kept.__name__ if kept in (str, bool) else None

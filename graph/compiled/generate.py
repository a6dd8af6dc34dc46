"""Generated code for an object's steps: the loop of `Run.execute_fields`, unrolled.

For each object type of a plan, one Python function is written and compiled: a plain leaf
attribute becomes one attribute read and, for a string or boolean of its own type, no call at
all; `__typename` becomes a constant; any other step calls `Run.execute_field`. Each step keeps
its own error handling, so a failing field is recorded (or propagated) exactly as in the loop.

What goes into the source: response keys (GraphQL names, which the parser has checked), the
schema's attribute and type names, all written as Python literals with `repr`; the step objects
are passed in as globals, never written as source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql.pyutils import Path

from graph.compiled.plan import ObjectPlan, Step

ExecuteObject = Callable[[Any, Any, Path | None], Any]


def generate(plan: ObjectPlan, is_awaitable: Callable[[Any], bool]) -> ExecuteObject:
    lines = [
        "def execute(run, source, path):",
        "    results = {}",
        "    pending = None",
        "    try:",
        "        pass",  # an object whose fields are all skipped has no step
    ]
    names: dict[str, Any] = {"Path": Path, "is_awaitable": is_awaitable}
    type_name = repr(plan.name)
    for index, step in enumerate(plan.steps):
        key = repr(step.key)
        names[f"S{index}"] = step
        if step.typename is not None:
            lines.append(f"        results[{key}] = {step.typename!r}")
        elif step.leaf is not None and step.attribute is not None and step.attribute.isidentifier():
            names[f"L{index}"] = step.leaf
            same = _kept_type(step)
            value = f"v if type(v) is {same} else L{index}(v)" if same else f"L{index}(v)"
            lines += [
                "        try:",
                f"            v = source.{step.attribute}",
                f"            results[{key}] = {value}",
                "        except Exception as raw:",
                f"            results[{key}] = run.field_error(raw, S{index}, "
                f"Path(path, {key}, {type_name}))",
            ]
        else:
            at = f"Path(path, {key}, {type_name})"
            lines += [
                f"        value = run.execute_field(S{index}, source, {at})",
                f"        results[{key}] = value",
                "        if is_awaitable(value):",
                "            if pending is None:",
                "                pending = []",
                f"            pending.append({key})",
            ]
    lines += [
        "    except Exception:",
        "        if pending:",
        "            run.settle_in_background([results[key] for key in pending])",
        "        raise",
        "    if not pending:",
        "        return results",
        "    return run.gather_fields(results, pending)",
    ]
    names["str"] = str
    names["bool"] = bool
    exec(compile("\n".join(lines), f"<plan of {plan.name}>", "exec"), names)  # noqa: S102
    execute: ExecuteObject = names["execute"]
    return execute


def _kept_type(step: Step) -> str | None:
    """The Python type whose values the step's scalar returns unchanged, if any."""
    kept = getattr(step.leaf, "kept", None)
    return kept.__name__ if kept in (str, bool) else None

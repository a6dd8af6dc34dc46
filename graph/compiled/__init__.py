"""Compiled operations: a validated query becomes a plan once, and each request runs the plan.

A plan is a tree of field steps made from graphql-core's own field collection. Running it reads
plain fields straight off the objects the resolvers return and writes them into the response
map; only fields with resolvers (`me`, `sessions`, `history`, the location signals) get an
`info` object and are called as graphql-core would call them (the function itself, without
Strawberry's wrapper, where the wrapper would only make an Info and rename arguments). Errors,
their paths and null propagation follow graphql-core's executor step for step, so both engines
give the same answer (tests/graph/test_differential.py compares them).

- `documents.py`: parse, validate and pick the operation, once per document (a bounded cache);
- `plan.py`: the compiler, from collected fields to steps;
- `generate.py`: each object's steps as one generated Python function;
- `run.py`: runs a plan for one request (`awaitable.py`: the awaitable check both engines use).

What it does not take (introspection, mutations, documents that do not validate, variables it
cannot coerce) goes through Strawberry as before (graph/execution.py).
"""

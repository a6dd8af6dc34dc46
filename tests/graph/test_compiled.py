"""The compiled engine's own promises: which documents it takes and which go through Strawberry,
its cache of documents stays bounded under a flood of distinct ones, the REST query is planned
before the first request, and /metrics counts both engines. (That both engines give the same
answers is tests/graph/test_differential.py.)"""

from __future__ import annotations

import enum
import gc
import tracemalloc

import httpx
import pytest
import strawberry
from prometheus_client import REGISTRY
from strawberry.permission import BasePermission
from strawberry.types.graphql import OperationType

from graph.compiled.documents import MAX_DOCUMENTS, Documents
from graph.compiled.plan import _direct_resolver
from graph.execution import DOCUMENTS, execute, to_json
from sessions_config.resources import Resources
from sessions_config.settings import Settings
from sessions_http.app import create_app
from sessions_http.rest import SESSIONS_DOCUMENT
from tests.app_client import ROUTE, cookie, graphql_data
from tests.conftest import Users
from tests.sessions_http.test_metrics import scrape


def executions(engine: str) -> float:
    value = REGISTRY.get_sample_value("sessions_api_graphql_executions_total", {"engine": engine})
    return value or 0.0


async def engine_of(resources: Resources, query: str, token: str | None, **kwargs: object) -> str:
    """Which engine ran the document: "compiled" or "fallback"."""
    compiled, fallback = executions("compiled"), executions("fallback")
    await execute(resources, query=query, token=token, **kwargs)  # type: ignore[arg-type]
    ran = {
        "compiled": executions("compiled") - compiled,
        "fallback": executions("fallback") - fallback,
    }
    assert sorted(ran.values()) == [0, 1], ran
    return "compiled" if ran["compiled"] else "fallback"


@pytest.mark.parametrize(
    ("query", "engine"),
    [
        ("{ me { id sessions { id geo { city } } } }", "compiled"),
        ("query Page($n: Int!) { me { history(first: $n) { edges { cursor } } } }", "compiled"),
        (
            "{ me { ... on Me { id } ...F } } fragment F on Me { sessions { __typename } }",
            "compiled",
        ),
        ("{ __typename me { __typename } }", "compiled"),
        # Introspection, anywhere in the document: GraphiQL's queries.
        ("{ __schema { queryType { name } } }", "fallback"),
        ('{ me { id } __type(name: "Me") { name } }', "fallback"),
        # Mutations, and documents that do not validate or parse.
        ("mutation { revokeOtherSessions }", "fallback"),
        ("{ me { nope } }", "fallback"),
        ("{ me { id ", "fallback"),
        # Two operations and no name: Strawberry says which to name.
        ("query A { me { id } } query B { me { id } }", "fallback"),
    ],
)
async def test_the_compiler_takes_queries_and_leaves_the_rest_to_strawberry(
    resources: Resources, users: Users, query: str, engine: str
) -> None:
    issued = await users.session(users.new_id())
    kinds = (OperationType.QUERY, OperationType.MUTATION)
    variables = {"n": 2} if "$n" in query else None
    ran = await engine_of(resources, query, issued.token, variables=variables, allowed=kinds)
    assert ran == engine


async def test_variables_that_do_not_coerce_are_answered_by_graphql_core(
    resources: Resources, users: Users
) -> None:
    issued = await users.session(users.new_id())
    query = "query Page($n: Int!) { me { history(first: $n) { edges { cursor } } } }"
    assert await engine_of(resources, query, issued.token, variables={"n": "many"}) == "fallback"
    result = await execute(resources, query=query, token=issued.token, variables={"n": "many"})
    errors = to_json(result)["errors"]
    assert errors[0]["message"].startswith("Variable '$n' has invalid value")
    assert "data" not in to_json(result)


async def test_skip_and_include_by_variable_make_one_plan_per_value(
    resources: Resources, users: Users
) -> None:
    issued = await users.session(users.new_id())
    query = (
        "query($all: Boolean!) { me { id sessions @include(if: $all) { id } "
        "history @skip(if: $all) { pageInfo { hasNextPage } } } }"
    )
    both = []
    for value in (True, False, True):
        assert await engine_of(resources, query, issued.token, variables={"all": value}) == (
            "compiled"
        )
        result = await execute(resources, query=query, token=issued.token, variables={"all": value})
        both.append(sorted(to_json(result)["data"]["me"]))
    assert both == [["id", "sessions"], ["history", "id"], ["id", "sessions"]]
    prepared = DOCUMENTS.get(query, None)
    assert prepared is not None
    assert sorted(prepared.plans) == [(False,), (True,)]


async def test_a_flood_of_distinct_documents_keeps_the_cache_bounded(
    resources: Resources, users: Users
) -> None:
    issued = await users.session(users.new_id())
    user_id = issued.record.user_id

    async def flood(first: int, count: int) -> list[str]:
        queries = [
            f"{{ me {{ id a{n}: id sessions {{ id }} }} }}" for n in range(first, first + count)
        ]
        for n, query in zip(range(first, first + count), queries, strict=True):
            data = to_json(await execute(resources, query=query, token=issued.token))["data"]
            assert data["me"]["id"] == data["me"][f"a{n}"] == user_id
        return queries

    queries = await flood(0, MAX_DOCUMENTS * 2)
    assert len(DOCUMENTS) == MAX_DOCUMENTS
    # The newest are kept and the oldest dropped.
    keys = list(DOCUMENTS._prepared)
    assert (queries[-1], None) in keys
    assert (queries[0], None) not in keys
    # Memory: another flood twice as large leaves the process no bigger (what a document
    # leaves behind goes when it is dropped).
    gc.collect()
    tracemalloc.start()
    try:
        await flood(10_000, MAX_DOCUMENTS)
        gc.collect()
        after_one, _ = tracemalloc.get_traced_memory()
        await flood(20_000, MAX_DOCUMENTS * 2)
        gc.collect()
        after_three, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after_three - after_one < 512 * 1024, (after_one, after_three)


def test_the_least_recently_used_document_goes_first() -> None:
    documents = Documents(size=2)
    one, two, three = "{ me { id } }", "{ me { a: id } }", "{ me { b: id } }"
    first = documents.get(one, None)
    documents.get(two, None)
    assert documents.get(one, None) is first  # used again: now the most recent
    documents.get(three, None)
    assert len(documents) == 2
    assert documents.get(one, None) is first
    assert list(documents._prepared) == [(three, None), (one, None)]


async def test_the_rest_query_is_planned_at_start_up(base_settings: Settings) -> None:
    DOCUMENTS._prepared.clear()
    app = create_app(base_settings)
    async with app.router.lifespan_context(app):
        # No request yet: the start-up alone made the plan.
        prepared = DOCUMENTS._prepared.get((SESSIONS_DOCUMENT, None))
        assert prepared is not None and list(prepared.plans) == [()]


async def test_the_rest_route_runs_compiled(client: httpx.AsyncClient, users: Users) -> None:
    issued = await users.session(users.new_id())
    before, _ = await scrape(client)
    response = await client.get(ROUTE, headers=cookie(issued.token))
    assert response.status_code == 200
    after, text = await scrape(client)
    name = "sessions_api_graphql_executions_total"
    for engine, ran in (("compiled", 1), ("fallback", 0)):
        key = (name, frozenset({("engine", engine)}))
        assert after.get(key, 0) - before.get(key, 0) == ran, engine
    assert "# HELP sessions_api_graphql_executions_total" in text


async def test_metrics_count_both_engines(client: httpx.AsyncClient, users: Users) -> None:
    issued = await users.session(users.new_id())
    name = "sessions_api_graphql_executions_total"
    before, _ = await scrape(client)
    await graphql_data(client, "{ me { id } }", token=issued.token)
    await graphql_data(client, "{ __schema { queryType { name } } }", token=issued.token)
    after, _ = await scrape(client)
    for engine in ("compiled", "fallback"):
        key = (name, frozenset({("engine", engine)}))
        assert after[key] - before.get(key, 0) == 1, engine


def test_the_compiled_engine_does_what_each_schema_extension_does() -> None:
    """The compiled engine skips Strawberry's extension hooks and does their work itself:
    parsing with the token limit, validation with the added rules, one operation unless named
    (graph/compiled/documents.py), the error policy (graph/execution.py); the two caches have
    their counterpart in the document cache. An extension added to the schema needs the same,
    or queries would run without it: this fails until the compiled engine is told."""
    from graph.schema import schema

    handled = [
        "MaxTokensLimiter",
        "ParserCache",
        "ValidationCache",
        "OneOperationUnlessNamed",
        "AddValidationRules",
        "ShapeErrors",
    ]
    assert [type(extension).__name__ for extension in schema.get_extensions()] == handled


class _Deny(BasePermission):
    message = "No."

    def has_permission(self, source: object, info: strawberry.Info, **kwargs: object) -> bool:
        return False


@strawberry.enum
class _Color(enum.Enum):
    RED = "red"


@strawberry.type
class _Query:
    @strawberry.field
    def plain(self, info: strawberry.Info, n: int | None = 1) -> int:
        return n or 0

    @strawberry.field(permission_classes=[_Deny])
    def guarded(self, info: strawberry.Info) -> int:
        return 1

    @strawberry.field
    def colored(self, color: _Color) -> str:
        return color.value


def test_only_resolvers_strawberry_would_merely_call_are_called_without_its_wrapper() -> None:
    """The compiled engine calls a resolver's function itself only where Strawberry's wrapper
    would do nothing else: a permission (a field extension) or an argument Strawberry converts
    (an enum here) keeps the wrapper, and with it what it does."""
    graphql_schema = strawberry.Schema(query=_Query)._schema
    assert graphql_schema.query_type is not None
    direct = {
        name: _direct_resolver(graphql_schema, field.extensions["strawberry-definition"])
        is not None
        for name, field in graphql_schema.query_type.fields.items()
    }
    assert direct == {"plain": True, "guarded": False, "colored": False}

"""Proof of equality: the compiled engine (graph/compiled/) and Strawberry/graphql-core answer
every document alike on the same data: the same data, and the same errors (message, path,
locations, extensions) in the same order. Documents: the ones the service sends itself, the
README's and GraphiQL's, hand-written ones for each part of the language and each error, and
generated ones (tests/graph/generated.py). Each compiled=True run must also report the engine
it used (graph.execution.EXECUTIONS): mutations, introspection and invalid documents fall back;
valid queries run compiled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from sessions_config.resources import Resources, open_resources
from sessions_config.settings import Settings
from tests.graph.corpus import SESSION_FIELDS, Case, all_cases
from tests.graph.differential import (
    ACTIVE_SESSIONS,
    WRONG_TOKEN,
    World,
    compare,
    fixed,
    fresh_actor,
    on_port,
    seed,
)
from tests.graph.generated import Generated, generate
from tests.ipapi_server import IpApiServer

GENERATED_DOCUMENTS = 300


@pytest.fixture(scope="module")
def located_settings(base_settings: Settings, ipapi: IpApiServer) -> Settings:
    """The ip-api protocol server on loopback as the provider: it knows cities, coordinates and
    flags, where the offline provider knows countries and networks only."""
    ipapi.reset()
    return base_settings.model_copy(
        update={"geo_provider": "ip-api", "geo_ipapi_url": ipapi.url, "geo_timeout": 1.0}
    )


@pytest.fixture(scope="module")
async def located(
    located_settings: Settings, database: str, redis_keyspace: str
) -> AsyncIterator[Resources]:
    async with open_resources(located_settings) as res:
        yield res


@pytest.fixture(scope="module")
async def world(located: Resources) -> World:
    return await seed(located)


@pytest.fixture(scope="module")
async def postgres_down(
    located_settings: Settings, redis_keyspace: str
) -> AsyncIterator[Resources]:
    """The run's Redis (so the seeded active sessions show) and a Postgres where nothing
    listens: a refused connection, answered at once."""
    settings = located_settings.model_copy(
        update={"database_url": on_port(located_settings.database_url, 1)}
    )
    async with open_resources(settings) as res:
        yield res


@pytest.fixture(scope="module")
async def redis_down(located_settings: Settings, database: str) -> AsyncIterator[Resources]:
    settings = located_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with open_resources(settings) as res:
        yield res


TOKENS = {"nobody": None, "wrong": WRONG_TOKEN, "malformed": "not a token"}


@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.id)
async def test_both_engines_answer_alike(
    case: Case,
    world: World,
    located: Resources,
    resources: Resources,
    postgres_down: Resources,
    redis_down: Resources,
) -> None:
    where = {
        "up": located,
        "offline_geo": resources,
        "postgres_down": postgres_down,
        "redis_down": redis_down,
    }[case.storage]

    async def prepare() -> tuple[str | None, Mapping[str, Any] | None]:
        if case.who == "fresh":
            actor = await fresh_actor(located, world)
            variables = case.variables(actor) if callable(case.variables) else case.variables
            return actor.token, variables
        assert not callable(case.variables)
        token = world.token if case.who == "user" else TOKENS[case.who]
        return token, world.resolve(case.variables)

    answer = await compare(
        where,
        query=world.resolve(case.query),
        prepare=prepare,
        operation_name=case.operation_name,
        allowed=case.allowed,
    )
    if case.check is not None:
        case.check(answer)


async def test_partial_answer_while_postgres_is_down(
    world: World, postgres_down: Resources
) -> None:
    """History and the signals need Postgres; the active sessions (Redis) still show, in both
    engines, with the same errors at the same paths."""
    answer = await compare(
        postgres_down,
        query=f"""
        {{ me {{ id
          sessions {{ {SESSION_FIELDS} isNewLocation impossibleTravel }}
          history(first: 3) {{ edges {{ node {{ id }} }} }} }} }}
        """,
        prepare=fixed(world.token),
    )
    me = answer["data"]["me"]
    assert me["id"] == world.user_id
    assert len(me["sessions"]) == ACTIVE_SESSIONS
    assert me["history"] is None
    assert all(s["isNewLocation"] is None and s["impossibleTravel"] is None for s in me["sessions"])
    paths = [error["path"] for error in answer["errors"]]
    assert ["me", "history"] in paths
    assert ["me", "sessions", 0, "isNewLocation"] in paths
    assert {error["extensions"]["code"] for error in answer["errors"]} == {"UNAVAILABLE"}


@pytest.fixture(scope="module")
def generated() -> list[Generated]:
    return generate(GENERATED_DOCUMENTS)


async def test_generated_documents(
    generated: list[Generated], world: World, located: Resources
) -> None:
    """One test for all generated documents (Hypothesis drew them up front, derandomized); the
    failure names the first document the engines disagree on."""
    assert len(generated) == GENERATED_DOCUMENTS
    for document in generated:
        await compare(
            located,
            query=world.resolve(document.query),
            prepare=fixed(world.token, world.resolve(document.variables)),
        )

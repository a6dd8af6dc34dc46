"""Running one document through both engines of graph.execution.execute (the compiled plan and
Strawberry/graphql-core) on the same data, and the data they run on: one user with active
sessions (public, private, IPv6 and CGNAT addresses, varied user agents, one never seen and one
seen by a login service) and past ones of every end reason."""

from __future__ import annotations

import difflib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    Visitor,
    parse,
    validate,
    visit,
)
from prometheus_client import REGISTRY
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graph.execution import execute, to_json
from graph.schema import schema
from sessions_config.resources import Resources
from store.models import utcnow
from store.sessions import IssuedSession
from store.tokens import new_token
from tests.conftest import Users

QUERIES_AND_MUTATIONS = (StrawberryOperationType.QUERY, StrawberryOperationType.MUTATION)

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
)
GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"

ACTIVE_SESSIONS = 8  # of the seeded user

# A well-formed token no session has.
WRONG_TOKEN = new_token()

# In a generated or written document, a string literal or variable value that stands for the
# cursor of the seeded user's n-th past session (newest first): cursors exist only once seeded.
CURSOR_MARK = "@cursor{}@"


@dataclass(frozen=True)
class World:
    """The seeded data that documents and their variables refer to."""

    user_id: str
    token: str  # of the session making the requests
    cursors: tuple[str, ...]  # of every past session, newest first
    foreign_session_id: str  # another user's active session

    def resolve(self, value: Any) -> Any:
        """`value` with every cursor mark replaced by its cursor (in text and in variables)."""
        if isinstance(value, str):
            for n, cursor in enumerate(self.cursors):
                value = value.replace(CURSOR_MARK.format(n), cursor)
            return value
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


@dataclass(frozen=True)
class Actor:
    """Who a mutation runs as: a user of its own, made afresh for every run, so that both
    engines find the same state (a revoke changes what the next run would see)."""

    token: str
    current_session_id: str
    other_session_id: str  # another active session of the same user
    foreign_session_id: str


async def seed(resources: Resources) -> World:
    users = Users(resources)
    user_id = users.new_id()
    now = utcnow()
    hour = timedelta(hours=1)

    async def active(ip: str, user_agent: str, age: timedelta) -> IssuedSession:
        return await users.session(user_id, ip=ip, user_agent=user_agent, created_at=now - age)

    current = await active("81.2.69.142", CHROME_MAC, 1 * hour)  # London
    await active("8.8.8.8", IPHONE_SAFARI, 2 * hour)  # an ocean away an hour earlier
    await active("10.20.30.40", "", 3 * hour)  # private, no user agent
    seen = await active("192.168.1.20", FIREFOX_LINUX, 4 * hour)
    await active("2001:4860:4860::8888", ANDROID_CHROME, 5 * hour)
    await active("100.64.1.2", GOOGLEBOT, 6 * hour)  # CGNAT
    never_seen = await active("92.40.200.7", IPAD_SAFARI, 7 * hour)  # mobile, behind a proxy
    await active("2a00:1450:4001:80b::200e", EDGE_WINDOWS, 8 * hour)
    # Seen by a login service since it signed in; another written by a writer that keeps no
    # last_seen_at (it is optional, docs/DATA.md): never seen, lastSeenAt null.
    assert await resources.store.touch(seen.token) is not None
    store = resources.store
    await store.redis.hdel(
        store.keys.session(never_seen.record.user_id, never_seen.record.token_hash), "last_seen_at"
    )

    day = timedelta(days=1)
    same_second = now - 9 * day
    past: list[dict[str, Any]] = [
        {"ip": "81.2.69.142", "ua": CHROME_MAC, "created": now - 2 * day, "end": "logout"},
        {"ip": "8.8.8.8", "ua": IPHONE_SAFARI, "created": now - 3 * day, "end": "revoked"},
        {"ip": "10.0.0.7", "ua": FIREFOX_LINUX, "created": now - 40 * day, "end": None},
        {"ip": "203.0.113.9", "ua": EDGE_WINDOWS, "created": now - 5 * day, "end": "logout"},
        {"ip": "2a00:1450:4001:82a::200e", "ua": ANDROID_CHROME, "created": now - 6 * day,
         "end": "expired"},
        {"ip": "9.9.9.9", "ua": "", "created": now - 7 * day, "end": "revoked"},
        {"ip": "185.60.216.35", "ua": IPAD_SAFARI, "created": same_second, "end": "logout"},
        {"ip": "185.60.216.36", "ua": IPAD_SAFARI, "created": same_second, "end": "logout"},
        {"ip": "100.64.9.9", "ua": GOOGLEBOT, "created": now - 50 * day, "end": None},
    ]  # fmt: skip
    for row in past:
        created = row["created"]
        if row["end"] is None:  # expired by time, never ended
            await users.session(
                user_id, ip=row["ip"], user_agent=row["ua"], created_at=created,
                expires_at=created + day,
            )  # fmt: skip
        else:
            await users.session(
                user_id, ip=row["ip"], user_agent=row["ua"], created_at=created,
                ended_at=created + hour, end_reason=row["end"],
            )  # fmt: skip

    foreign = await users.session(users.new_id(), ip="8.8.4.4")
    # The first request records the current session's activity; see `compare`.
    result = await execute(
        resources,
        query="{ me { history(first: 200) { edges { cursor } } } }",
        token=current.token,
        compiled=False,
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    cursors = tuple(edge["cursor"] for edge in result.data["me"]["history"]["edges"])
    assert len(cursors) == len(past)
    return World(user_id, current.token, cursors, foreign.record.id)


async def fresh_actor(resources: Resources, world: World) -> Actor:
    users = Users(resources)
    user_id = users.new_id()
    first = await users.session(user_id, ip="81.2.69.142", user_agent=CHROME_MAC)
    other = await users.session(user_id, ip="8.8.8.8", user_agent=IPHONE_SAFARI)
    return Actor(first.token, first.record.id, other.record.id, world.foreign_session_id)


def on_port(dsn: str, port: int) -> str:
    """The same DSN on another port of the same host (where nothing listens, for port 1)."""
    parts = urlsplit(dsn)
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = parts.hostname or "127.0.0.1"
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- which engine must run ---------------------------------------------------------------------


def _selected_operation(query: str, operation_name: str | None) -> OperationDefinitionNode | None:
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name and o.name.value == operation_name]
    return named[0] if len(named) == 1 else None


def _introspects(document: DocumentNode) -> bool:
    found = False

    class Finder(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            nonlocal found
            found = found or node.name.value in ("__schema", "__type")

    visit(document, Finder())
    return found


def expected_engine(
    query: str, operation_name: str | None, fallback_json: dict[str, Any]
) -> str | None:
    """The engine a compiled=True run must report: "fallback" for mutations, introspection and
    documents that do not parse or validate; "compiled" for queries that executed; None (not
    checked) for the rest, e.g. variables that do not coerce, or several unnamed operations."""
    try:
        document = parse(query)
    except GraphQLError:
        return "fallback"
    if validate(schema._schema, document):
        return "fallback"
    if _introspects(document):
        return "fallback"
    operation = _selected_operation(query, operation_name)
    if operation is None:
        return None
    if operation.operation is not OperationType.QUERY:
        return "fallback"
    return "compiled" if "data" in fallback_json else None


# -- running both ------------------------------------------------------------------------------


def engine_count(engine: str) -> float:
    value = REGISTRY.get_sample_value("sessions_api_graphql_executions_total", {"engine": engine})
    return value or 0.0


@dataclass
class Run:
    body: dict[str, Any]
    compiled_delta: float
    fallback_delta: float


async def run(
    resources: Resources,
    *,
    query: str,
    token: str | None,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    allowed: Sequence[StrawberryOperationType],
    compiled: bool,
) -> Run:
    before = engine_count("compiled"), engine_count("fallback")
    result = await execute(
        resources,
        query=query,
        token=token,
        variables=variables,
        operation_name=operation_name,
        allowed=allowed,
        compiled=compiled,
    )
    # The body as it goes on the wire, JSON: a value that only Python tells apart (a tuple path
    # for a list, an int for a float) must not fail the comparison, nor one it does not.
    body = json.loads(json.dumps(to_json(result)))
    return Run(body, engine_count("compiled") - before[0], engine_count("fallback") - before[1])


def describe(query: str, variables: Mapping[str, Any] | None, token: str | None) -> str:
    who = "no token" if token is None else f"token …{token[-6:]}"
    return f"\n--- document ({who}) ---\n{query}\n--- variables ---\n{json.dumps(variables)}\n"


def _diff(expected: dict[str, Any], actual: dict[str, Any], names: tuple[str, str]) -> str:
    lines = difflib.unified_diff(
        json.dumps(expected, indent=1, ensure_ascii=False).splitlines(),
        json.dumps(actual, indent=1, ensure_ascii=False).splitlines(),
        *names,
        lineterm="",
    )
    return "\n".join(lines)


# Gives each run its token and variables (for mutations, those of a fresh user).
Prepare = Callable[[], Awaitable[tuple[str | None, Mapping[str, Any] | None]]]


def fixed(token: str | None, variables: Mapping[str, Any] | None = None) -> Prepare:
    async def prepare() -> tuple[str | None, Mapping[str, Any] | None]:
        return token, variables

    return prepare


async def compare(
    resources: Resources,
    *,
    query: str,
    prepare: Prepare,
    operation_name: str | None = None,
    allowed: Sequence[StrawberryOperationType] = QUERIES_AND_MUTATIONS,
) -> dict[str, Any]:
    """Asserts that both engines answer the document alike (data, and errors with their
    message, path, locations, extensions and order), and that the compiled=True run counted the
    engine it must have used. Returns the answer.

    The data may change under the document: the first request of each minute records the
    session's activity (lastSeenAt). So the compiled run is bracketed by two fallback runs and
    only compared when those two agree, which shows nothing changed in between. A bracket that
    saw a change is run again: the change happens once a minute, the next bracket is clean."""

    async def once(compiled: bool) -> tuple[Run, str | None, Mapping[str, Any] | None]:
        token, variables = await prepare()
        outcome = await run(
            resources,
            query=query,
            token=token,
            variables=variables,
            operation_name=operation_name,
            allowed=allowed,
            compiled=compiled,
        )
        return outcome, token, variables

    for _ in range(3):
        before, _, _ = await once(compiled=False)
        compiled, token, variables = await once(compiled=True)
        after, _, _ = await once(compiled=False)
        if before.body == after.body:
            break
    else:
        raise AssertionError(
            "the fallback engine answers differently each time"
            + describe(query, variables, token)
            + _diff(before.body, after.body, ("fallback", "fallback again"))
        )
    if compiled.body != after.body:
        raise AssertionError(
            "the engines answer differently"
            + describe(query, variables, token)
            + _diff(after.body, compiled.body, ("fallback", "compiled"))
        )

    assert (after.compiled_delta, after.fallback_delta) == (0, 1), "compiled=False must fall back"
    engine = expected_engine(query, operation_name, after.body)
    counted = (compiled.compiled_delta, compiled.fallback_delta)
    if engine == "fallback":
        assert counted == (0, 1), f"not counted as a fallback: {counted}" + describe(
            query, variables, token
        )
    elif engine == "compiled":
        assert counted == (1, 0), f"not counted as compiled: {counted}" + describe(
            query, variables, token
        )
    return compiled.body

"""Schemathesis against the served app: requests generated from /openapi.json (the v1 routes,
the admin API, health) and from the GraphQL schema, sent over HTTP to a real server with all
its middleware, each case as a fresh signed-in user.

REST: no 5xx, and every answer as the document describes it: status, content type, headers
(those documented are there, and no other), body schema; with Schemathesis' other checks
(schema-valid requests accepted, invalid ones refused, other methods answered 405 with Allow,
credentials enforced). GraphQL: no 5xx, well-formed GraphQL answers, and no errors but those
the schema says a caller can cause.

The same examples every run (derandomized), about 300 cases on each side. FUZZ_EXAMPLES=N
gives every operation N fuzzing examples, and FUZZ_SEED=N draws other examples than the fixed
ones (README, Development).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import zlib
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import graphql
import httpx
import pytest
import schemathesis
from schemathesis import AuthContext, Case, CheckContext, HookContext, Response
from schemathesis.core.failures import Failure
from schemathesis.core.parameters import ParameterLocation
from schemathesis.graphql.checks import GraphQLClientError, GraphQLServerError

from graph.schema import schema as graphql_schema
from resolvers.history import encode_cursor
from sessions_config.resources import Resources, open_resources
from sessions_config.settings import Settings
from sessions_http.openapi import document
from store import admin
from store.models import utcnow
from store.sessions import NewSession
from tests.app_client import GRAPHQL_RESPONSE
from tests.conftest import Users
from tests.servers import serve

T = TypeVar("T")

# Fuzzing examples per operation; the coverage phase adds a fixed set of its own to each (its
# boundary values, and what the document calls invalid). About 300 cases in all on each side:
# operations with few inputs run out of distinct examples before their number.
REST_EXAMPLES = {
    "GET /v1/users/me/sessions": 40,
    "DELETE /v1/users/me/sessions": 5,
    "DELETE /v1/users/me/sessions/{session_id}": 25,
    "GET /admin/v1/users/{user_id}/sessions": 25,
    "DELETE /admin/v1/users/{user_id}/sessions": 20,
    "GET /admin/v1/sessions/{session_id}": 15,
    "DELETE /admin/v1/sessions/{session_id}": 15,
    "GET /admin/v1/audit": 20,
    "GET /healthz": 1,
    "GET /readyz": 1,
}
GRAPHQL_EXAMPLES = {
    "Query.me": 200,
    "Mutation.revokeSession": 90,
    "Mutation.revokeOtherSessions": 10,
}


def _config(examples: dict[str, int], fuzzing_mode: str) -> schemathesis.Config:
    more = os.environ.get("FUZZ_EXAMPLES")
    seed = os.environ.get("FUZZ_SEED")
    return schemathesis.Config.from_dict(
        {
            **({"seed": int(seed)} if seed else {}),
            # Hypothesis' one health check that measures time: on a busy machine, a flake.
            "suppress-health-check": ["too_slow"],
            "request-timeout": 10,
            "generation": {"deterministic": not seed, "database": "none"},
            "phases": {"fuzzing": {"generation": {"mode": fuzzing_mode}}},
            "operations": [
                {
                    "include-name": name,
                    "generation": {"max-examples": int(more) if more else count},
                }
                for name, count in examples.items()
            ],
        }
    )


# The document and schema the app serves (test_the_fuzzed_document_is_the_served_one), read at
# collection, when Schemathesis makes the coverage phase's cases (its loader from a fixture, which
# could read them from the server, fails on pytest 9.2). A copy, as Schemathesis may change what
# it is given, and the app serves this very dict. On pytest 9.2 every operation's item has the
# test's name for its node id; a failure's report names the operation.
#
# REST's fuzzing phase sends schema-valid requests only, so that they are signed in: those the
# document calls invalid (no cookie or key, numbers out of range, other methods) are the
# coverage phase's. GraphQL's sends both: invalid documents carry the cookie too.
DOCUMENT = document()
REST = schemathesis.openapi.from_dict(
    json.loads(json.dumps(DOCUMENT)), config=_config(REST_EXAMPLES, "positive")
)
GRAPHQL = schemathesis.graphql.from_file(
    graphql_schema.as_str(), config=_config(GRAPHQL_EXAMPLES, "all")
)

# The credentials until the test puts a fresh user's in (bind): Schemathesis asks for them as
# it makes a case, for some at collection, before there is a database.
PENDING = "pending-credentials"


class PendingCredentials:
    """Puts credentials where the document says they go (the psession cookie, an admin key):
    Schemathesis then knows which cases carry them, and checks that they are needed."""

    def get(self, case: Case, ctx: AuthContext) -> str | None:
        # None for an operation that needs none (health).
        return PENDING if ctx.operation.definition.raw.get("security") else None

    def set(self, case: Case, data: str, ctx: AuthContext) -> None:
        if case.operation.path.startswith("/admin/"):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
        else:
            case.cookies = {**(case.cookies or {}), "psession": data}


REST.auth(refresh_interval=None)(PendingCredentials)

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"


@dataclass(frozen=True)
class FuzzUser:
    """A user with a current session (the cookie), another active one and an ended one."""

    user_id: str
    token: str
    current_id: str
    other_id: str
    cursor: str  # of their history's first page


class Minter:
    """Makes users on the run's database and Redis for sync test code: the store is async, so
    it runs on an event loop in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = AsyncExitStack()
        self.admin_key = ""

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)

    def __enter__(self) -> Minter:
        self._thread.start()
        self._resources: Resources = self._run(
            self._stack.enter_async_context(open_resources(self._settings))
        )
        scopes: list[admin.Scope] = ["sessions:read", "sessions:write"]
        pool = self._resources.store.pool
        _, self.admin_key = self._run(admin.create_key(pool, name="fuzz", scopes=scopes))
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self._stack.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def user(self) -> FuzzUser:
        return self._run(self._user())

    async def _user(self) -> FuzzUser:
        user_id = Users.new_id()
        now = utcnow()
        # Fixed addresses, so that answers are alike from run to run: one located, one private
        # (geo null), one IPv6.
        current, other, past = await self._resources.store.create_many(
            [
                NewSession(user_id=user_id, ip="81.2.69.142", user_agent=DESKTOP),
                NewSession(user_id=user_id, ip="10.0.0.1", user_agent="curl/8.5.0"),
                NewSession(
                    user_id=user_id,
                    ip="2001:4860:4860::8888",
                    user_agent=PHONE,
                    created_at=now - timedelta(days=2),
                    ended_at=now - timedelta(days=1),
                    end_reason="logout",
                ),
            ]
        )
        return FuzzUser(
            user_id, current.token, current.record.id, other.record.id, encode_cursor(past.record)
        )


@pytest.fixture(scope="module")
def fuzz_server(settings: Settings, database: str, redis_keyspace: str) -> Iterator[str]:
    """An app of this module's own: the cases without an admin key, or with a wrong one, would
    make the admin API refuse loopback for a minute (429, counted per address), here and in
    the modules after this one. Its /readyz waits longer than the default 2 s before it calls
    a dependency unavailable (a 503 that a busy machine, not the service, would cause); and
    it runs no event workers (the run's other apps sweep and dispatch)."""
    fuzzing = {
        "admin_auth_failures_per_minute": 10_000,
        "ready_timeout": 15.0,
        "event_workers": False,
    }
    with serve(settings.model_copy(update=fuzzing)) as url:
        yield url


@pytest.fixture(scope="module")
def minter(settings: Settings, database: str, redis_keyspace: str) -> Iterator[Minter]:
    with Minter(settings) as made:
        yield made


def _pick(value: object, choices: tuple[str, ...]) -> str | None:
    """One of `choices`, or None (keep the generated value), as a function of the generated
    value: a case picks the same each time, so that a failure replays."""
    pick = zlib.crc32(str(value).encode()) % (len(choices) + 1)
    return choices[pick - 1] if pick else None


QUERY = ParameterLocation.QUERY
PATH = ParameterLocation.PATH


def bind(case: Case, user: FuzzUser, admin_key: str) -> None:
    """Makes the case the user's: their cookie or the admin key where the pending ones are
    (not where Schemathesis left them out or put wrong ones); in schema-valid parameters, now
    and then the ids of their sessions and their own (else every id is unknown: 404s and empty
    lists), and a real cursor as `after` (a cursor is opaque: no document can say which ones the
    API gave out, and it refuses the others)."""
    if case.cookies and case.cookies.get("psession") == PENDING:
        case.cookies["psession"] = user.token
    if case.headers and case.headers.get("Authorization") == f"Bearer {PENDING}":
        case.headers["Authorization"] = f"Bearer {admin_key}"
    assert case.meta is not None
    if case.query and case.query.get("after") and not case.meta.is_negative_at(QUERY):
        case.query["after"] = user.cursor
    if case.path_parameters and not case.meta.is_negative_at(PATH):
        params = case.path_parameters
        if "session_id" in params:
            own = _pick(params["session_id"], (user.other_id, user.current_id))
            params["session_id"] = own or params["session_id"]
        if "user_id" in params:
            params["user_id"] = _pick(params["user_id"], (user.user_id,)) or params["user_id"]


# Added to every answer by the HTTP server, or about the body (content-type is Schemathesis'
# own check), or the CORS middleware's to any request with an Origin (a browser's protocol,
# README "Cross-site requests"): not the API's to document.
TRANSPORT_HEADERS = {"content-type", "content-length", "date", "server", "connection", "vary"}


def no_undocumented_headers(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The answer has no header that the document does not name for its status: Schemathesis
    checks that the documented ones are there, not that the others are documented."""
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    described = operation["responses"].get(str(response.status_code))
    if described is None:
        return None  # an undocumented status: status_code_conformance fails it
    documented = {name.lower() for name in described.get("headers", {})}
    extra = sorted(
        name
        for name in set(response.headers) - documented - TRANSPORT_HEADERS
        if not name.startswith("access-control-")
    )
    assert not extra, f"{response.status_code} has headers the document does not name: {extra}"
    return True


@REST.parametrize()
def test_the_rest_routes_answer_as_documented(case: Case, fuzz_server: str, minter: Minter) -> None:
    bind(case, minter.user(), minter.admin_key)
    # The Origin the portal's page sends (cross-site ones are test_origin_check.py's).
    case.call_and_validate(
        base_url=fuzz_server,
        headers={"Origin": fuzz_server},
        additional_checks=[no_undocumented_headers],
    )


# The GraphQL errors the schema documents as the caller's doing, by code and the field they
# null. Schemathesis takes an error with a `path` for the server's unless its code is one it
# knows (Apollo's), and an argument the schema cannot bound (`first` over 200) for a valid
# request refused. Every other error fails: UNAUTHENTICATED with the fresh cookie, UNAVAILABLE,
# RATE_LIMITED (the requests are sequential), or one without a code ("Unexpected error.", a
# failure of our own).
CALLERS_ERRORS = {
    ("BAD_USER_INPUT", "history"),
    ("NOT_FOUND", "revokeSession"),
    ("CURRENT_SESSION", "revokeSession"),
}


def _callers_error(error: dict[str, Any]) -> bool:
    code = (error.get("extensions") or {}).get("code")
    path = error.get("path") or [None]
    return (code, path[-1]) in CALLERS_ERRORS


@GRAPHQL.hook
def filter_failure(ctx: HookContext, failure: Failure, case: Case, response: Response) -> bool:
    if isinstance(failure, (GraphQLServerError, GraphQLClientError)):
        return not all(_callers_error(error) for error in failure.errors)
    return True


def bind_graphql(case: Case, user: FuzzUser) -> None:
    """The user's cookie; in schema-valid documents, now and then the ids of their sessions as
    `revokeSession`'s id, and a real cursor as `after` (as bind does)."""
    case.cookies = {"psession": user.token}
    assert case.meta is not None and isinstance(case.body, str)
    if case.meta.generation.mode.is_negative:
        return

    class OwnIds(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> Any:
            if not isinstance(node.value, graphql.StringValueNode):
                return None
            own: str | None = None
            if node.name.value == "after":
                own = user.cursor
            elif node.name.value == "id":
                own = _pick(node.value.value, (user.other_id, user.current_id))
            if own is None:
                return None
            return graphql.ArgumentNode(name=node.name, value=graphql.StringValueNode(value=own))

    case.body = graphql.print_ast(graphql.visit(graphql.parse(case.body), OwnIds()))


@GRAPHQL.parametrize()
def test_graphql_answers_are_well_formed(case: Case, fuzz_server: str, minter: Minter) -> None:
    bind_graphql(case, minter.user())
    headers = {"Origin": fuzz_server, "Accept": GRAPHQL_RESPONSE}
    case.call_and_validate(base_url=f"{fuzz_server}/graphql", headers=headers)


def test_the_fuzzed_document_is_the_served_one(fuzz_server: str) -> None:
    served = httpx.get(f"{fuzz_server}/openapi.json", timeout=10).json()
    assert served == json.loads(json.dumps(DOCUMENT))

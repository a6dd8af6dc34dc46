"""The documents both engines must answer alike: those the service itself sends (the REST shim's,
GraphiQL's default query), the README's examples (read from the files, so they stay in step), and
hand-written ones for each part of the language and each error the API gives."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from graphql import OperationDefinitionNode, get_introspection_query, parse
from strawberry.types.graphql import OperationType

from sessions_http.rest import REVOKE_DOCUMENT, REVOKE_OTHERS_DOCUMENT, SESSIONS_DOCUMENT
from tests.graph.differential import CURSOR_MARK, QUERIES_AND_MUTATIONS, Actor

ROOT = Path(__file__).resolve().parents[2]

# Who asks: the seeded user; no cookie; a well-formed unknown token; a malformed one; a user
# made afresh for each run (for mutations).
Who = Literal["user", "nobody", "wrong", "malformed", "fresh"]
# What answers: the run's Postgres and Redis with the ip-api test provider, the same with the
# offline provider, or the first with Postgres or Redis where nothing listens.
Storage = Literal["up", "offline_geo", "postgres_down", "redis_down"]


@dataclass(frozen=True)
class Case:
    id: str
    query: str
    variables: Mapping[str, Any] | Callable[[Actor], Mapping[str, Any]] | None = None
    who: Who = "user"
    operation_name: str | None = None
    allowed: tuple[OperationType, ...] = QUERIES_AND_MUTATIONS
    storage: Storage = "up"
    # Checks of what the user sees, beyond "both engines agree", on the answer.
    check: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)


def cursor(n: int) -> str:
    """The cursor of the seeded user's n-th past session, newest first (see World.resolve)."""
    return CURSOR_MARK.format(n)


# -- from the project's own files --------------------------------------------------------------


def graphiql_default_query() -> str:
    """The query GraphiQL opens with: the JS array of lines in its index.html, joined."""
    html = (ROOT / "sessions_http/static/graphiql/index.html").read_text()
    array = re.search(r"var defaultQuery = \[(.*?)\]\.join\('\\n'\)", html, re.DOTALL)
    assert array is not None, "GraphiQL's defaultQuery not found in index.html"
    lines = re.findall(r"'((?:[^'\\]|\\.)*)'", array.group(1))
    assert lines, "GraphiQL's defaultQuery has no lines"
    return "\n".join(line.replace("\\'", "'") for line in lines)


def readme_blocks() -> list[str]:
    blocks = re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert blocks, "no ```graphql block in README.md"
    return blocks


def readme_cases() -> list[Case]:
    """Each block as written (several operations: an error), and each of its operations alone;
    mutations as a user of their own."""
    cases: list[Case] = []
    for b, block in enumerate(readme_blocks()):
        cases.append(Case(f"readme{b}-whole", block))
        for o, definition in enumerate(parse(block).definitions):
            assert definition.loc is not None
            text = block[definition.loc.start : definition.loc.end]
            mutation = (
                isinstance(definition, OperationDefinitionNode)
                and definition.operation.value == "mutation"
            )
            cases.append(Case(f"readme{b}-op{o}", text, who="fresh" if mutation else "user"))
            # The README leaves $cursor undeclared (an error as written); declared, it runs.
            if "$cursor" in text and text.startswith("query {"):
                declared = text.replace("query {", "query Readme($cursor: String) {", 1)
                cases.append(Case(f"readme{b}-op{o}-declared", declared))
                cases.append(
                    Case(f"readme{b}-op{o}-paged", declared, variables={"cursor": cursor(1)})
                )
    return cases


def rest_cases() -> list[Case]:
    only_queries = (OperationType.QUERY,)
    return [
        *(
            Case(
                f"rest-sessions-limit{limit}",
                SESSIONS_DOCUMENT,
                variables={"historyLimit": limit},
                allowed=only_queries,
            )
            for limit in (0, 3, 50)
        ),
        Case(
            "rest-revoke-foreign-id",
            REVOKE_DOCUMENT,
            variables=lambda actor: {"id": actor.foreign_session_id},
            who="fresh",
        ),
        Case(
            "rest-revoke-own",
            REVOKE_DOCUMENT,
            variables=lambda actor: {"id": actor.other_session_id},
            who="fresh",
        ),
        Case("rest-revoke-others", REVOKE_OTHERS_DOCUMENT, who="fresh"),
        Case(
            "rest-revoke-over-get",
            REVOKE_OTHERS_DOCUMENT,
            who="fresh",
            allowed=only_queries,
        ),
    ]


# -- hand-written ------------------------------------------------------------------------------

SESSION_FIELDS = """
  id tokenSuffix createdAt expiresAt lastSeenAt clientIp userAgent isCurrent
  device { browser browserVersion os osVersion deviceType isMobile }
  geo { city regionName countryCode lat lon isp org isMobile isProxy isHosting }
"""
HISTORY_FIELDS = """
  id tokenSuffix createdAt endedAt endReason clientIp userAgent
  device { browser browserVersion os osVersion deviceType isMobile }
  geo { city regionName countryCode lat lon isp org isMobile isProxy isHosting }
"""

EVERYTHING = f"""
query Everything {{
  me {{
    id
    sessions {{ {SESSION_FIELDS} isNewLocation impossibleTravel }}
    history(first: 200) {{
      edges {{ cursor node {{ {HISTORY_FIELDS} }} }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}
"""

PAGE = """
query Page($first: Int, $after: String) {
  me { history(first: $first, after: $after) {
    edges { cursor node { id endReason createdAt } }
    pageInfo { hasNextPage endCursor }
  } }
}
"""

SKIP_INCLUDE_VARIABLES = """
query Toggles($yes: Boolean!, $no: Boolean!) {
  me {
    id @skip(if: $yes)
    idAgain: id @include(if: $yes)
    sessions @include(if: $no) { id }
    history(first: 2) @skip(if: $no) {
      edges { node { id geo @include(if: $yes) { countryCode } device @skip(if: $yes) { os } } }
      pageInfo @include(if: $yes) { hasNextPage }
    }
    ... on Me @skip(if: $yes) { sessionsInFragment: sessions { id } }
    ... @include(if: $yes) { included: sessions { clientIp } }
    ...Ids @include(if: $yes)
    ...Ids @skip(if: $yes)
  }
}
fragment Ids on Me { sessions { tokenSuffix } }
"""


def _unauthenticated(answer: dict[str, Any]) -> None:
    assert answer["data"] == {"me": None}, answer
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["UNAUTHENTICATED"], answer


def _bad_user_input(answer: dict[str, Any]) -> None:
    assert answer["data"]["me"]["history"] is None, answer
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"], answer


HAND_WRITTEN: list[Case] = [
    Case("everything", EVERYTHING),
    Case("everything-offline-geo", EVERYTHING, storage="offline_geo"),
    Case("me-id", "{ me { id } }"),
    Case("typename-root", "{ __typename }"),
    Case(
        "typename-everywhere",
        """
        { __typename me { __typename id sessions { __typename id device { __typename os }
          geo { __typename countryCode } } history(first: 3) { __typename
          edges { __typename cursor node { __typename id device { __typename deviceType }
          geo { __typename isp } } } pageInfo { __typename hasNextPage } } } }
        """,
    ),
    Case(
        "aliases",
        """
        { who: me { userId: id active: sessions { key: id ip: clientIp
          where: geo { cc: countryCode } kind: device { t: deviceType } }
          past: history { list: edges { at: cursor
          item: node { key: id why: endReason } } info: pageInfo { more: hasNextPage } } } }
        """,
    ),
    Case(
        "same-field-twice",
        """
        { me { newest: history(first: 1) { edges { node { id } } pageInfo { endCursor } }
               three: history(first: 3) { edges { node { id endReason } } }
               none: history(first: 0) { edges { node { id } } pageInfo { hasNextPage endCursor } }
               again: history(first: 1) { edges { cursor } }
               a: sessions { id } b: sessions { clientIp isCurrent }
               id id } }
        """,
    ),
    Case(
        "merged-selections",
        """
        { me { sessions { id geo { countryCode } } sessions { geo { isp } device { os } }
               history(first: 4) { edges { node { id } } }
               history(first: 4) { edges { cursor } } } }
        """,
    ),
    Case(
        "named-fragments",
        f"""
        query Named {{ me {{ ...MeParts sessions {{ ...SessionParts }} }} }}
        fragment MeParts on Me {{ id history(first: 5) {{ ...Connection }} }}
        fragment Connection on HistoryConnection {{ edges {{ cursor node {{ ...Past }} }}
          pageInfo {{ ...Info }} }}
        fragment Past on History {{ {HISTORY_FIELDS} }}
        fragment Info on PageInfo {{ hasNextPage endCursor }}
        fragment SessionParts on Session {{ {SESSION_FIELDS} ...Device }}
        fragment Device on Session {{ device {{ ...DeviceFields }} }}
        fragment DeviceFields on Device {{ deviceType isMobile }}
        """,
    ),
    Case(
        "nested-fragments-overlapping",
        """
        { me { ...A ...B } }
        fragment A on Me { sessions { id ...C } }
        fragment B on Me { sessions { clientIp ...C geo { ...G } } }
        fragment C on Session { isCurrent geo { ...G countryCode } }
        fragment G on Geo { isp org }
        """,
    ),
    Case(
        "inline-fragments",
        """
        { me { ... on Me { id } ... { sessions { ... on Session { id } ... { clientIp }
          device { ... on Device { os } ... { browser } } } }
          history(first: 2) { ... on HistoryConnection { edges { node { ... on History { id }
          ... { endReason } } } } ... { pageInfo { hasNextPage } } } } }
        """,
    ),
    Case(
        "skip-include-literals",
        """
        { me { id @skip(if: true) sessions @include(if: true) { id @include(if: false)
          clientIp @skip(if: false) geo @skip(if: true) { isp } }
          history(first: 2) @include(if: false) { edges { cursor } }
          ... @skip(if: true) { hidden: id } ... on Me @include(if: true) { shown: id }
          ...F @skip(if: false) ...G @include(if: false) } }
        fragment F on Me { fromF: sessions { tokenSuffix } }
        fragment G on Me { fromG: sessions { tokenSuffix } }
        """,
    ),
    Case("skip-include-vars-true-false", SKIP_INCLUDE_VARIABLES, {"yes": True, "no": False}),
    Case("skip-include-vars-false-true", SKIP_INCLUDE_VARIABLES, {"yes": False, "no": True}),
    Case("skip-include-vars-all-true", SKIP_INCLUDE_VARIABLES, {"yes": True, "no": True}),
    Case(
        "skip-and-include-together",
        """
        query Both($a: Boolean!, $b: Boolean!) { me { x: id @skip(if: $a) @include(if: $b)
          y: id @include(if: $a) @skip(if: $b) } }
        """,
        {"a": False, "b": True},
    ),
    Case("page-1", PAGE, {"first": 2}),
    Case("page-2", PAGE, {"first": 2, "after": cursor(1)}),
    Case("page-last", PAGE, {"first": 200, "after": cursor(7)}),
    Case("page-after-last", PAGE, {"first": 2, "after": cursor(8)}),
    Case("page-defaults-omitted", PAGE, {}),
    Case("page-nulls", PAGE, {"first": None, "after": None}),
    Case(
        "two-pages-in-one",
        """
        query Two($after: String!) { me {
          one: history(first: 2) { edges { cursor node { id } } pageInfo { endCursor } }
          two: history(first: 2, after: $after) { edges { cursor node { id } } pageInfo {
            endCursor hasNextPage } } } }
        """,
        {"after": cursor(1)},
    ),
    Case(
        "history-default-args",
        "{ me { history { edges { node { id } } pageInfo { hasNextPage } } } }",
    ),
    Case(
        "history-explicit-null-after",
        "{ me { history(first: 3, after: null) { edges { node { id } } } } }",
    ),
    Case(
        "variable-defaults",
        """
        query Defaults($first: Int = 3, $after: String = null, $show: Boolean = true) {
          me { id @include(if: $show)
               history(first: $first, after: $after) { edges { node { id } } } } }
        """,
        {},
    ),
    Case(
        "variable-defaults-overridden",
        """
        query Defaults($first: Int = 3, $after: String = null, $show: Boolean = true) {
          me { id @include(if: $show)
               history(first: $first, after: $after) { edges { node { id } } } } }
        """,
        {"first": 1, "after": cursor(0), "show": False},
    ),
    Case(
        "operation-name-picks-one",
        "query A { me { id } } query B { me { sessions { id } } }",
        operation_name="B",
    ),
    Case("unused-fragment-and-variable", "query Q($x: Int) { me { id } } fragment F on Me { id }"),
    Case("signals", "{ me { sessions { id clientIp isNewLocation impossibleTravel } } }"),
    # -- errors ----------------------------------------------------------------------------
    Case(
        "bad-cursor",
        '{ me { id history(after: "nonsense") { edges { node { id } } } sessions { id } } }',
        check=_bad_user_input,
    ),
    Case(
        "bad-cursor-variable",
        PAGE,
        {"first": 2, "after": "bm9uc2Vuc2U6bm9uc2Vuc2U"},
    ),
    Case(
        "first-negative",
        "{ me { history(first: -1) { edges { cursor } } } }",
        check=_bad_user_input,
    ),
    Case("first-201", "{ me { history(first: 201) { edges { cursor } } } }", check=_bad_user_input),
    Case("first-201-variable", PAGE, {"first": 201}),
    Case(
        "two-bad-histories",
        """
        { me { id a: history(first: -1) { edges { cursor } }
          b: history(after: "x") { edges { cursor } }
          c: history(first: 1) { edges { cursor } } } }
        """,
    ),
    Case("first-not-32-bit", PAGE, {"first": 2**31}),
    Case("first-wrong-type", PAGE, {"first": "ten"}),
    Case("missing-required-variable", SKIP_INCLUDE_VARIABLES, {"yes": True}),
    Case("unauthenticated-no-token", EVERYTHING, who="nobody", check=_unauthenticated),
    Case("unauthenticated-wrong-token", EVERYTHING, who="wrong", check=_unauthenticated),
    Case("unauthenticated-malformed-token", "{ me { id } }", who="malformed"),
    Case("unauthenticated-typename", "{ __typename me { __typename id } }", who="nobody"),
    Case("syntax-error", "{ me { id "),
    Case("unknown-field", "{ me { id password } }"),
    Case("no-selection-on-object", "{ me }"),
    Case("unknown-argument", "{ me { history(last: 2) { edges { cursor } } } }"),
    Case("undefined-variable", "{ me { history(first: $n) { edges { cursor } } } }"),
    Case("unknown-fragment", "{ me { ...Nowhere } }"),
    Case("fragment-cycle", "{ me { ...A } } fragment A on Me { ...B } fragment B on Me { ...A }"),
    Case("conflicting-aliases", "{ me { x: id x: sessions { id } } }"),
    Case("several-operations", "query A { me { id } } query B { me { id } }"),
    Case("unknown-operation-name", "query A { me { id } }", operation_name="Z"),
    Case(
        "too-many-aliases",
        "{ me { " + " ".join(f"a{i}: id" for i in range(41)) + " } }",
    ),
    Case(
        "operation-name-picks-mutation",
        "query A { me { id } } mutation B { revokeOtherSessions }",
        operation_name="B",
        who="fresh",
    ),
    Case("graphiql-introspection", get_introspection_query(descriptions=True)),
    Case(
        "introspection",
        '{ __schema { queryType { name } } __type(name: "Me") { fields { name } } }',
    ),
    Case(
        "signals-postgres-down",
        "{ me { sessions { id isNewLocation impossibleTravel } } }",
        storage="postgres_down",
    ),
    Case("everything-postgres-down", EVERYTHING, storage="postgres_down"),
    Case("page-postgres-down", PAGE, {"first": 2, "after": cursor(1)}, storage="postgres_down"),
    Case("everything-redis-down", EVERYTHING, storage="redis_down"),
    Case(
        "revoke-foreign-id",
        "mutation Revoke($id: ID!) { revokeSession(id: $id) }",
        variables=lambda actor: {"id": actor.foreign_session_id},
        who="fresh",
    ),
    Case("revoke-not-an-id", 'mutation { revokeSession(id: "…") }', who="fresh"),
    Case(
        "revoke-current",
        "mutation Revoke($id: ID!) { revokeSession(id: $id) }",
        variables=lambda actor: {"id": actor.current_session_id},
        who="fresh",
    ),
    Case("revoke-unauthenticated", "mutation { revokeOtherSessions }", who="nobody"),
]


def all_cases() -> list[Case]:
    cases = [
        *rest_cases(),
        Case("graphiql-default", graphiql_default_query()),
        *readme_cases(),
        *HAND_WRITTEN,
    ]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases

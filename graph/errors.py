"""Errors a client is meant to see. Each carries a stable `extensions.code`; any other exception
is logged with its traceback and reaches clients only as "Unexpected error."."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

MESSAGE_UNAUTHENTICATED = "Sign in first: no active session for this psession cookie."
MESSAGE_UNAVAILABLE = "This cannot be read right now: part of the storage is not answering."


class ApiError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = MESSAGE_UNAUTHENTICATED) -> None:
        super().__init__(message)


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"


class NotFound(ApiError):
    code = "NOT_FOUND"


class CurrentSession(ApiError):
    code = "CURRENT_SESSION"

    def __init__(
        self,
        message: str = "This is the session making the request; sign out instead of revoking it.",
    ) -> None:
        super().__init__(message)


class RateLimited(ApiError):
    """The user already has as many requests in flight as they may (graph/fairness.py)."""

    code = "RATE_LIMITED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests of yours at once; try again in {retry_after} s.",
            retryAfter=retry_after,
        )


UNAVAILABLE = "UNAVAILABLE"


def unavailable(error: GraphQLError) -> GraphQLError:
    """What a client sees of a storage outage behind this error (logged on our side): where it
    happened, the code UNAVAILABLE, and nothing of our internals."""
    return GraphQLError(
        MESSAGE_UNAVAILABLE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": UNAVAILABLE},
    )

"""Errors a client is meant to see. Each carries a stable `extensions.code`; any other exception
is logged with its traceback and reaches clients only as "Unexpected error."."""

from __future__ import annotations

from graphql import GraphQLError

MESSAGE_UNAUTHENTICATED = "Sign in first: no active session for this psession cookie."


class ApiError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": self.code})


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

"""Why a request is refused, for the client to read: each refusal has a stable code (the
GraphQL layer shows it as `extensions.code`, REST maps it to a status). Any other exception is
a failure of ours, or an outage (store/errors.py), and is never shown as it is."""

from __future__ import annotations

from typing import Any, ClassVar

MESSAGE_UNAUTHENTICATED = "Sign in first: no active session for this psession cookie."


class Refused(Exception):
    code: ClassVar[str]

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        # Shown next to the code (e.g. how long to wait); never anything of our internals.
        self.details = details


class Unauthenticated(Refused):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = MESSAGE_UNAUTHENTICATED) -> None:
        super().__init__(message)


class BadUserInput(Refused):
    code = "BAD_USER_INPUT"


class NotFound(Refused):
    code = "NOT_FOUND"


class CurrentSession(Refused):
    code = "CURRENT_SESSION"

    def __init__(
        self,
        message: str = "This is the session making the request; sign out instead of revoking it.",
    ) -> None:
        super().__init__(message)


class RateLimited(Refused):
    """The user already has as many requests in flight as they may (graph/fairness.py)."""

    code = "RATE_LIMITED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests of yours at once; try again in {retry_after} s.",
            retryAfter=retry_after,
        )


class TooManySubscriptions(Refused):
    """A limit on live subscriptions (SUBSCRIPTIONS_PER_USER, SUBSCRIPTIONS_PER_PROCESS)."""

    code = "TOO_MANY_SUBSCRIPTIONS"

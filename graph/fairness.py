"""Fairness between users: at most USER_MAX_CONCURRENT_REQUESTS requests of one signed-in user
execute at once in this process. One more is refused at once (RATE_LIMITED, 429 on REST) rather
than queued, so one user looping costly queries holds a bounded share of the storage pools and
everyone else's requests keep going. A costly request holds its slot for longer, so the limit
weighs cost too.

The count is per process (each worker of `serve --workers N` counts on its own). Entries exist
only for users with a request in flight, so the bookkeeping never outgrows the requests being
served, and a user's count is keyed by the user id their session belongs to, never by anything
the client sends.

It lives with GraphQL because what it limits is executions: the slot is taken when the context
authenticates the cookie (graph/context.py) and given back when the execution ends, for the
GraphQL endpoint and the REST routes alike (both execute a document).
"""

from __future__ import annotations

import threading

from prometheus_client import Counter

REFUSED = Counter(
    "sessions_api_rate_limited_total",
    "Requests refused because their user already had USER_MAX_CONCURRENT_REQUESTS in flight.",
)


class RequestsInFlight:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        # Apps served from several threads of one process (the tests do) share this object.
        self._lock = threading.Lock()

    def enter(self, user_id: str, *, limit: int) -> bool:
        """Takes a slot for this user; False (and nothing taken) when they hold `limit`."""
        with self._lock:
            count = self._counts.get(user_id, 0)
            if count >= limit:
                REFUSED.inc()
                return False
            self._counts[user_id] = count + 1
            return True

    def leave(self, user_id: str) -> None:
        """Gives back a slot taken by enter()."""
        with self._lock:
            count = self._counts.get(user_id, 0) - 1
            if count > 0:
                self._counts[user_id] = count
            else:
                self._counts.pop(user_id, None)

    def held(self, user_id: str) -> int:
        return self._counts.get(user_id, 0)


# One per process: requests of every app instance in it share it (one in production).
IN_FLIGHT = RequestsInFlight()

"""Redis key names, in one place (docs/DATA.md documents them for other writers).

A user's sessions and their index share one hash tag, `{user:<user_id>}`, so that they live in
one Redis Cluster slot: a session's HASH and its index entry are written by one script, and a
user's whole active list is read by one. A token's pointer (token hash -> user id) has no tag:
it is found by the token alone, and lives wherever its name hashes to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def token(self, token_hash: str) -> str:
        """STRING: the user id of an active session, by its token hash; expires with it."""
        return f"{self.prefix}token:{token_hash}"

    def user_sessions(self, user_id: str) -> str:
        """ZSET of a user's active sessions: member token hash, score expires_at (Unix s)."""
        return f"{self.user_tag(user_id)}:sessions"

    def session(self, user_id: str, token_hash: str) -> str:
        """HASH of one active session; expires by itself at the session's expires_at."""
        return f"{self.session_prefix(user_id)}{token_hash}"

    def session_prefix(self, user_id: str) -> str:
        """What a user's session HASHes are named by, before the token hash (scripts that read
        the index name the HASHes from it)."""
        return f"{self.user_tag(user_id)}:session:"

    def user_tag(self, user_id: str) -> str:
        # Never an empty tag (`{}` would hash the whole name): "user:" is always inside it.
        return f"{self.prefix}{{user:{user_id}}}"

    def geo(self, provider: str, ip: str) -> str:
        """STRING: one provider's cached answer for one IP (JSON), with a TTL."""
        return f"{self.prefix}geo:{provider}:{ip}"

    # The layout before hash tags (`sessions-api migrate-redis` moves sessions from it).

    def legacy_session(self, token_hash: str) -> str:
        return f"{self.prefix}session:{token_hash}"

    def legacy_user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:sessions"

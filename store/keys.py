"""Redis key names, in one place (docs/DATA.md documents them for other writers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def session(self, token_hash: str) -> str:
        """HASH of one active session; expires by itself at the session's expires_at."""
        return f"{self.prefix}session:{token_hash}"

    def user_sessions(self, user_id: str) -> str:
        """ZSET of a user's active sessions: member token hash, score expires_at (Unix s)."""
        return f"{self.prefix}user:{user_id}:sessions"

    def geo(self, provider: str, ip: str) -> str:
        """STRING: one provider's cached answer for one IP (JSON), with a TTL."""
        return f"{self.prefix}geo:{provider}:{ip}"

"""Session tokens: how they are made, hashed and recognised. Only hashes are ever stored."""

from __future__ import annotations

import hashlib
import re
import secrets

SUFFIX_LENGTH = 6
# 32 random bytes: 256 bits, 43 URL-safe characters.
TOKEN_BYTES = 32
# Anything a cookie could reasonably carry as a token; longer or odder values are refused
# before they reach Redis.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-]{16,256}")


def new_token() -> str:
    # Never starting with "-" keeps `--token T` on a command line from reading as an option.
    while (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


def is_well_formed(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None


def hash_token(token: str) -> str:
    """SHA-256 of the token, as 64 lowercase hex digits: the session's key everywhere."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_suffix(token: str) -> str:
    return token[-SUFFIX_LENGTH:]

-- Every session ever created. Active sessions also live in Redis; this table is the record.
CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    user_id      text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    -- SHA-256 of the token, 64 lowercase hex digits. The token itself is never stored.
    token_hash   text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    token_suffix text        NOT NULL CHECK (length(token_suffix) BETWEEN 1 AND 6),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text        CHECK (end_reason IN ('logout', 'revoked', 'expired')),
    client_ip    inet        NOT NULL,
    user_agent   text        NOT NULL DEFAULT '',
    CHECK (expires_at >= created_at),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

-- History pages: one user's sessions, newest first, keyset-paginated on (created_at, id).
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at DESC, id DESC);

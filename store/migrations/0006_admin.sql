-- The admin API (README, "For login services and support"): its keys, and the audit trail of
-- what admins, users and the CLI did to sessions.
CREATE TABLE admin_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- SHA-256 of the key, in hex: the key itself is shown once, when it is made, and kept
    -- nowhere.
    key_hash     text        NOT NULL UNIQUE,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Updated at most once a minute.
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE audit_log (
    seq               bigserial   PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    -- 'admin' (with the key's name and id), 'user' (the session's own user, through GraphQL or
    -- REST) or 'cli'.
    actor_type        text        NOT NULL CHECK (actor_type IN ('admin', 'user', 'cli')),
    actor_name        text,
    actor_key_id      uuid,
    -- session.revoked, session.ended, user.sessions.revoked, user.sessions.viewed,
    -- session.viewed, audit.viewed
    action            text        NOT NULL,
    target_user_id    text,
    target_session_id uuid,
    request_id        text,
    client_addr       text,
    details           jsonb
);
-- `GET /admin/v1/audit?user_id=`, newest first.
CREATE INDEX audit_log_user_idx ON audit_log (target_user_id, seq DESC);
-- Pruning by age.
CREATE INDEX audit_log_at_idx ON audit_log (at);

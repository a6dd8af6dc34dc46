-- The outbox of session events: one row per session created, and one when it ends (logged out,
-- revoked, or expired), written in the same transaction as the change to `sessions` itself, so
-- that no change is ever without its event (docs/DATA.md). Deliveries read it in `seq` order.
CREATE TABLE session_events (
    seq         bigserial   PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE,
    type        text        NOT NULL CHECK (type IN ('session.created', 'session.ended',
                                                     'session.revoked', 'session.expired')),
    -- An event goes with its session: undoing a failed write, forgetting a user or pruning
    -- history removes both.
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id     text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- The session's stored fields when it happened (never the token or its hash).
    data        jsonb       NOT NULL
);

-- At most one creation and one end per session: a second writer ending the same session, or
-- the expiry sweep meeting an end, adds nothing (INSERT ... ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX session_events_created_once ON session_events (session_id)
    WHERE type = 'session.created';
CREATE UNIQUE INDEX session_events_ended_once ON session_events (session_id)
    WHERE type <> 'session.created';
-- Removing a session's events with it (the cascade) finds them by session.
CREATE INDEX session_events_session_idx ON session_events (session_id);
-- `webhooks replay --since`.
CREATE INDEX session_events_occurred_idx ON session_events (occurred_at);

-- How far the expiry sweep has looked: every session whose expires_at is at or before
-- `swept_to` and that had not ended then has its session.expired event.
CREATE TABLE session_expiry_sweep (
    only_row  boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    swept_to  timestamptz NOT NULL
);

-- Webhook endpoints, and one delivery per event and endpoint (docs/WEBHOOKS.md).
CREATE TABLE webhook_endpoints (
    id          uuid        PRIMARY KEY,
    url         text        NOT NULL,
    -- The event types it wants; empty: every type.
    event_types text[]      NOT NULL DEFAULT '{}',
    -- The signing secret (whsec_ and base64), which the receiver holds too.
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when the endpoint answered 410 Gone: nothing more is sent to it.
    disabled_at timestamptz,
    disabled_reason text
);

-- An event is fanned out once: a delivery row for each endpoint that wants it, and its payload
-- (the webhook body, with device, geolocation and signals) kept, so that every attempt and
-- every replay sends the same body.
ALTER TABLE session_events ADD COLUMN fanned_out_at timestamptz;
ALTER TABLE session_events ADD COLUMN payload jsonb;
CREATE INDEX session_events_not_fanned_out ON session_events (seq) WHERE fanned_out_at IS NULL;

CREATE TABLE webhook_deliveries (
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_seq       bigint      NOT NULL REFERENCES session_events (seq) ON DELETE CASCADE,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    finished_at     timestamptz,
    PRIMARY KEY (endpoint_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_seq);

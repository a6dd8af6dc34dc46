-- Live updates (GraphQL subscriptions): every session event, once its transaction commits, is
-- announced on the channel `session_events`, so that each serving process hears of it at once,
-- whichever process, host or language wrote it. The payload names the event and whose it is;
-- a listener with nobody of that user subscribed reads nothing more. A NOTIFY is sent at
-- commit, and never for a transaction that rolled back.
CREATE FUNCTION session_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('session_events', json_build_object(
        'seq', NEW.seq, 'type', NEW.type, 'session_id', NEW.session_id, 'user_id', NEW.user_id
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER session_events_notify AFTER INSERT ON session_events
    FOR EACH ROW EXECUTE FUNCTION session_events_notify();

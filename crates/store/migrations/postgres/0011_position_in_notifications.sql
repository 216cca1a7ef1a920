-- A notification on deadbolt_changes carries the change log's position after the statement that
-- sent it, so that a listening process learns the position the moment the notification arrives,
-- without a read (until now the payload was empty and every listener read the position after
-- each one). Notifications are delivered after the commit, so the position they carry is
-- committed, and with it every smaller sequence number (the log's turn is held to the commit).
-- A statement that logged nothing carries the last committed position: never ahead of the log.
CREATE OR REPLACE FUNCTION deadbolt_change_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deadbolt_changes', (SELECT COALESCE(MAX(seq), 0) FROM change_log)::text);
    RETURN NULL;
END
$$;
-- Each connected change listener's last position applied, written by the listener itself as it
-- applies one and at least every second: a write is acknowledged only once every listener
-- connected to the database has applied it (or after a short bound), so that a change
-- acknowledged through one replica is enforced by the next check on every other. Rows of
-- listeners gone are ignored (joined with pg_stat_activity) and cleared by the next listener to
-- connect; a listener silent for seconds (its process frozen) is not waited for, as its own
-- process no longer trusts it. UNLOGGED: it describes live sessions only.
CREATE UNLOGGED TABLE change_listeners (
    pid INTEGER PRIMARY KEY,
    heard BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);

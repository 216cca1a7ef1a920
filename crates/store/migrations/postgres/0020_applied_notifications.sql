-- Every record a change listener writes in change_listeners is announced on the channel
-- deadbolt_applied as "pid heard fresh" (fresh: the record's seen_at is within the 3 seconds a
-- listener is waited for). Each process's listener hears them all, so a write learns that every
-- listener has applied it from notifications, without reading change_listeners after its commit
-- (it still does when they do not say so quickly). A trigger, not the listener's statement, so
-- that every writer of the table announces, whichever version of Deadbolt it runs.
CREATE FUNCTION deadbolt_applied_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deadbolt_applied', NEW.pid::text || ' ' || NEW.heard::text || ' ' ||
        CASE WHEN NEW.seen_at > clock_timestamp() - interval '3 seconds' THEN '1' ELSE '0' END);
    RETURN NULL;
END
$$;
CREATE TRIGGER change_listeners_announce AFTER INSERT OR UPDATE ON change_listeners
    FOR EACH ROW EXECUTE FUNCTION deadbolt_applied_announce();

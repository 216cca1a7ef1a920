-- Caches forget only what changed. Every change to what a check reads is logged here by the
-- triggers below, in the transaction of the change (so changes made by hand with psql are
-- logged too), and announced on the channel deadbolt_changes; every process applies the log
-- after the last sequence number it applied and evicts what each row names:
--   app_id and account_key: that account (its key as lookups compare it);
--   app_id alone: the application (its settings, its keys) and all its accounts, also an
--     account whose key is not known yet (a row written by hand, keyed at the next start);
--   person_id: every account of that person (master lock, time zone, the person's schedules);
--   nothing: everything.
CREATE TABLE change_log (
    seq BIGSERIAL PRIMARY KEY,
    app_id TEXT,
    account_key TEXT,
    person_id TEXT
);
-- Rows up to pruned_through may be gone: a process that applied less drops its whole cache.
ALTER TABLE store_version ADD COLUMN pruned_through BIGINT NOT NULL DEFAULT 0;
DROP TRIGGER applications_version ON applications;
DROP TRIGGER signing_keys_version ON signing_keys;
DROP TRIGGER sdk_keys_version ON sdk_keys;
DROP TRIGGER persons_version ON persons;
DROP TRIGGER accounts_version ON accounts;
DROP TRIGGER schedules_version ON schedules;
DROP FUNCTION deadbolt_bump_version();
-- Readers apply the log in sequence order, so sequence order must be commit order: every
-- statement that can log takes the store_version row lock before it touches a row (held to
-- the commit), and takes its sequence numbers after. Taking it first, not last, also means a
-- writer never holds a row another writer waits for while waiting for this lock itself.
CREATE FUNCTION deadbolt_change_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_version SET v = v + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
-- Delivered at commit, once per transaction however many statements sent it.
CREATE FUNCTION deadbolt_change_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deadbolt_changes', '');
    RETURN NULL;
END
$$;
CREATE FUNCTION deadbolt_log_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO change_log (app_id, account_key) VALUES (NEW.app_id, NEW.account_key);
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (app_id, account_key) VALUES (OLD.app_id, OLD.account_key);
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.app_id IS DISTINCT FROM NEW.app_id OR OLD.account_key IS DISTINCT FROM NEW.account_key THEN
            INSERT INTO change_log (app_id, account_key) VALUES (OLD.app_id, OLD.account_key);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION deadbolt_log_application() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO change_log (app_id) VALUES (NEW.id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (app_id) VALUES (OLD.id);
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.id IS DISTINCT FROM NEW.id THEN
            INSERT INTO change_log (app_id) VALUES (OLD.id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION deadbolt_log_signing_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO change_log (app_id) VALUES (NEW.app_id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (app_id) VALUES (OLD.app_id);
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.app_id IS DISTINCT FROM NEW.app_id THEN
            INSERT INTO change_log (app_id) VALUES (OLD.app_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION deadbolt_log_person() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO change_log (person_id) VALUES (NEW.id);
        IF OLD.id IS DISTINCT FROM NEW.id THEN
            INSERT INTO change_log (person_id) VALUES (OLD.id);
        END IF;
    ELSE
        INSERT INTO change_log (person_id) VALUES (OLD.id);
    END IF;
    RETURN NULL;
END
$$;
-- An account's schedule changes that account; a person's schedule (no account) all of theirs.
CREATE FUNCTION deadbolt_log_schedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO change_log (app_id, account_key) SELECT app_id, account_key FROM accounts WHERE id = OLD.account_id;
        IF OLD.account_id IS NULL AND OLD.person_id IS NOT NULL THEN
            INSERT INTO change_log (person_id) VALUES (OLD.person_id);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO change_log (app_id, account_key) SELECT app_id, account_key FROM accounts WHERE id = NEW.account_id;
        IF NEW.account_id IS NULL AND NEW.person_id IS NOT NULL THEN
            INSERT INTO change_log (person_id) VALUES (NEW.person_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_turn BEFORE INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_turn();
CREATE TRIGGER accounts_log AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION deadbolt_log_account();
CREATE TRIGGER accounts_announce AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_announce();
CREATE TRIGGER applications_turn BEFORE INSERT OR UPDATE OR DELETE ON applications FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_turn();
CREATE TRIGGER applications_log AFTER INSERT OR UPDATE OR DELETE ON applications FOR EACH ROW EXECUTE FUNCTION deadbolt_log_application();
CREATE TRIGGER applications_announce AFTER INSERT OR UPDATE OR DELETE ON applications FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_announce();
CREATE TRIGGER signing_keys_turn BEFORE INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_turn();
CREATE TRIGGER signing_keys_log AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH ROW EXECUTE FUNCTION deadbolt_log_signing_key();
CREATE TRIGGER signing_keys_announce AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_announce();
-- Of a person, a check reads the master lock and the time zone: a new password or a verified
-- email evicts nothing. A new person changes no check until an account links to it.
CREATE TRIGGER persons_turn BEFORE UPDATE OR DELETE ON persons FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_turn();
CREATE TRIGGER persons_log AFTER UPDATE ON persons FOR EACH ROW
    WHEN (OLD.master_locked IS DISTINCT FROM NEW.master_locked OR OLD.time_zone IS DISTINCT FROM NEW.time_zone OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION deadbolt_log_person();
CREATE TRIGGER persons_delete_log AFTER DELETE ON persons FOR EACH ROW EXECUTE FUNCTION deadbolt_log_person();
CREATE TRIGGER persons_announce AFTER UPDATE OR DELETE ON persons FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_announce();
CREATE TRIGGER schedules_turn BEFORE INSERT OR UPDATE OR DELETE ON schedules FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_turn();
CREATE TRIGGER schedules_log AFTER INSERT OR UPDATE OR DELETE ON schedules FOR EACH ROW EXECUTE FUNCTION deadbolt_log_schedule();
CREATE TRIGGER schedules_announce AFTER INSERT OR UPDATE OR DELETE ON schedules FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_change_announce();
-- Where the log starts: one row, so that a process started now has a position to begin from.
INSERT INTO change_log (app_id, account_key, person_id) VALUES (NULL, NULL, NULL);

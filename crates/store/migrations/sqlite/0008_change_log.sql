-- Caches forget only what changed. Every change to what a check reads is logged here by the
-- triggers below, in the transaction of the change (so changes made by hand with sqlite3 are
-- logged too); every process applies the log after the last sequence number it applied and
-- evicts what each row names:
--   app_id and account_key: that account (its key as lookups compare it);
--   app_id alone: the application (its settings, its keys) and all its accounts, also an
--     account whose key is not known yet (a row written by hand, keyed at the next start);
--   person_id: every account of that person (master lock, time zone, the person's schedules);
--   nothing: everything.
-- AUTOINCREMENT: sequence numbers are never reused, even once old rows are pruned.
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT,
    account_key TEXT,
    person_id TEXT
);
-- Rows up to pruned_through may be gone: a process that applied less drops its whole cache.
ALTER TABLE store_version ADD COLUMN pruned_through INTEGER NOT NULL DEFAULT 0;
-- The change counter's triggers give way to the log (its last sequence number is the counter).
DROP TRIGGER applications_insert_version;
DROP TRIGGER applications_update_version;
DROP TRIGGER applications_delete_version;
DROP TRIGGER signing_keys_insert_version;
DROP TRIGGER signing_keys_update_version;
DROP TRIGGER signing_keys_delete_version;
DROP TRIGGER sdk_keys_insert_version;
DROP TRIGGER sdk_keys_update_version;
DROP TRIGGER sdk_keys_delete_version;
DROP TRIGGER persons_update_version;
DROP TRIGGER persons_delete_version;
DROP TRIGGER accounts_insert_version;
DROP TRIGGER accounts_update_version;
DROP TRIGGER accounts_delete_version;
DROP TRIGGER schedules_insert_version;
DROP TRIGGER schedules_update_version;
DROP TRIGGER schedules_delete_version;
CREATE TRIGGER accounts_insert_log AFTER INSERT ON accounts BEGIN
    INSERT INTO change_log (app_id, account_key) VALUES (NEW.app_id, NEW.account_key);
END;
CREATE TRIGGER accounts_update_log AFTER UPDATE ON accounts BEGIN
    INSERT INTO change_log (app_id, account_key) VALUES (NEW.app_id, NEW.account_key);
    INSERT INTO change_log (app_id, account_key) SELECT OLD.app_id, OLD.account_key
        WHERE OLD.app_id IS NOT NEW.app_id OR OLD.account_key IS NOT NEW.account_key;
END;
CREATE TRIGGER accounts_delete_log AFTER DELETE ON accounts BEGIN
    INSERT INTO change_log (app_id, account_key) VALUES (OLD.app_id, OLD.account_key);
END;
CREATE TRIGGER applications_insert_log AFTER INSERT ON applications BEGIN
    INSERT INTO change_log (app_id) VALUES (NEW.id);
END;
CREATE TRIGGER applications_update_log AFTER UPDATE ON applications BEGIN
    INSERT INTO change_log (app_id) VALUES (NEW.id);
    INSERT INTO change_log (app_id) SELECT OLD.id WHERE OLD.id IS NOT NEW.id;
END;
CREATE TRIGGER applications_delete_log AFTER DELETE ON applications BEGIN
    INSERT INTO change_log (app_id) VALUES (OLD.id);
END;
CREATE TRIGGER signing_keys_insert_log AFTER INSERT ON signing_keys BEGIN
    INSERT INTO change_log (app_id) VALUES (NEW.app_id);
END;
CREATE TRIGGER signing_keys_update_log AFTER UPDATE ON signing_keys BEGIN
    INSERT INTO change_log (app_id) VALUES (NEW.app_id);
    INSERT INTO change_log (app_id) SELECT OLD.app_id WHERE OLD.app_id IS NOT NEW.app_id;
END;
CREATE TRIGGER signing_keys_delete_log AFTER DELETE ON signing_keys BEGIN
    INSERT INTO change_log (app_id) VALUES (OLD.app_id);
END;
-- Of a person, a check reads the master lock and the time zone: a new password or a verified
-- email evicts nothing. A new person changes no check until an account links to it.
CREATE TRIGGER persons_update_log AFTER UPDATE ON persons
WHEN OLD.master_locked IS NOT NEW.master_locked OR OLD.time_zone IS NOT NEW.time_zone OR OLD.id IS NOT NEW.id
BEGIN
    INSERT INTO change_log (person_id) VALUES (NEW.id);
    INSERT INTO change_log (person_id) SELECT OLD.id WHERE OLD.id IS NOT NEW.id;
END;
CREATE TRIGGER persons_delete_log AFTER DELETE ON persons BEGIN
    INSERT INTO change_log (person_id) VALUES (OLD.id);
END;
-- An account's schedule changes that account; a person's schedule (no account) all of theirs.
CREATE TRIGGER schedules_insert_log AFTER INSERT ON schedules BEGIN
    INSERT INTO change_log (app_id, account_key) SELECT app_id, account_key FROM accounts WHERE id = NEW.account_id;
    INSERT INTO change_log (person_id) SELECT NEW.person_id WHERE NEW.account_id IS NULL AND NEW.person_id IS NOT NULL;
END;
CREATE TRIGGER schedules_update_log AFTER UPDATE ON schedules BEGIN
    INSERT INTO change_log (app_id, account_key) SELECT app_id, account_key FROM accounts WHERE id IN (OLD.account_id, NEW.account_id);
    INSERT INTO change_log (person_id) SELECT OLD.person_id WHERE OLD.account_id IS NULL AND OLD.person_id IS NOT NULL;
    INSERT INTO change_log (person_id) SELECT NEW.person_id WHERE NEW.account_id IS NULL AND NEW.person_id IS NOT NULL;
END;
CREATE TRIGGER schedules_delete_log AFTER DELETE ON schedules BEGIN
    INSERT INTO change_log (app_id, account_key) SELECT app_id, account_key FROM accounts WHERE id = OLD.account_id;
    INSERT INTO change_log (person_id) SELECT OLD.person_id WHERE OLD.account_id IS NULL AND OLD.person_id IS NOT NULL;
END;
-- Where the log starts: one row, so that a process started now has a position to begin from.
INSERT INTO change_log (app_id, account_key, person_id) VALUES (NULL, NULL, NULL);

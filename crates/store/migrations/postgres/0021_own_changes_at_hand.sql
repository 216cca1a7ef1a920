-- A server applies its own changes to its check cache from what its transaction logged, without
-- reading the log back after the commit (as on SQLite). For that the transaction must know which
-- rows are its own: the log's position when it took the turn. The turn trigger keeps it in a
-- transaction-local setting, deadbolt.before, set once per transaction, after the store_version
-- row lock is held: every row after that position, up to the commit, is this transaction's (the
-- triggers log only under the turn; a row inserted into change_log directly by hand, without
-- it, is not covered, and such a row is no change to anything a check reads).
CREATE OR REPLACE FUNCTION deadbolt_change_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_version SET v = v + 1 WHERE id = 1;
    IF COALESCE(current_setting('deadbolt.before', true), '') = '' THEN
        PERFORM set_config('deadbolt.before', (SELECT COALESCE(MAX(seq), 0) FROM change_log)::text, true);
    END IF;
    RETURN NULL;
END
$$;

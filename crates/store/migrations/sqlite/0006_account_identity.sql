-- Account identity: one account per name whatever its case or Unicode form.
-- An application compares names either after NFC and full case folding ('case-insensitive',
-- the default, also for applications that existed before) or byte for byte ('exact').
ALTER TABLE applications ADD COLUMN account_names TEXT NOT NULL DEFAULT 'case-insensitive';
-- account_key is the name in the form lookups compare (computed by Deadbolt at start for rows
-- that lack it: SQL has no case folding). Names that already existed and fold to the same key
-- are kept apart by key_dup (1, 2, … after the first) until an operator merges them; a check
-- for any of them answers locked if any of them would. New enrolments always take key_dup 0,
-- so the unique index makes a second spelling of a name the same account.
ALTER TABLE accounts ADD COLUMN account_key TEXT;
ALTER TABLE accounts ADD COLUMN key_dup INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX accounts_key ON accounts (app_id, account_key, key_dup);

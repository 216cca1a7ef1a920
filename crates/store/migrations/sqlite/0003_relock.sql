-- "Lock again after the next sign-in": an account unlocked once is locked again by the check
-- that used it.
ALTER TABLE accounts ADD COLUMN relock_after_use INTEGER NOT NULL DEFAULT 0;

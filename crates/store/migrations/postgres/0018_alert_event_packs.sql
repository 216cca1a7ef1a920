-- A guesser's flood lists up to 20 sign-ins of each of thousands of accounts within seconds.
-- The sign-ins of one account attached together are one row: the latest in the row's own
-- columns (its attempt_id the highest, so "attached after the email was read" still compares
-- one id), the earlier ones, oldest first, in `earlier` as a JSON array of
-- [attempt_id, at, reason, ip, device, location].
ALTER TABLE alert_events ADD COLUMN earlier TEXT;

-- Retention: runs are removed whole once their latest attempt is past the horizon, found by
-- this index oldest first (one seek, whatever the number of applications).
CREATE INDEX attempt_runs_until ON attempt_runs (until_at);
-- The SDK's attempts feed pages an application's attempts by id (`after=`): its runs in id
-- order, without reading other applications' runs.
CREATE INDEX attempt_runs_app_id ON attempt_runs (app_id, last_id);

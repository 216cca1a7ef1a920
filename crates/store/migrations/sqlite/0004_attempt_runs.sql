-- Attempts are appended in runs: the attempts of one application in one written batch get
-- consecutive ids, and one attempt_runs row per run takes the place of a per-attempt index
-- entry (recording an attempt costs about half as much). Every read of an application's attempts
-- goes through its runs. `until_at` is no earlier than any attempt of the run and never goes
-- down from one run of an application to its next: runs in (until_at, last_id) order are the
-- application's attempts in the order they were recorded.
CREATE TABLE attempt_runs (
    last_id INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    until_at INTEGER NOT NULL
);
-- The attempts already recorded, as runs: consecutive ids of one application form one run, and
-- until_at is the latest time of the application's attempts up to the end of the run.
INSERT INTO attempt_runs (last_id, first_id, app_id, until_at)
SELECT last_id, first_id, app_id,
       max(latest) OVER (PARTITION BY app_id ORDER BY last_id ROWS UNBOUNDED PRECEDING)
FROM (
    SELECT max(id) AS last_id, min(id) AS first_id, app_id, max(at) AS latest FROM (
        SELECT id, app_id, at,
               row_number() OVER (ORDER BY id) - row_number() OVER (PARTITION BY app_id ORDER BY id) AS run
        FROM attempts
    ) numbered GROUP BY app_id, run
) runs;
CREATE INDEX attempt_runs_app ON attempt_runs(app_id, until_at, last_id);
DROP INDEX attempts_app_at;

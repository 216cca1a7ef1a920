-- Attempts move into their runs: a run's attempts are one JSON array in `data` (an attempt: at,
-- key id, account, locked, reason, IP, device, location, integration type, integration data),
-- and the i-th has the id first_id + i. Recording a batch writes one row per application
-- instead of one per attempt. The attempts recorded so far are moved in order of id; where ids
-- had gaps, the later attempts of a run take the ids just after the earlier ones.
ALTER TABLE attempt_runs ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempt_runs ADD COLUMN data TEXT NOT NULL DEFAULT '[]';
UPDATE attempt_runs SET
    n = (SELECT count(*) FROM attempts t
         WHERE t.id BETWEEN attempt_runs.first_id AND attempt_runs.last_id AND t.app_id = attempt_runs.app_id),
    data = (SELECT json_group_array(json_array(t.at, t.key_id, t.account, t.locked, t.reason, t.ip,
                                               t.device, t.location, t.integration_type, t.integration_data)
                                    ORDER BY t.id)
            FROM attempts t
            WHERE t.id BETWEEN attempt_runs.first_id AND attempt_runs.last_id AND t.app_id = attempt_runs.app_id);
DROP TABLE attempts;

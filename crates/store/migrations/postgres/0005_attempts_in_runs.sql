-- Attempts move into their runs: a run's attempts are one JSON array in `data` (an attempt: at,
-- key id, account, locked, reason, IP, device, location, integration type, integration data),
-- and the i-th has the id first_id + i. Recording a batch writes one row per application
-- instead of one per attempt. The attempts recorded so far are moved in order of id; where ids
-- had gaps, the later attempts of a run take the ids just after the earlier ones.
ALTER TABLE attempt_runs ADD COLUMN n BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attempt_runs ADD COLUMN data TEXT NOT NULL DEFAULT '[]';
UPDATE attempt_runs r SET n = moved.n, data = moved.data
FROM (
    SELECT r2.last_id, count(*) AS n,
           json_agg(json_build_array(t.at, t.key_id, t.account, t.locked, t.reason, t.ip, t.device,
                                     t.location, t.integration_type, t.integration_data)
                    ORDER BY t.id)::text AS data
    FROM attempt_runs r2
    JOIN attempts t ON t.id BETWEEN r2.first_id AND r2.last_id AND t.app_id = r2.app_id
    GROUP BY r2.last_id
) moved
WHERE r.last_id = moved.last_id;
DROP TABLE attempts;

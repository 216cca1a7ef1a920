-- The audit trail: every change to an account or to a person's locks, who made it (the person,
-- a company admin, the operator, an SDK key, the CLI, a check using an "unlock once"), when, from
-- which client address, and the state before and after. Rows are written in the transaction of
-- the change they record and never updated. Names and ids are copied, not referenced: the
-- trail outlives a merged account. Nothing here is read by a check, so no change-log trigger.
CREATE TABLE audit_trail (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    app_id TEXT,
    account_id TEXT,
    account TEXT,
    person_id TEXT,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    ip TEXT,
    old_state TEXT,
    old_until BIGINT,
    old_once BIGINT,
    new_state TEXT,
    new_until BIGINT,
    new_once BIGINT,
    detail TEXT
);
-- A person's page reads by account and by person, an admin's by application; newest first.
CREATE INDEX audit_trail_account ON audit_trail (account_id, id);
CREATE INDEX audit_trail_person ON audit_trail (person_id, id);
CREATE INDEX audit_trail_app ON audit_trail (app_id, id);

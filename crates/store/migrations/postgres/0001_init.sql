-- Deadbolt schema, version 1. Times are Unix milliseconds; flags are 0/1 integers.
CREATE TABLE companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    issuer_norm TEXT NOT NULL UNIQUE,
    unenrolled TEXT NOT NULL,
    default_state TEXT NOT NULL,
    audit_mode BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX applications_company ON applications(company_id);
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES applications(id),
    secret_enc TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX signing_keys_app ON signing_keys(app_id);
CREATE TABLE sdk_keys (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE persons (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    first_name TEXT,
    last_name TEXT,
    phone TEXT,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    master_locked BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES applications(id),
    account TEXT NOT NULL,
    person_id TEXT REFERENCES persons(id),
    state TEXT NOT NULL,
    unlocked_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (app_id, account)
);
CREATE INDEX accounts_person ON accounts(person_id);
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    person_id TEXT REFERENCES persons(id),
    account_id TEXT REFERENCES accounts(id),
    days BIGINT NOT NULL,
    start_minute BIGINT NOT NULL,
    end_minute BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX schedules_person ON schedules(person_id);
CREATE INDEX schedules_account ON schedules(account_id);
CREATE TABLE attempts (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    app_id TEXT NOT NULL,
    key_id TEXT,
    account TEXT NOT NULL,
    locked BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ip TEXT,
    device TEXT,
    location TEXT,
    integration_type TEXT,
    integration_data TEXT
);
CREATE INDEX attempts_app_at ON attempts(app_id, at);
-- When each signing key last verified a check, kept up to date by the attempt writer.
CREATE TABLE key_usage (
    key_id TEXT PRIMARY KEY,
    last_used_at BIGINT NOT NULL
);
-- Bumped by every change to what a check reads, so caches in any process can tell they are stale.
CREATE TABLE store_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    v BIGINT NOT NULL
);
INSERT INTO store_version (id, v) VALUES (1, 0);
CREATE FUNCTION deadbolt_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_version SET v = v + 1;
    PERFORM pg_notify('deadbolt_changes', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER applications_version AFTER INSERT OR UPDATE OR DELETE ON applications FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();
CREATE TRIGGER signing_keys_version AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();
CREATE TRIGGER sdk_keys_version AFTER INSERT OR UPDATE OR DELETE ON sdk_keys FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();
-- A new person changes no check until an account links to it (an accounts change): no INSERT.
CREATE TRIGGER persons_version AFTER UPDATE OR DELETE ON persons FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();
CREATE TRIGGER accounts_version AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();
CREATE TRIGGER schedules_version AFTER INSERT OR UPDATE OR DELETE ON schedules FOR EACH STATEMENT EXECUTE FUNCTION deadbolt_bump_version();

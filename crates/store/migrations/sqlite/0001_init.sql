-- Deadbolt schema, version 1. Times are Unix milliseconds; flags are 0/1 integers.
CREATE TABLE companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    issuer_norm TEXT NOT NULL UNIQUE,
    unenrolled TEXT NOT NULL,
    default_state TEXT NOT NULL,
    audit_mode INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX applications_company ON applications(company_id);
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES applications(id),
    secret_enc TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX signing_keys_app ON signing_keys(app_id);
CREATE TABLE sdk_keys (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE persons (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    first_name TEXT,
    last_name TEXT,
    phone TEXT,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    master_locked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES applications(id),
    account TEXT NOT NULL,
    person_id TEXT REFERENCES persons(id),
    state TEXT NOT NULL,
    unlocked_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (app_id, account)
);
CREATE INDEX accounts_person ON accounts(person_id);
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    person_id TEXT REFERENCES persons(id),
    account_id TEXT REFERENCES accounts(id),
    days INTEGER NOT NULL,
    start_minute INTEGER NOT NULL,
    end_minute INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX schedules_person ON schedules(person_id);
CREATE INDEX schedules_account ON schedules(account_id);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    key_id TEXT,
    account TEXT NOT NULL,
    locked INTEGER NOT NULL,
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
    last_used_at INTEGER NOT NULL
);
-- Bumped by every change to what a check reads, so caches in any process can tell they are stale.
CREATE TABLE store_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    v INTEGER NOT NULL
);
INSERT INTO store_version (id, v) VALUES (1, 0);
CREATE TRIGGER applications_insert_version AFTER INSERT ON applications BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER applications_update_version AFTER UPDATE ON applications BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER applications_delete_version AFTER DELETE ON applications BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER signing_keys_insert_version AFTER INSERT ON signing_keys BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER signing_keys_update_version AFTER UPDATE ON signing_keys BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER signing_keys_delete_version AFTER DELETE ON signing_keys BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER sdk_keys_insert_version AFTER INSERT ON sdk_keys BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER sdk_keys_update_version AFTER UPDATE ON sdk_keys BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER sdk_keys_delete_version AFTER DELETE ON sdk_keys BEGIN UPDATE store_version SET v = v + 1; END;
-- A new person changes no check until an account links to it (an accounts change): no INSERT trigger.
CREATE TRIGGER persons_update_version AFTER UPDATE ON persons BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER persons_delete_version AFTER DELETE ON persons BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER accounts_insert_version AFTER INSERT ON accounts BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER accounts_update_version AFTER UPDATE ON accounts BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER accounts_delete_version AFTER DELETE ON accounts BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER schedules_insert_version AFTER INSERT ON schedules BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER schedules_update_version AFTER UPDATE ON schedules BEGIN UPDATE store_version SET v = v + 1; END;
CREATE TRIGGER schedules_delete_version AFTER DELETE ON schedules BEGIN UPDATE store_version SET v = v + 1; END;

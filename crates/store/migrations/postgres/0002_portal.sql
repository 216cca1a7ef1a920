-- The portal: who may sign in as what, sessions, one-time links, pairing codes.
-- Nothing here is read by a check, so these tables do not bump store_version.
ALTER TABLE persons ADD COLUMN email_verified_at BIGINT;
-- role 'operator' (company_id '') or 'admin' of a company.
CREATE TABLE portal_roles (
    person_id TEXT NOT NULL REFERENCES persons(id),
    role TEXT NOT NULL,
    company_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (person_id, role, company_id)
);
CREATE INDEX portal_roles_company ON portal_roles(company_id);
-- Session ids and CSRF tokens are random; only the SHA-256 of the session id is kept.
CREATE TABLE portal_sessions (
    id_hash TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX portal_sessions_person ON portal_sessions(person_id);
-- Emailed links (sign-up, invitation, password reset, first operator): hashed, single use.
CREATE TABLE portal_links (
    token_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    email TEXT NOT NULL,
    company_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE pairing_codes (
    code_hash TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

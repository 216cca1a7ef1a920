-- Passkeys (WebAuthn credentials) of portal users, the state of a passkey ceremony between its
-- two requests, and the operator's portal settings. Nothing here is read by a check, so no
-- change-log trigger.
--
-- One row a credential: `credential` is the verifier's whole record of it (public key, counter,
-- flags) as JSON; `credential_id` (base64url) is unique across everyone, so that one
-- authenticator's credential cannot be registered to two people; `counter` is kept beside it so
-- that a sign-in whose counter does not move forward is refused by the update itself, on
-- whichever replica it lands (a cloned authenticator). `user_handle` is the random id the
-- person's authenticators know them by; a passkey sign-in without an email finds them by it.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(id),
    user_handle TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    credential TEXT NOT NULL,
    counter BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_person ON passkeys (person_id);
CREATE INDEX passkeys_user_handle ON passkeys (user_handle);
-- A ceremony (registration, sign-in, second factor) between its two requests: the challenge
-- the browser must sign, kept server-side under the hash of a one-time id, for a few minutes,
-- and taken (deleted) by the request that finishes it, so that it cannot be replayed.
CREATE TABLE passkey_ceremonies (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    person_id TEXT,
    detail TEXT,
    state TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
-- Settings the operator changes in the portal (such as whether admins need a second factor).
CREATE TABLE portal_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

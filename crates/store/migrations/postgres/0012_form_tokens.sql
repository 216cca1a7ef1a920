-- Each portal form carries a one-time token; the hash of its nonce is kept here when the form
-- is sent, so that a refresh or a second click cannot do the same thing twice. Kept until the
-- session the form belonged to could have expired, then pruned.
CREATE TABLE form_tokens (
    id_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX form_tokens_expiry ON form_tokens (expires_at);

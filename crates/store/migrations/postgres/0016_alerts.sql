-- Alerts to people and webhooks to companies when a check is blocked. The check path writes
-- nothing new: a background worker reads attempts after a cursor and queues what to send here,
-- in the same transaction as it moves the cursor, so nothing is lost across restarts or outages.

-- The last attempt id the worker examined. It starts after the attempts already recorded, so
-- that upgrading a store does not email its whole history.
CREATE TABLE alert_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_attempt_id BIGINT NOT NULL
);
INSERT INTO alert_cursor (id, last_attempt_id)
    SELECT 1, COALESCE(MAX(last_id), 0) FROM attempt_runs;

-- Accounts whose person turned alerts off; alerts are on for every other account.
CREATE TABLE alerts_off (
    account_id TEXT PRIMARY KEY,
    changed_at BIGINT NOT NULL
);

-- Emails to send: at most one per person and account a window; blocked attempts arriving
-- while one waits (or within the window after one was sent) join the next one (a digest).
CREATE TABLE alert_mails (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    claimed_until BIGINT,
    sent_at BIGINT,
    -- Blocked sign-ins counted but not listed (a guesser's thousands: the first are listed).
    extra BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX alert_mails_due ON alert_mails (due_at) WHERE sent_at IS NULL;
CREATE INDEX alert_mails_account ON alert_mails (person_id, account_id);

-- The blocked attempts an email tells of, copied: retention may remove the attempt first.
CREATE TABLE alert_events (
    attempt_id BIGINT PRIMARY KEY,
    mail_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    account TEXT NOT NULL,
    reason TEXT NOT NULL,
    ip TEXT,
    device TEXT,
    location TEXT
);
CREATE INDEX alert_events_mail ON alert_events (mail_id, attempt_id);

-- The one-time links of alert emails ("this was me", "this wasn't me"), by hash.
CREATE TABLE alert_links (
    token_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    person_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    attempt_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- A company's webhook: its URL and secret, the secret encrypted under the master key (it must
-- be read back to sign), bound to the webhook's id.
CREATE TABLE webhooks (
    company_id TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Deliveries to a company's webhook: pending (due at due_at), delivered or failed.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL,
    attempt_id BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT,
    last_error TEXT,
    last_try_at BIGINT,
    claimed_until BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_company ON webhook_deliveries (company_id, created_at);

-- The portal's throttle counts, shared by every process on the store so that replicas count the
-- same tries and a restart forgets none. Keys are emails and client addresses: only a keyed hash
-- of each is kept (see the server's throttle). Times are the server's clock, in milliseconds;
-- a row is forgotten (read as absent, and pruned) from forget_at on.
-- Nothing here is read by a check, so this table does not bump store_version.
CREATE TABLE throttle_entries (
    kind TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    open_at INTEGER NOT NULL,
    forget_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
-- The pruner deletes by these.
CREATE INDEX throttle_entries_forget ON throttle_entries (forget_at);
CREATE INDEX throttle_entries_open ON throttle_entries (open_at);

-- Every store open (the server's start and each CLI command) looks for accounts without a lookup
-- key (written by hand, or by an older Deadbolt): this index holds only those, so the look costs
-- nothing instead of a scan of every account.
CREATE INDEX accounts_unkeyed ON accounts (id) WHERE account_key IS NULL;

-- A signing key's label, given at creation, so that an admin rotating keys can tell which
-- hook holds which key ("production pool", "staging"); keys made before have none.
ALTER TABLE signing_keys ADD COLUMN label TEXT NOT NULL DEFAULT '';

-- PostgreSQL only: its turn trigger remembers the change log's position for the transaction, so
-- that a server applies its own changes without reading them back. On SQLite the write lock
-- gives that position already; this file keeps the two engines' migration lists the same.
SELECT 1;

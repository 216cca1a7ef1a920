-- PostgreSQL only: the change listeners' records are announced to every listener. SQLite has no
-- notifications; this file keeps the two engines' migration lists the same.
SELECT 1;

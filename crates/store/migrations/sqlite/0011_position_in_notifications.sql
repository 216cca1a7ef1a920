-- PostgreSQL only: its change notifications carry the change log's position, and its change
-- listeners record what they applied. SQLite has no notifications (processes on one file see
-- changes through the change signal beside it); this file keeps the two engines' migration
-- lists the same.
SELECT 1;

-- migrate: no transaction
-- `sessions-api prune`: history rows by the time they ended (an expired row ends at its
-- expires_at), oldest first. Built CONCURRENTLY: writers go on while it builds. A build cut
-- off leaves an invalid index behind, so it is dropped first when the migration runs again.
DROP INDEX CONCURRENTLY IF EXISTS sessions_end_idx;
CREATE INDEX CONCURRENTLY sessions_end_idx ON sessions ((COALESCE(ended_at, expires_at)));

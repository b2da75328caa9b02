-- Daily counts (store::day_stats): visitors, orders and revenue per UTC day (days since
-- 1970-01-01), added to in batches; days past stats.days_kept are deleted.
CREATE TABLE day_stats (
  day           INTEGER PRIMARY KEY,
  visitors      INTEGER NOT NULL DEFAULT 0,
  orders        INTEGER NOT NULL DEFAULT 0,
  revenue_minor INTEGER NOT NULL DEFAULT 0
);

-- The sessions counted on the current day (hashes of their ids, never the ids), so a session
-- whose pages several nodes served counts once; earlier days' rows are deleted.
CREATE TABLE day_visitors (
  day     INTEGER NOT NULL,
  session INTEGER NOT NULL,
  PRIMARY KEY (day, session)
) WITHOUT ROWID;

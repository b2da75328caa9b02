-- Custom domains a store has claimed but not yet proven it controls. A claim serves nothing;
-- verifying it (an HTTP token at the domain) moves it to `hosts`. Several stores may claim one
-- host; the first to verify gets it and the operator settles disputes. Rows already in `hosts`
-- were mapped before verification existed and stay verified.
CREATE TABLE host_claims (
  host       TEXT NOT NULL,
  store_id   TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
  token      TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (host, store_id)
);

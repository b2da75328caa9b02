-- The node catalog: which stores exist, which hosts serve them, admin credentials, and an index
-- of actor alarms so passivated actors are woken when one falls due.

CREATE TABLE stores (
  id               TEXT PRIMARY KEY,
  admin_token_hash TEXT NOT NULL UNIQUE,   -- sha256 hex of the bearer token; the token is never stored
  created_at       INTEGER NOT NULL
);

-- Lower-case host names (custom domains) mapped to a store; {store}.{base_domain} needs no row.
CREATE TABLE hosts (
  host     TEXT PRIMARY KEY,
  store_id TEXT NOT NULL REFERENCES stores(id) ON DELETE CASCADE
);

-- A hint, written before the actor's own alarm row: it may fire early (the actor re-checks its
-- own table) but never late.
CREATE TABLE alarm_index (
  actor_key TEXT PRIMARY KEY,
  due_ms    INTEGER NOT NULL
);
CREATE INDEX alarm_index_due ON alarm_index(due_ms);

-- Catalog feed: webhooks, upstream sync, and the outbox other nodes drain.

-- The shared secret webhooks are signed with (Shopify's app secret, or ours for the generic
-- format). Lives here, not in the node catalog: it belongs to the store and moves with it.
CREATE TABLE webhook_config (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  secret     TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);

-- Webhook ids already handled (applied, stale or ignored): a repeat answers "duplicate" and
-- applies nothing. Bounded: pruned to 7 days and 10 000 ids.
CREATE TABLE webhook_ids (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id  TEXT NOT NULL UNIQUE,
  received_ms INTEGER NOT NULL
);
CREATE INDEX webhook_ids_received ON webhook_ids(received_ms);

-- Upstream ordering per product: the newest upstream updated_at wins, whatever the arrival
-- order. A deleted product keeps its row (deleted = 1) as a tombstone, so an older update that
-- arrives after the delete does not bring it back. Products without a row are admin-managed.
CREATE TABLE product_sources (
  product_id          TEXT PRIMARY KEY,
  upstream_updated_ms INTEGER NOT NULL,
  deleted             INTEGER NOT NULL DEFAULT 0,
  seen_run            INTEGER NOT NULL DEFAULT 0
);

-- Stock per upstream inventory item (a Shopify variant's inventory_item_id, or 'product:{id}'
-- for the generic format). A product's stock is the sum of its items.
CREATE TABLE inventory_items (
  item_id     TEXT PRIMARY KEY,
  product_id  TEXT NOT NULL,
  available   INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL
);
CREATE INDEX inventory_items_product ON inventory_items(product_id);

-- "The catalog changed to version N": one row per committed catalog change, written in the
-- same transaction as the change. Drained by the cluster fan-out (delivered_ms set); bounded
-- to the newest 1000 rows, which loses nothing because a version subsumes all older ones.
CREATE TABLE outbox (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  kind         TEXT NOT NULL,
  payload      TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  delivered_ms INTEGER
);

-- Upstream catalog sync: configuration and status (one row each).
CREATE TABLE sync_config (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  url           TEXT NOT NULL,
  interval_secs INTEGER NOT NULL,
  updated_ms    INTEGER NOT NULL
);

CREATE TABLE sync_state (
  id                   INTEGER PRIMARY KEY CHECK (id = 1),
  runs                 INTEGER NOT NULL DEFAULT 0,
  last_success_ms      INTEGER,
  last_full_ms         INTEGER,
  last_error           TEXT,
  last_error_ms        INTEGER,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  circuit_opened_ms    INTEGER,
  products_synced      INTEGER NOT NULL DEFAULT 0,
  cursor_updated_ms    INTEGER
);

-- Where checkouts are handed over (the store's commerce backend).
CREATE TABLE backend_config (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  orders_url TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);

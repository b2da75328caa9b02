-- A shopper actor's own database: one session of one store.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE cart_items (
  product_id TEXT PRIMARY KEY,
  quantity   INTEGER NOT NULL CHECK (quantity > 0),
  added_at   INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE preferences (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE history (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  product_id TEXT NOT NULL,
  viewed_at  INTEGER NOT NULL
);

-- Personalised HTML kept across passivation so a waking shopper can be served without a render.
CREATE TABLE html_cache (
  cache_key   TEXT PRIMARY KEY,
  html        TEXT NOT NULL,
  rendered_ms INTEGER NOT NULL
);

CREATE TABLE alarms (
  name   TEXT PRIMARY KEY,
  due_ms INTEGER NOT NULL
);

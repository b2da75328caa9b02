-- The store actor's own database: everything one storefront publishes.
-- Applied on activation; PRAGMA user_version records the last migration applied.

-- Counters: 'version' (bumped on every change shoppers can see), 'code_seq' (never reused, so
-- (block id, code_version) always names one piece of code, even across rollbacks).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE settings (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  name            TEXT NOT NULL,
  tagline         TEXT NOT NULL DEFAULT '',
  currency        TEXT NOT NULL DEFAULT 'USD',
  locale          TEXT NOT NULL DEFAULT 'en-US',
  seo_title       TEXT,
  seo_description TEXT,
  analytics       TEXT NOT NULL DEFAULT '{}',  -- {"clarityProjectId": "..."}; absent = disabled
  limits          TEXT NOT NULL DEFAULT '{}',  -- render limits overriding the defaults
  updated_at      INTEGER NOT NULL
);

-- Design tokens. Resolution: regions[region] -> tokens -> template defaults -> global defaults.
CREATE TABLE theme (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  template TEXT NOT NULL DEFAULT 'classic',
  tokens   TEXT NOT NULL DEFAULT '{}',
  regions  TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE products (
  id               TEXT PRIMARY KEY,
  handle           TEXT NOT NULL UNIQUE,
  title            TEXT NOT NULL,
  description      TEXT NOT NULL DEFAULT '',
  price_minor      INTEGER NOT NULL CHECK (price_minor >= 0),
  compare_at_minor INTEGER CHECK (compare_at_minor >= 0),
  images           TEXT NOT NULL DEFAULT '[]',
  stock            INTEGER NOT NULL DEFAULT 0 CHECK (stock >= 0),
  tags             TEXT NOT NULL DEFAULT '[]',
  position         INTEGER NOT NULL DEFAULT 0,
  updated_at       INTEGER NOT NULL
);

CREATE VIRTUAL TABLE products_fts USING fts5(
  title, description, tags,
  content = 'products', content_rowid = 'rowid',
  tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
  INSERT INTO products_fts(rowid, title, description, tags)
  VALUES (new.rowid, new.title, new.description, new.tags);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
  INSERT INTO products_fts(products_fts, rowid, title, description, tags)
  VALUES ('delete', old.rowid, old.title, old.description, old.tags);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE ON products BEGIN
  INSERT INTO products_fts(products_fts, rowid, title, description, tags)
  VALUES ('delete', old.rowid, old.title, old.description, old.tags);
  INSERT INTO products_fts(rowid, title, description, tags)
  VALUES (new.rowid, new.title, new.description, new.tags);
END;

-- A page's editable state. What shoppers see is page_versions[published_version].
CREATE TABLE pages (
  slug              TEXT PRIMARY KEY,
  title             TEXT NOT NULL,
  description       TEXT NOT NULL DEFAULT '',
  published_version INTEGER,
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL
);

CREATE TABLE draft_blocks (
  page_slug    TEXT NOT NULL REFERENCES pages(slug) ON DELETE CASCADE,
  id           TEXT NOT NULL,
  position     INTEGER NOT NULL,
  type         TEXT NOT NULL,
  code         TEXT,
  code_version INTEGER NOT NULL,
  config       TEXT NOT NULL DEFAULT '{}',
  visibility   TEXT NOT NULL DEFAULT '{}',
  updated_at   INTEGER NOT NULL,
  PRIMARY KEY (page_slug, id)
);

-- Frozen on publish; never updated. Rollback publishes a copy as a new version.
CREATE TABLE page_versions (
  page_slug    TEXT NOT NULL REFERENCES pages(slug) ON DELETE CASCADE,
  version      INTEGER NOT NULL,
  title        TEXT NOT NULL,
  description  TEXT NOT NULL,
  blocks       TEXT NOT NULL,          -- JSON array of blocks as they were published
  published_at INTEGER NOT NULL,
  source       TEXT NOT NULL,          -- 'publish' or 'rollback:{version}'
  PRIMARY KEY (page_slug, version)
);

CREATE TABLE posts (
  slug         TEXT PRIMARY KEY,
  title        TEXT NOT NULL,
  excerpt      TEXT NOT NULL DEFAULT '',
  body         TEXT NOT NULL DEFAULT '',
  author       TEXT NOT NULL DEFAULT '',
  image        TEXT,
  published_at INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);

-- Wake-ups this actor asked for; survives restarts (mirrored in the node catalog's alarm_index).
CREATE TABLE alarms (
  name   TEXT PRIMARY KEY,
  due_ms INTEGER NOT NULL
);

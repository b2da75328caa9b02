-- Where the store's CDN is told to drop its cached anonymous pages (POSTed with the store's
-- surrogate keys after every change they show). At most one; no row: no purging.
CREATE TABLE cdn_purge (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  url        TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);

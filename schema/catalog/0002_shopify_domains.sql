-- Shopify shop domains (x.myshopify.com) mapped to the store their webhooks update: a Shopify
-- webhook names its shop only in X-Shopify-Shop-Domain.
CREATE TABLE shopify_domains (
  domain   TEXT PRIMARY KEY,
  store_id TEXT NOT NULL UNIQUE REFERENCES stores(id) ON DELETE CASCADE
);

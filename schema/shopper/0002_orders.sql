-- Checkout: orders this session placed, and the durable outbox that hands them to the store's
-- commerce backend.

CREATE TABLE orders (
  id              TEXT PRIMARY KEY,
  idempotency_key TEXT NOT NULL UNIQUE,   -- a repeated checkout with the same key returns this order
  created_ms      INTEGER NOT NULL,
  currency        TEXT NOT NULL,
  subtotal_minor  INTEGER NOT NULL,
  lines           TEXT NOT NULL            -- JSON array of {productId, title, quantity, unitPriceMinor, lineTotalMinor}
);

-- One row per order to deliver. Retried with backoff (driven by the 'order-delivery' alarm)
-- until the backend answers 2xx; every attempt carries the order id as Idempotency-Key.
CREATE TABLE order_outbox (
  order_id        TEXT PRIMARY KEY REFERENCES orders(id),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  last_error      TEXT,
  delivered_ms    INTEGER,
  backend_reply   TEXT
);
CREATE INDEX order_outbox_due ON order_outbox(next_attempt_ms) WHERE delivered_ms IS NULL;

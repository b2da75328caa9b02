-- The catalog.changed outbox never had a consumer: open pages learn of a catalog change from the
-- live `product` event its commit publishes (actors/store/live.rs), other nodes from the store
-- version pushed after every commit, and both re-read current state after a reconnect or reload,
-- so a durable event log adds nothing but a write per change.
DROP TABLE IF EXISTS outbox;

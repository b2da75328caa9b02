-- When a store's admin token was last replaced (ms; 0 = never). Catalog copies from other nodes
-- replace a token only with one at least as new, so a node that pushes its catalog before it
-- heard of a rotation cannot bring the old token back.
ALTER TABLE stores ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;

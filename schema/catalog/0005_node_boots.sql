-- How many times this node has started: a single node's fencing token (src/coordination/local.rs),
-- so a token from an earlier run is always older than one of this run.
CREATE TABLE node_boots (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);

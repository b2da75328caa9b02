-- Staff: named console users with a role, each logging in with their own password (an argon2id
-- PHC string; never the password itself). The store's admin token stays the owner.
CREATE TABLE staff (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL
);

-- Console session generations, per login principal (a staff name, or '~' for the admin token).
-- A session cookie names the generation it was issued under; a role or password change and a
-- removal bump it, which ends every session of that member on every node and across restarts.
-- Kept after a removal, so a re-added name does not revive old cookies.
CREATE TABLE console_generations (
    principal  TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);

-- Logged-out console sessions (by the cookie's nonce) until they would have expired anyway.
CREATE TABLE console_logouts (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

-- Who did what, when: publishes, rollbacks, settings, staff changes, logins. Summaries carry
-- no secrets. Trimmed to the newest entries on insert.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    summary TEXT NOT NULL
);

//! What the server's black-box tests (`tests/`) and the load generator (`loadtest/`) share.

pub mod session;

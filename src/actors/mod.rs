//! The storefront actors: one store actor per storefront, one shopper actor per session, how
//! they are activated on this node (`activation`), and
//! the sweeper of idle shopper files. They run on the generic runtime (`crate::runtime`).

pub mod access;
pub mod activation;
pub mod day_stats;
pub mod shopper;
pub mod store;
pub mod sweeper;

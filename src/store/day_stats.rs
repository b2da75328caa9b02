//! A store's daily counts: visitors (sessions that viewed a page that UTC day), orders and
//! revenue. They are noted where they happen — a page view on the node that serves it, an order
//! in its shopper actor — in a node's [`DayTally`], in memory, and handed to the store actor in
//! batches ([`DayDelta`]), which adds them to its `day_stats` rows: a store's file is written
//! once per batch, never once per page view. A session's views may be served by several nodes
//! (its first by the store's owner, later ones by its own actor's), so batches carry the
//! sessions seen (as hashes) and the store counts each once a day (`day_visitors`, today's only).
//! A view without a session cookie mints a session each time; a client that never keeps the
//! cookie (a bot, a script) would count once a request, so such first views count once a day
//! per client (address and user agent, as a fingerprint kept in memory only).

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;
use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::StoreId;
use crate::sqlite::StorageResult;

const DAY_MS: i64 = 86_400_000;

/// The UTC day of `ms` (days since 1970-01-01).
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_of(day: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => day.to_string(),
    }
}

/// Counts of one store and day, added to what it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayCounts {
    pub day: i64,
    pub visitors: u64,
    pub orders: u64,
    pub revenue_minor: i64,
}

/// What a node noted for one store and day since its last batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayDelta {
    pub day: i64,
    /// Sessions that viewed a page, as [`session_hash`]es (each sent once a day per node).
    pub sessions: Vec<i64>,
    pub orders: u64,
    pub revenue_minor: i64,
}

impl DayDelta {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.orders == 0 && self.revenue_minor == 0
    }

    fn merge(&mut self, other: DayDelta) {
        self.sessions.extend(other.sessions);
        self.orders += other.orders;
        self.revenue_minor = self.revenue_minor.saturating_add(other.revenue_minor);
    }
}

/// A session's id as the store keeps it: the same on every node, not the id itself.
pub fn session_hash(session: &str) -> i64 {
    let digest = Sha256::digest(session.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(bytes)
}

#[derive(Default)]
struct StoreTally {
    /// Not yet handed to the store actor, by day.
    pending: HashMap<i64, DayDelta>,
    /// Sessions already counted on `seen_day`, as hashes.
    seen_day: i64,
    seen: HashSet<i64>,
    /// Clients whose first (cookieless) view counted on `seen_day`, as fingerprints.
    first_views: HashSet<u64>,
}

/// What this node counted and has not yet handed to the store actors.
pub struct DayTally {
    stores: Mutex<HashMap<StoreId, StoreTally>>,
    max_remembered: usize,
}

impl DayTally {
    pub fn new(max_remembered: usize) -> DayTally {
        DayTally { stores: Mutex::new(HashMap::new()), max_remembered }
    }

    fn add(&self, store: &StoreId, now_ms: i64, f: impl FnOnce(&mut StoreTally, i64) -> Option<DayDelta>) {
        let day = day_of(now_ms);
        let mut stores = self.stores.lock();
        let tally = stores.entry(store.clone()).or_default();
        if let Some(delta) = f(tally, day) {
            tally.pending.entry(day).or_insert_with(|| DayDelta { day, ..Default::default() }).merge(delta);
        }
    }

    /// A page view by `session` (sent on once a day from this node; the store counts it once).
    /// `first_view_of`: the session was minted for this view, by the client of this fingerprint;
    /// it counts only if that client's first view has not yet counted today.
    pub fn page_view(&self, store: &StoreId, session: &str, first_view_of: Option<u64>, now_ms: i64) {
        let max = self.max_remembered;
        self.add(store, now_ms, |tally, day| {
            if tally.seen_day != day {
                tally.seen_day = day;
                tally.seen.clear();
                tally.first_views.clear();
            }
            if let Some(client) = first_view_of {
                if tally.first_views.contains(&client) {
                    return None;
                }
                if tally.first_views.len() < max {
                    tally.first_views.insert(client);
                }
            }
            let hash = session_hash(session);
            if tally.seen.contains(&hash) {
                return None;
            }
            if tally.seen.len() < max {
                tally.seen.insert(hash);
            }
            Some(DayDelta { sessions: vec![hash], ..Default::default() })
        });
    }

    /// An order placed, of `amount_minor` in the store's currency.
    pub fn order(&self, store: &StoreId, amount_minor: i64, now_ms: i64) {
        self.add(store, now_ms, |_, _| Some(DayDelta { orders: 1, revenue_minor: amount_minor, ..Default::default() }));
    }

    /// Takes every pending delta, by store (the sessions seen today stay remembered).
    pub fn drain(&self) -> Vec<(StoreId, Vec<DayDelta>)> {
        let mut stores = self.stores.lock();
        let out: Vec<_> = stores
            .iter_mut()
            .filter(|(_, t)| !t.pending.is_empty())
            .map(|(store, t)| (store.clone(), t.pending.drain().map(|(_, d)| d).filter(|d| !d.is_empty()).collect()))
            .collect();
        stores.retain(|_, t| !t.pending.is_empty() || !t.seen.is_empty() || !t.first_views.is_empty());
        out
    }

    /// Gives back deltas a batch failed to hand over (merged with whatever came since).
    pub fn restore(&self, store: &StoreId, deltas: Vec<DayDelta>) {
        let mut stores = self.stores.lock();
        let tally = stores.entry(store.clone()).or_default();
        for d in deltas {
            tally.pending.entry(d.day).or_insert_with(|| DayDelta { day: d.day, ..Default::default() }).merge(d);
        }
    }
}

/// Adds `deltas` to the store's rows: a session counts as a visitor the first time the store
/// hears of it that day (up to `max_remembered` sessions a day; past it, each one reported
/// counts). Sessions of earlier days and days older than `days_kept` are deleted.
pub fn add(tx: &Transaction<'_>, deltas: &[DayDelta], today: i64, days_kept: u32, max_remembered: usize) -> StorageResult<()> {
    tx.execute("DELETE FROM day_visitors WHERE day < ?1", [today - 1])?;
    tx.execute("DELETE FROM day_stats WHERE day < ?1", [today - i64::from(days_kept)])?;
    for d in deltas {
        let mut visitors = 0i64;
        let mut remembered: i64 = tx.query_row("SELECT count(*) FROM day_visitors WHERE day = ?1", [d.day], |r| r.get(0))?;
        let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO day_visitors (day, session) VALUES (?1, ?2)")?;
        let mut known = tx.prepare_cached("SELECT 1 FROM day_visitors WHERE day = ?1 AND session = ?2")?;
        for session in &d.sessions {
            if remembered < max_remembered as i64 {
                let added = insert.execute(params![d.day, session])?;
                visitors += added as i64;
                remembered += added as i64;
            } else if !known.exists(params![d.day, session])? {
                visitors += 1;
            }
        }
        tx.execute(
            "INSERT INTO day_stats (day, visitors, orders, revenue_minor) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(day) DO UPDATE SET visitors = visitors + ?2, orders = orders + ?3, revenue_minor = revenue_minor + ?4",
            params![d.day, visitors, d.orders as i64, d.revenue_minor],
        )?;
    }
    Ok(())
}

/// The counts of the `days` days up to `today`, newest first (days without counts left out).
pub fn recent(conn: &Connection, today: i64, days: u32) -> StorageResult<Vec<DayCounts>> {
    let mut stmt =
        conn.prepare("SELECT day, visitors, orders, revenue_minor FROM day_stats WHERE day > ?1 AND day <= ?2 ORDER BY day DESC")?;
    let rows = stmt.query_map(params![today - i64::from(days), today], |r| {
        Ok(DayCounts { day: r.get(0)?, visitors: r.get::<_, i64>(1)? as u64, orders: r.get::<_, i64>(2)? as u64, revenue_minor: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sends_each_session_once_a_day_and_orders_add_up() {
        let tally = DayTally::new(2);
        let store = StoreId::parse("s").unwrap();
        let day = 20_000 * DAY_MS;
        tally.page_view(&store, "a", None, day);
        tally.page_view(&store, "a", None, day + 1);
        tally.page_view(&store, "b", None, day + 2);
        tally.order(&store, 1250, day + 3);
        tally.order(&store, 750, day + 4);
        let drained = tally.drain();
        let want = DayDelta { day: 20_000, sessions: vec![session_hash("a"), session_hash("b")], orders: 2, revenue_minor: 2000 };
        assert_eq!(drained, vec![(store.clone(), vec![want])]);
        // Sessions seen stay seen for the day after a drain; the next day they count again.
        tally.page_view(&store, "a", None, day + 5);
        tally.page_view(&store, "a", None, day + DAY_MS);
        assert_eq!(tally.drain()[0].1, vec![DayDelta { day: 20_001, sessions: vec![session_hash("a")], ..Default::default() }]);
        assert_eq!(date_of(20_000), "2024-10-04");
    }

    #[test]
    fn a_client_that_drops_its_cookie_counts_once_a_day() {
        let tally = DayTally::new(100);
        let store = StoreId::parse("s").unwrap();
        let day = 20_000 * DAY_MS;
        // A bot: a new session on every view, from one client.
        for (i, session) in ["b1", "b2", "b3"].into_iter().enumerate() {
            tally.page_view(&store, session, Some(7), day + i as i64);
        }
        // A browser: its first view mints the session it then keeps.
        tally.page_view(&store, "k", Some(8), day + 10);
        tally.page_view(&store, "k", None, day + 11);
        let sessions = &tally.drain()[0].1[0].sessions;
        assert_eq!(sessions, &vec![session_hash("b1"), session_hash("k")]);
        // The next day the bot counts again, once.
        tally.page_view(&store, "b4", Some(7), day + DAY_MS);
        tally.page_view(&store, "b5", Some(7), day + DAY_MS + 1);
        assert_eq!(tally.drain()[0].1[0].sessions, vec![session_hash("b4")]);
    }

    #[test]
    fn the_store_counts_a_session_once_a_day_whichever_nodes_report_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../schema/store/0006_day_stats.sql")).unwrap();
        let (a, b, c) = (session_hash("a"), session_hash("b"), session_hash("c"));
        let batch = |sessions: Vec<i64>, orders| DayDelta { day: 10, sessions, orders, revenue_minor: 100 * orders as i64 };
        for deltas in [vec![batch(vec![a, b], 1)], vec![batch(vec![a], 0), batch(vec![b, c], 2)]] {
            let tx = conn.transaction().unwrap();
            add(&tx, &deltas, 10, 30, 10).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(recent(&conn, 10, 7).unwrap(), vec![DayCounts { day: 10, visitors: 3, orders: 3, revenue_minor: 300 }]);
        // Two days on, the sessions of day 10 are forgotten (its counts stay); yesterday's are
        // kept for batches that arrive late.
        let tx = conn.transaction().unwrap();
        add(&tx, &[DayDelta { day: 11, sessions: vec![a], ..Default::default() }], 12, 30, 10).unwrap();
        tx.commit().unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM day_visitors", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(recent(&conn, 12, 7).unwrap().len(), 2);
    }
}

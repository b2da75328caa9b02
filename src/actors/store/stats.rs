//! The store's daily counts (`store::day_stats`): batches of visitors, orders and revenue that
//! nodes counted in memory, added to the store's rows (one write per batch, not fsynced: a
//! power loss can drop the last batches, never corrupt the file), and read for the console's
//! overview and the admin API.

use actix::prelude::*;
use serde_json::{json, Value};

use super::{StoreActor, StoreError};
use crate::clock::now_ms;
use crate::storage::Commit;
use crate::store::day_stats::{self, DayCounts, DayDelta};

/// Adds counts a node gathered to the store's.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordDayStats(pub Vec<DayDelta>);

/// The last `days` days' counts, today's first.
#[derive(Message, Clone)]
#[rtype(result = "Result<Value, StoreError>")]
pub struct GetDayStats {
    pub days: u32,
}

impl Handler<RecordDayStats> for StoreActor {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, RecordDayStats(deltas): RecordDayStats, _: &mut Context<Self>) -> Self::Result {
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (kept, max) = (self.node.settings.stats.days_kept, self.node.settings.stats.max_visitors_remembered);
        let today = day_stats::day_of(now_ms());
        let write = db.start_write_as(Commit::MayBeLost, move |tx| day_stats::add(tx, &deltas, today, kept, max).map_err(StoreError::from));
        Box::pin(write)
    }
}

impl Handler<GetDayStats> for StoreActor {
    type Result = Result<Value, StoreError>;
    fn handle(&mut self, msg: GetDayStats, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let today = day_stats::day_of(now_ms());
        let days = self.db()?.read(|c| day_stats::recent(c, today, msg.days.clamp(1, 400)))?;
        let currency = &self.snapshot.settings.currency;
        let show = |c: &DayCounts| {
            json!({
                "date": day_stats::date_of(c.day),
                "visitors": c.visitors,
                "orders": c.orders,
                "revenueMinor": c.revenue_minor,
                "revenue": currency.format_plain(c.revenue_minor),
            })
        };
        let none = DayCounts { day: today, ..Default::default() };
        let first = days.first().filter(|c| c.day == today).unwrap_or(&none);
        Ok(json!({
            "currency": currency.code(),
            "today": show(first),
            "days": days.iter().map(show).collect::<Vec<_>>(),
            "flushMs": self.node.settings.stats.flush_ms,
        }))
    }
}

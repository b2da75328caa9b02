//! The actor's life between messages: its alarms (an idle cart expires, a pending order is
//! retried), passivation when idle (saving its rendered pages for the next wake), and giving
//! up its isolate when the node's isolate budget evicts it.

use std::time::Duration;

use actix::prelude::*;

use super::cart::CART_EXPIRY_ALARM;
use super::{orders, repo, DeliverOrders, ShopperActor};
use crate::clock::now_ms;
use crate::engine::isolate_budget::ReleaseIsolate;
use crate::render;
use crate::render::cache::PersonalPages;
use crate::runtime::{alarms, passivate_now, release_evicted_isolate, watch_idleness, Passivate};
use crate::sqlite::StorageError;
use crate::storage::Commit;

/// Handles this shopper's due alarms (cart expiry, order delivery retries).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct FireAlarms;

impl Handler<Passivate> for ShopperActor {
    type Result = ();
    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        passivate_now(self, ctx);
    }
}

impl Handler<ReleaseIsolate> for ShopperActor {
    type Result = ();
    fn handle(&mut self, msg: ReleaseIsolate, _: &mut Context<Self>) {
        release_evicted_isolate(self, msg.ticket);
    }
}

impl Actor for ShopperActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.engine = render::EngineSlot::owned_by(ctx.address().downgrade().recipient());
        let actors = &self.node.settings.actors;
        watch_idleness(ctx, Duration::from_secs(actors.idle_timeout_secs), Duration::from_secs(actors.isolate_idle_secs));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.engine.drop_engine();
        if let Some(db) = self.db.take().filter(|db| db.exists()) {
            // Keep the personalised pages across the sleep. Losing them only costs a render, so
            // the commit is not synced (`MayBeLost`); a page larger than the WAL's
            // auto-checkpoint still makes SQLite checkpoint it, which syncs the file.
            let shopper = self.key();
            let pages: Vec<_> = self
                .cached_pages
                .iter()
                .filter_map(|k| self.node.personal_pages.peek(&PersonalPages::key(&shopper, k)).map(|p| (k, p)))
                .filter(|(_, p)| p.state_version == self.state_version)
                .collect();
            let changed = self.rendered_since_save || self.saved_pages_version != self.state_version;
            if changed && (!pages.is_empty() || !self.cached_pages.is_empty()) {
                let saved = db.write_now_as(Commit::MayBeLost, |tx| -> Result<(), StorageError> {
                    let rows = pages.iter().map(|(request_key, page)| {
                        let key = format!("{}.{}#{}", page.store_version, page.state_version, request_key);
                        (key, std::str::from_utf8(&page.html).unwrap_or_default(), page.rendered_ms)
                    });
                    repo::replace_saved_pages(tx, rows)?;
                    Ok(())
                });
                if let Err(e) = saved {
                    tracing::warn!(error = %e, "personalised pages not saved at passivation");
                }
            }
        }
        let node = self.node.clone();
        // The file is closed: upload it now if it has unreplicated commits.
        node.actor_passivated(self.key());
        node.registry.finish_passivation(&mut self.lease);
    }
}

impl Handler<FireAlarms> for ShopperActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: FireAlarms, _: &mut Context<Self>) -> Self::Result {
        // The hint is replaced below: forget what this instance knew of it.
        self.alarm_hint_ms = None;
        self.cart_alarm_ms = None;
        // No file (never written, or deleted by the sweeper): no alarm is set, and writing the
        // alarm table would create a file for nothing.
        if self.db.as_ref().is_some_and(|db| !db.exists()) {
            let (node, key) = (self.node.clone(), self.key());
            return AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(async move {
                let _ = tokio::task::spawn_blocking(move || node.catalog.reset_alarm_hint(&key, None)).await;
            })));
        }
        let ttl_ms = self.node.settings.shopper.cart_idle_ttl_secs as i64 * 1000;
        let last_cart_change = self.cart.values().map(|l| l.updated_at).max();
        let expire = last_cart_change.is_some_and(|t| now_ms() - t >= ttl_ms);
        let node = self.node.clone();
        let key = self.key();
        let fut = self.write(move |tx| {
            let due = alarms::take_due(tx, now_ms())?;
            let cleared = expire && due.iter().any(|n| n == CART_EXPIRY_ALARM);
            if cleared {
                repo::clear_cart(tx)?;
            } else if last_cart_change.is_some() && due.iter().any(|n| n == CART_EXPIRY_ALARM) {
                // Fired early (the hint is conservative): wait for the real due time.
                let due = last_cart_change.unwrap_or(0) + ttl_ms;
                alarms::set(tx, CART_EXPIRY_ALARM, due)?;
            }
            let next = alarms::next_due(tx)?;
            node.catalog.reset_alarm_hint(&key, next)?;
            Ok((cleared, due.iter().any(|n| n == orders::DELIVERY_ALARM)))
        });
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(fut).map(|r, act, ctx| match r {
            Ok((cleared, deliver)) => {
                if deliver {
                    // Pending orders: retry now (the handler re-arms the alarm from the outbox).
                    ctx.notify(DeliverOrders);
                }
                if !cleared {
                    return;
                }
                act.cart.clear();
                act.state_changed();
                act.publish_cart(None);
                tracing::debug!(key = %act.key(), "idle cart expired");
                crate::metrics::incr("vitrina_carts_expired_total", &[]);
            }
            Err(e) => tracing::warn!(key = %act.key(), error = %e, "alarm handling failed"),
        })))
    }
}

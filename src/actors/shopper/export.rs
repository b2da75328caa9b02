//! Everything a shopper's file holds, as JSON: what an operator inspects and what a shopper
//! is given when they ask for their data (cart, browsing history, preferences, orders).

use actix::prelude::*;
use serde_json::{json, Value};

use super::{repo, ShopperActor, ShopperError};

/// The shopper's whole state as JSON.
#[derive(Message, Clone)]
#[rtype(result = "Result<Value, ShopperError>")]
pub struct ExportShopper;

impl Handler<ExportShopper> for ShopperActor {
    type Result = Result<Value, ShopperError>;
    fn handle(&mut self, _: ExportShopper, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone().ok_or_else(|| ShopperError::Store("shopper actor is closing".into()))?;
        let orders = db.read(|c| {
            let mut orders = Vec::new();
            for id in repo::order_ids(c)? {
                if let Some(order) = repo::order(c, &id)? {
                    orders.push(order);
                }
            }
            Ok(orders)
        })?;
        let cart: Vec<Value> = self
            .cart
            .iter()
            .map(|(product, line)| json!({"productId": product, "quantity": line.quantity, "updatedAt": crate::feed::ms_rfc3339(line.updated_at)}))
            .collect();
        Ok(json!({
            "store": self.store,
            "session": self.sid,
            "cart": cart,
            "recentlyViewed": self.history,
            "preferences": self.preferences,
            "orders": orders,
            "stateVersion": self.state_version,
        }))
    }
}

//! What the shopper chose rather than did: preferences (locale, customer), and the
//! session-token generation that checkout rotates so that older tokens stop reaching it.

use std::collections::BTreeMap;

use actix::prelude::*;
use serde_json::{json, Value};

use super::{repo, ShopperActor, ShopperError};

/// Sets preferences (merged into the existing ones); answers them all.
#[derive(Message, Clone)]
#[rtype(result = "Result<Value, ShopperError>")]
pub struct SetPreferences(pub BTreeMap<String, String>);

impl Handler<SetPreferences> for ShopperActor {
    type Result = AtomicResponse<Self, Result<Value, ShopperError>>;
    fn handle(&mut self, SetPreferences(prefs): SetPreferences, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let to_write = prefs.clone();
        let fut = self.write(move |tx| {
            for (k, v) in &to_write {
                repo::set_preference(tx, k, v)?;
            }
            Ok(())
        });
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(fut)
                .map(move |r, act, _| {
                    r?;
                    act.preferences.extend(prefs);
                    act.state_changed();
                    Ok(json!({"preferences": act.preferences}))
                })
                .then(|result, act, _| act.acknowledged(result, None)),
        ))
    }
}

/// The session-token generation that currently reaches this shopper.
#[derive(Message, Clone)]
#[rtype(result = "u64")]
pub struct SessionGeneration;

impl Handler<SessionGeneration> for ShopperActor {
    type Result = u64;
    fn handle(&mut self, _: SessionGeneration, _: &mut Context<Self>) -> u64 {
        self.generation
    }
}

/// Moves this shopper to the next session-token generation (checkout): tokens of earlier
/// generations stop reaching it once this is acknowledged. Answers the new generation.
#[derive(Message, Clone)]
#[rtype(result = "Result<u64, ShopperError>")]
pub struct RotateSession;

impl Handler<RotateSession> for ShopperActor {
    type Result = AtomicResponse<Self, Result<u64, ShopperError>>;
    fn handle(&mut self, _: RotateSession, _: &mut Context<Self>) -> Self::Result {
        self.touch();
        let next = self.generation + 1;
        let commit = self.write(move |tx| {
            repo::set_counter(tx, repo::SESSION_GENERATION, next)?;
            Ok(())
        });
        AtomicResponse::new(Box::pin(
            fut::wrap_future::<_, Self>(commit)
                .map(move |committed, act, _| {
                    committed?;
                    act.generation = next;
                    act.pulse.publish_generation(next);
                    act.state_changed();
                    Ok(next)
                })
                .then(|result, act, _| act.acknowledged(result, None)),
        ))
    }
}

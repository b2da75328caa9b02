//! Messages asked through the registry carry their caller's trace context into the actor: an
//! actor's turn runs on its own arbiter, outside the caller's span, so without it the turn's
//! commits would start traces of their own instead of joining the request's.

use std::marker::PhantomData;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;

use crate::trace_context::TurnTrace;

#[doc(hidden)]
pub use actix as reexported_actix;

/// `M` with the trace of the caller that asked it (see [`crate::trace_context::current_parent`]).
#[derive(Clone)]
pub struct Traced<M> {
    pub parent: Option<opentelemetry::Context>,
    pub msg: M,
}

impl<M: Message> Message for Traced<M>
where
    M::Result: 'static,
{
    type Result = M::Result;
}

/// An actor whose turns may run in a caller's trace.
pub trait TracedTurns: Actor {
    /// Where the actor's commits look for the running turn's trace (`None`: nowhere).
    fn turn_trace(&self) -> Option<TurnTrace>;
}

/// The answer of a traced turn: `R`'s, and once it is given the turn's trace is cleared.
pub struct TracedResponse<R, M> {
    response: R,
    turn: Option<(TurnTrace, u64)>,
    _message: PhantomData<M>,
}

impl<R, M> TracedResponse<R, M> {
    /// Begins a turn of `parent`'s trace on `actor` and wraps the answer `handle` gives.
    pub fn run<A: TracedTurns>(actor: &mut A, parent: Option<opentelemetry::Context>, handle: impl FnOnce(&mut A) -> R) -> Self {
        let turn = actor.turn_trace().map(|trace| {
            let turn = trace.begin(parent);
            (trace, turn)
        });
        TracedResponse { response: handle(actor), turn, _message: PhantomData }
    }
}

impl<A, M, R> MessageResponse<A, Traced<M>> for TracedResponse<R, M>
where
    A: TracedTurns,
    A::Context: AsyncContext<A>,
    M: Message + 'static,
    M::Result: Send + 'static,
    R: MessageResponse<A, M>,
{
    fn handle(self, ctx: &mut A::Context, tx: Option<OneshotSender<M::Result>>) {
        let (inner, answered) = tokio::sync::oneshot::channel();
        self.response.handle(ctx, Some(inner));
        // Relayed by a task of the arbiter, not of the actor's context: an answer given stays
        // given even if the actor stops before its context would poll the relay (the registry
        // resends a message whose answer never came, see `Registry::ask`).
        let turn = self.turn;
        actix::spawn(async move {
            let result = answered.await;
            if let Some((trace, turn)) = turn {
                trace.end(turn);
            }
            if let (Ok(result), Some(tx)) = (result, tx) {
                let _ = tx.send(result);
            }
        });
    }
}

/// Implements `Handler<Traced<M>>` for an actor that handles `M` (the registry asks with it).
#[macro_export]
macro_rules! traced_turns {
    ($actor:ty) => {
        impl<M> $crate::runtime::traced::reexported_actix::Handler<$crate::runtime::traced::Traced<M>> for $actor
        where
            $actor: $crate::runtime::traced::reexported_actix::Handler<M>,
            M: $crate::runtime::traced::reexported_actix::Message + 'static,
            M::Result: Send + 'static,
        {
            type Result =
                $crate::runtime::traced::TracedResponse<<$actor as $crate::runtime::traced::reexported_actix::Handler<M>>::Result, M>;

            fn handle(&mut self, traced: $crate::runtime::traced::Traced<M>, ctx: &mut Self::Context) -> Self::Result {
                let $crate::runtime::traced::Traced { parent, msg } = traced;
                $crate::runtime::traced::TracedResponse::run(self, parent, |actor| {
                    $crate::runtime::traced::reexported_actix::Handler::<M>::handle(actor, msg, ctx)
                })
            }
        }
    };
}

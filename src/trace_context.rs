//! W3C trace context (`traceparent`, `tracestate`) on outgoing calls: the current span's
//! context, so a forward to another node or an upstream request continues the request's trace.

use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Injector<'a>(&'a mut reqwest::header::HeaderMap);

impl opentelemetry::propagation::Injector for Injector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (reqwest::header::HeaderName::from_bytes(key.as_bytes()), reqwest::header::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Headers that carry trace context (a caller's are replaced by ours on the way out).
pub fn is_trace_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
}

/// Puts the current span's trace context into `headers` (nothing when no trace is active).
pub fn inject(headers: &mut reqwest::header::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut Injector(headers)));
}

/// The trace an actor's current turn belongs to: set when a turn asked through the registry
/// begins (the caller's context travels in the message, see `runtime::traced`), cleared when
/// it ends, read by the actor's commits so they are children of the request that caused them.
/// Shared by an actor and its database handle; never held across a blocking call.
#[derive(Clone, Default)]
pub struct TurnTrace(std::sync::Arc<parking_lot::Mutex<(u64, Option<opentelemetry::Context>)>>);

impl TurnTrace {
    /// Marks a turn of `parent`'s trace as running; returns the turn's number for [`end`](Self::end).
    pub fn begin(&self, parent: Option<opentelemetry::Context>) -> u64 {
        let mut slot = self.0.lock();
        slot.0 += 1;
        slot.1 = parent;
        slot.0
    }

    /// Ends turn `turn` (a later turn that began meanwhile keeps its own trace).
    pub fn end(&self, turn: u64) {
        let mut slot = self.0.lock();
        if slot.0 == turn {
            slot.1 = None;
        }
    }

    /// The running turn's trace, if it runs in one.
    pub fn parent(&self) -> Option<opentelemetry::Context> {
        self.0.lock().1.clone()
    }
}

/// The current span's trace as a context that keeps no span alive (a remote parent): what a
/// message carries into an actor. `None` outside any exported span.
pub fn current_parent() -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| opentelemetry::Context::new().with_remote_span_context(span_context))
}

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

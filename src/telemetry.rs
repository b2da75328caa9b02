//! Logs and traces for the process: `tracing` events as text or JSON lines on stderr (each with
//! the fields of the spans it happened in, among them the request's id and trace id), and, when
//! `telemetry.otlp_endpoint` is set, spans exported over OTLP/HTTP (JSON) to a collector.
//! Trace context travels as W3C `traceparent`: taken from requests, put on forwards and on
//! upstream calls.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

const DEFAULT_FILTER: &str = "info,vitrina::access=warn";

/// Keeps the span exporter; dropping it (at exit) flushes the spans not yet sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("VITRINA_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Text logs on stderr, nothing exported: for the command-line tools.
pub fn init_for_tools() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).try_init();
}

/// Logs on stderr for a render worker, in the node's format, nothing exported (a worker's
/// lines interleave with its node's in the same stream).
pub fn init_for_worker(json: bool) {
    let fmt = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    let _ = if json { fmt.json().try_init() } else { fmt.try_init() };
}

/// Installs the process's subscriber for a node. `node_id` names its spans
/// (`service.instance.id`) when known.
pub fn init(settings: &TelemetrySettings, node_id: Option<&str>) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    // Each layer filters for itself: `VITRINA_LOG` chooses what is logged, never which spans a
    // trace gets (a node logging warnings only still exports its request spans).
    let fmt: Box<dyn Layer<_> + Send + Sync> = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let provider = if settings.otlp_endpoint.trim().is_empty() {
        None
    } else {
        let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim().trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("invalid telemetry.otlp_endpoint: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone());
        if let Some(id) = node_id {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", id.to_string()));
        }
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("vitrina"))
            .with_filter(tracing_subscriber::filter::Targets::new().with_target("vitrina", tracing::Level::INFO))
        // (the request span is at the error level, see `error::request_id_middleware`)
    });
    tracing_subscriber::registry().with(fmt).with(otel).try_init().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Telemetry { provider })
}

//! OTLP trace export (cargo feature `otlp`): when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! spans go to that collector over OTLP/HTTP (protobuf), in batches from a background
//! thread, as the service named by `OTEL_SERVICE_NAME` (default `closeloop`). Each span
//! of a record continues the trace of the record's `traceparent`, so a tracing backend
//! shows one feedback's way through the four services as one trace.

use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that turns export on (the OpenTelemetry standard one).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The layer that exports spans, or `None` when no endpoint is configured (or the
/// exporter cannot be built, which is logged to stderr: tracing is not up yet).
pub fn layer<S>() -> Option<OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    std::env::var_os(ENDPOINT_ENV).filter(|endpoint| !endpoint.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("OTLP export disabled: {error}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "closeloop".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("closeloop");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Makes `span` a child of the remote span a W3C `traceparent` names; ignores a
/// malformed one (the span then starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let mut parts = traceparent.split('-');
    let (Some(_version), Some(trace_id), Some(span_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(trace_id),
        SpanId::from_hex(span_id),
        u8::from_str_radix(flags, 16),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Exports the spans still buffered; call once before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(error) = provider.shutdown() {
            eprintln!("OTLP export: {error}");
        }
    }
}

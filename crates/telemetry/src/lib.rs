//! What every service mounts to be observable: structured logs (`tracing`), a
//! Prometheus registry with HTTP metrics, `/metrics`, `/healthz` and `/readyz`.

pub mod cpu;
#[cfg(feature = "otlp")]
pub mod otlp;
mod secret;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use closeloop_http::{Problem, ProblemType};
use prometheus::{
    Counter, Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

pub use secret::Secret;

/// The end-to-end latency histogram, labelled by `stage`, that categorise (`categorised`:
/// from ingest accepting the feedback), trends (`action`: from the event time of the
/// mention that made a theme fire to its action) and notify (`notified`: from the
/// feedback's event time to the customer's "you said, we did" delivered) each register.
/// One definition, so every stage has the same buckets: milliseconds for the pipeline,
/// days for a loop that waits on an ops team.
pub fn pipeline_latency_histogram() -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(
        HistogramOpts::new(
            "closeloop_pipeline_latency_seconds",
            "End-to-end latency by stage: accepted → categorised; feedback event time → action, → notified.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            900.0, 3600.0, 14_400.0, 43_200.0, 86_400.0, 259_200.0, 604_800.0, 2_592_000.0,
        ]),
        &["stage"],
    )
}

/// Sets up the global `tracing` subscriber: `RUST_LOG`-style filter (default `info`),
/// human-readable or JSON lines. Calling it twice is harmless (tests do).
pub fn init_tracing(json: bool) {
    init_tracing_with(json, "info,rdkafka=warn,sqlx=warn,hyper=warn");
}

/// [`init_tracing`] with another default filter for when `RUST_LOG` is not set.
pub fn init_tracing_with(json: bool, default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines: Box<dyn Layer<Registry> + Send + Sync> = if json {
        fmt::layer().json().flatten_event(true).boxed()
    } else {
        fmt::layer().boxed()
    };
    #[cfg(feature = "otlp")]
    let export = otlp::layer();
    #[cfg(not(feature = "otlp"))]
    let export: Option<tracing_subscriber::layer::Identity> = None;
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(export)
        .with(filter)
        .try_init();
}

/// Continues the trace a W3C `traceparent` names in `span` when spans are exported
/// (feature `otlp`); without export, the trace id in the span's fields is what links
/// the logs, and this does nothing.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    #[cfg(feature = "otlp")]
    otlp::continue_trace(span, traceparent);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, traceparent);
}

/// Sends spans still buffered for export (feature `otlp`); call before the process exits.
pub fn shutdown_tracing() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
}

/// Whether the service is ready to take traffic; flipped by the service once its
/// dependencies are up, and back when it shuts down.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A service's registry and the HTTP metrics every router records into.
#[derive(Clone)]
pub struct Telemetry {
    pub service: &'static str,
    pub registry: Registry,
    pub readiness: Readiness,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    http_cpu: Counter,
}

impl Telemetry {
    /// A fresh registry whose metrics all carry `service="<service>"`.
    pub fn new(service: &'static str) -> Self {
        let labels = std::collections::HashMap::from([("service".to_owned(), service.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("constant labels are valid");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "closeloop_http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "closeloop_http_request_duration_seconds",
                "HTTP request latency by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        let http_cpu = Counter::new(
            "closeloop_http_cpu_seconds_total",
            "CPU time spent handling HTTP requests (the polls of the handlers, on any thread).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_requests.clone()))
            .expect("fresh registry");
        registry
            .register(Box::new(http_cpu.clone()))
            .expect("fresh registry");
        registry
            .register(Box::new(http_seconds.clone()))
            .expect("fresh registry");
        Self {
            service,
            registry,
            readiness: Readiness::default(),
            http_requests,
            http_seconds,
            http_cpu,
        }
    }

    /// `/metrics`, `/healthz` and `/readyz`, merged with the service's own `routes`, all
    /// wrapped in request metrics.
    pub fn router(&self, routes: Router) -> Router {
        let ops = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone());
        routes
            .merge(ops)
            .layer(middleware::from_fn_with_state(self.clone(), record_http))
    }
}

async fn metrics(State(telemetry): State<Telemetry>) -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&telemetry.registry.gather(), &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(error) => Problem::internal(error.to_string()).into_response(),
    }
}

async fn readyz(State(telemetry): State<Telemetry>) -> Response {
    if telemetry.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        Problem::new(ProblemType::NotReady)
            .detail("the service is starting or shutting down")
            .into_response()
    }
}

async fn record_http(State(telemetry): State<Telemetry>, request: Request, next: Next) -> Response {
    // The matched route template, never the raw path: bounded label cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = cpu::cpu_timed(next.run(request), telemetry.http_cpu.clone()).await;
    telemetry
        .http_seconds
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    telemetry
        .http_requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

/// A token cancelled on SIGTERM or Ctrl-C: the one shutdown signal a process passes
/// down to everything it runs.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown signal received: finishing in-flight work");
        cancel.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_http::serve;
    use tokio::net::TcpListener;

    async fn get_text(router: Router, path: &str) -> (StatusCode, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        shutdown.cancel();
        server.await.unwrap().unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        (StatusCode::from_u16(status).unwrap(), response)
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_count_requests() {
        let telemetry = Telemetry::new("test");
        let router = telemetry.router(Router::new());
        assert_eq!(get_text(router.clone(), "/healthz").await.0, StatusCode::OK);
        let (status, body) = get_text(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("application/problem+json"), "{body}");
        telemetry.readiness.set(true);
        assert_eq!(get_text(router.clone(), "/readyz").await.0, StatusCode::OK);
        let (_, metrics) = get_text(router, "/metrics").await;
        assert!(
            metrics.contains(r#"closeloop_http_requests_total{method="GET",route="/readyz",status="503",service="test"} 1"#),
            "{metrics}"
        );
    }
}

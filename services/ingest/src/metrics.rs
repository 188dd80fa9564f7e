use axum::response::{IntoResponse, Response};
use closeloop_http::Problem;
use prometheus::{IntCounterVec, Opts, Registry};

/// What ingest counts beyond the HTTP and bus metrics every service has.
#[derive(Clone)]
pub struct IngestMetrics {
    accepted: IntCounterVec,
    rejected: IntCounterVec,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let accepted = IntCounterVec::new(
            Opts::new(
                "closeloop_feedback_accepted_total",
                "Feedback events accepted (broker-acknowledged), by source and channel.",
            ),
            &["source", "channel"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "closeloop_feedback_rejected_total",
                "Requests answered with an error, by HTTP status and reason (the problem type).",
            ),
            &["status", "reason"],
        )?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { accepted, rejected })
    }

    pub fn accepted(&self, source: &str, channel: &str) {
        self.accepted.with_label_values(&[source, channel]).inc();
    }

    /// Counts and renders a rejection. The reason is the problem type's slug
    /// (`rate_limited`, `invalid_body`, …): one catalogue, so the label stays bounded.
    pub fn reject(&self, problem: Problem) -> Response {
        let reason = problem.problem_type().slug().replace('-', "_");
        self.rejected
            .with_label_values(&[problem.status().as_str(), &reason])
            .inc();
        problem.into_response()
    }
}

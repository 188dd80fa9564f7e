//! Posting rows to ingest's `POST /v1/feedback/batch`, so imported feedback passes the
//! same validation, per-source authentication, rate limit and event-id ledger as any
//! other.
//!
//! A batch is all or nothing at ingest: one invalid item refuses it whole, with a JSON
//! pointer per bad field (`/items/3/rating`). So a refused batch is split by those
//! pointers: the named items are rejected with ingest's reasons and the rest is posted
//! again; a refusal that names no item (a body over ingest's limit, a batch longer than
//! it takes) halves the batch until it passes or one row is left to reject.
//!
//! 429 waits as long as `Retry-After` says; 408, 5xx and network errors are retried with
//! exponential backoff and jitter, up to `max_attempts` per request; then, and on 401 or
//! 403, the import stops with an error (the rows already accepted stay accepted, and a
//! new run skips past them by their stable ids).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use closeloop_telemetry::Secret;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::mapping::Problem;
use super::ImportError;

/// The longest backoff between two attempts of one request.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One row on its way to ingest, already in its JSON form.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Where the row starts in the file.
    pub line: u64,
    pub event_id: Uuid,
    pub occurred_at: Option<DateTime<Utc>>,
    pub json: String,
}

/// What became of one batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events ingest accepted that it did not hold before.
    pub accepted: u64,
    /// Events ingest had accepted before with the same content (a re-run): accepted
    /// again and deduplicated downstream, so not doubled.
    pub duplicates: u64,
    pub refused: Vec<Refused>,
    /// Requests sent again (429, 5xx, network errors).
    pub retries: u64,
}

/// A row ingest refused, with its reasons.
#[derive(Debug)]
pub struct Refused {
    pub line: u64,
    pub event_id: Uuid,
    pub status: u16,
    /// Fields as ingest points at them (`occurred_at`, `customer/email`).
    pub problems: Vec<Problem>,
    /// Whether ingest refused the row's date as older than it accepts.
    pub too_old: bool,
    /// The item as posted.
    pub item: Value,
}

/// Why an import cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("ingest refused the API key (HTTP {status}): {detail}")]
    Unauthorised { status: u16, detail: String },
    #[error("ingest at {url} did not take a batch in {attempts} attempt(s); last: {last}")]
    Unreachable {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("ingest at {url} answered HTTP {status}: {detail}")]
    Unexpected {
        url: String,
        status: u16,
        detail: String,
    },
}

/// Posts batches with retries.
pub struct Sender {
    http: reqwest::Client,
    url: String,
    api_key: Secret,
    max_attempts: u32,
    retry_base: Duration,
}

/// An answer of ingest that is not a retry.
enum Answer {
    Accepted { accepted: u64, duplicates: u64 },
    Refused { status: u16, problem: ProblemBody },
}

/// The parts of an RFC 9457 problem the importer reads.
#[derive(Debug, Default, Deserialize)]
struct ProblemBody {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<FieldErrorBody>,
}

#[derive(Debug, Deserialize)]
struct FieldErrorBody {
    pointer: String,
    detail: String,
}

impl ProblemBody {
    fn text(&self) -> String {
        self.detail.clone().unwrap_or_else(|| self.title.clone())
    }
}

/// ingest's 202 answer (`duplicates` is 0 from an ingest that does not count them).
#[derive(Debug, Deserialize)]
struct AcceptedBody {
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
}

impl Sender {
    /// `base_url` is ingest's, e.g. `http://127.0.0.1:8080`.
    pub fn new(
        base_url: &str,
        api_key: Secret,
        timeout: Duration,
        max_attempts: u32,
        retry_base: Duration,
    ) -> Result<Self, ImportError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("closeloop-import/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImportError::Config(format!("HTTP client: {e}")))?;
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ImportError::Config(format!(
                "--url {base_url:?} is not an http:// or https:// URL"
            )));
        }
        Ok(Self {
            http,
            url: format!("{base}/v1/feedback/batch"),
            api_key,
            max_attempts: max_attempts.max(1),
            retry_base,
        })
    }

    /// Posts `items` until every one is accepted or refused with a reason.
    pub async fn send(&self, items: Vec<Pending>) -> Result<Outcome, SendError> {
        let mut outcome = Outcome::default();
        let mut work = vec![items];
        while let Some(mut part) = work.pop() {
            if part.is_empty() {
                continue;
            }
            match self.post(&part, &mut outcome.retries).await? {
                Answer::Accepted {
                    accepted,
                    duplicates,
                } => {
                    let duplicates = duplicates.min(accepted);
                    outcome.accepted += accepted - duplicates;
                    outcome.duplicates += duplicates;
                }
                Answer::Refused { status, problem } => {
                    let mut by_item: BTreeMap<usize, Vec<Problem>> = BTreeMap::new();
                    for error in &problem.errors {
                        if let Some((index, field)) = item_pointer(&error.pointer) {
                            if index < part.len() {
                                by_item
                                    .entry(index)
                                    .or_default()
                                    .push(Problem::new(field, error.detail.clone()));
                            }
                        }
                    }
                    if !by_item.is_empty() {
                        let mut rest = Vec::with_capacity(part.len());
                        for (index, pending) in part.into_iter().enumerate() {
                            match by_item.remove(&index) {
                                Some(problems) => outcome
                                    .refused
                                    .push(Refused::new(pending, status, problems)),
                                None => rest.push(pending),
                            }
                        }
                        work.push(rest);
                    } else if part.len() > 1 {
                        let second = part.split_off(part.len() / 2);
                        work.push(second);
                        work.push(part);
                    } else if let Some(pending) = part.pop() {
                        let problems = vec![Problem::new("", problem.text())];
                        outcome
                            .refused
                            .push(Refused::new(pending, status, problems));
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// One batch request, repeated while ingest is busy, unreachable or asks to wait.
    async fn post(&self, items: &[Pending], retries: &mut u64) -> Result<Answer, SendError> {
        let mut body =
            String::with_capacity(items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 16);
        body.push_str("{\"items\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&item.json);
        }
        body.push_str("]}");

        let mut attempts = 0u32;
        loop {
            let sent = self
                .http
                .post(&self.url)
                .bearer_auth(self.api_key.expose())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (failure, asked_wait) = match sent {
                Err(error) => (error_chain(&error), None),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let asked_wait = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| closeloop_notify::webhook::parse_retry_after(v, Utc::now()));
                    match status {
                        202 => match response.json::<AcceptedBody>().await {
                            Ok(answer) => {
                                return Ok(Answer::Accepted {
                                    accepted: answer.accepted,
                                    duplicates: answer.duplicates,
                                })
                            }
                            // The events are in; reading the answer failed. Posting them
                            // again is safe (same ids) and gets an answer to count.
                            Err(error) => (format!("reading the 202 answer: {error}"), None),
                        },
                        429 => {
                            // A rate limit is no failure: wait as asked, as often as asked.
                            let wait = asked_wait.unwrap_or_else(|| {
                                closeloop_bus::backoff(0, self.retry_base, MAX_BACKOFF)
                            });
                            tracing::info!(
                                wait_ms = wait.as_millis() as u64,
                                "ingest: rate limited, waiting"
                            );
                            *retries += 1;
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        401 | 403 => {
                            let problem = problem_of(response).await;
                            return Err(SendError::Unauthorised {
                                status,
                                detail: problem.text(),
                            });
                        }
                        400 | 409 | 413 | 422 => {
                            return Ok(Answer::Refused {
                                status,
                                problem: problem_of(response).await,
                            })
                        }
                        408 | 500..=599 => {
                            let problem = problem_of(response).await;
                            (format!("HTTP {status}: {}", problem.text()), asked_wait)
                        }
                        _ => {
                            let problem = problem_of(response).await;
                            return Err(SendError::Unexpected {
                                url: self.url.clone(),
                                status,
                                detail: problem.text(),
                            });
                        }
                    }
                }
            };
            attempts += 1;
            if attempts >= self.max_attempts {
                return Err(SendError::Unreachable {
                    url: self.url.clone(),
                    attempts,
                    last: failure,
                });
            }
            *retries += 1;
            let wait = closeloop_bus::backoff(attempts - 1, self.retry_base, MAX_BACKOFF)
                .max(asked_wait.unwrap_or_default());
            tracing::info!(attempt = attempts, wait_ms = wait.as_millis() as u64, %failure, "ingest: retrying a batch");
            tokio::time::sleep(wait).await;
        }
    }
}

impl Refused {
    fn new(pending: Pending, status: u16, problems: Vec<Problem>) -> Self {
        // Ingest refuses dates older than its INGEST_MAX_EVENT_AGE_DAYS (and in the
        // future): a past date refused is an old one.
        let too_old = problems.iter().any(|p| p.field == "occurred_at")
            && pending.occurred_at.is_some_and(|at| at < Utc::now());
        Self {
            line: pending.line,
            event_id: pending.event_id,
            status,
            problems,
            too_old,
            item: serde_json::from_str(&pending.json).unwrap_or(Value::String(pending.json)),
        }
    }
}

/// `/items/3/customer/email` → (3, `customer/email`); `/items/3` → (3, ``).
fn item_pointer(pointer: &str) -> Option<(usize, String)> {
    let rest = pointer.strip_prefix("/items/")?;
    let (index, field) = rest.split_once('/').unwrap_or((rest, ""));
    Some((index.parse().ok()?, field.to_owned()))
}

async fn problem_of(response: reqwest::Response) -> ProblemBody {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|_| ProblemBody {
        title: status.to_string(),
        detail: (!text.trim().is_empty()).then(|| text.chars().take(300).collect()),
        errors: Vec::new(),
    })
}

/// An error with its causes (`error sending request: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_pointers_name_the_item_and_its_field() {
        assert_eq!(
            item_pointer("/items/3/customer/email"),
            Some((3, "customer/email".into()))
        );
        assert_eq!(item_pointer("/items/12"), Some((12, String::new())));
        assert_eq!(item_pointer("/text"), None);
        assert_eq!(item_pointer("/items/x/text"), None);
    }

    #[test]
    fn an_old_date_refused_is_told_apart() {
        let pending = |days_ago: i64| Pending {
            line: 2,
            event_id: Uuid::nil(),
            occurred_at: Some(Utc::now() - chrono::Duration::days(days_ago)),
            json: "{\"text\":\"x\"}".into(),
        };
        let refused = Refused::new(
            pending(400),
            422,
            vec![Problem::new(
                "occurred_at",
                "must not be more than 365 days in the past",
            )],
        );
        assert!(refused.too_old);
        assert_eq!(refused.item["text"], "x");
        let refused = Refused::new(pending(3), 422, vec![Problem::new("rating", "bad")]);
        assert!(!refused.too_old);
    }
}

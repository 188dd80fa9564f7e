//! Replay preview of a proposed taxonomy version: what it would move over a period.
//!
//! "Before" is what trends counted for each feedback of the period (its stored mentions;
//! none = no theme); "after" is the proposed version's classification of the raw text
//! read again from `feedback.raw.v1`. So a theme's "added" equals the mentions a real
//! reclassification of the same period would add. Feedback of erased customers (in the
//! feedback's source or everywhere) is skipped. For every theme that changes, the
//! detector is replayed over the theme's stored mentions twice — as stored, and with the
//! added mentions and without the dropped ones — to tell whether it would have fired
//! differently in the period.
//!
//! Previews run as background jobs on the instance that was asked, in memory: the last
//! [`JOBS_KEPT`] are kept, at most [`MAX_RUNNING`] run at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use closeloop_bus::TopicReader;
use closeloop_classify::{Classifier, Input, LexiconClassifier, SentimentLabel, Taxonomy};
use closeloop_events::text::excerpt;
use closeloop_events::{Feedback, Period};
use closeloop_http::html::page as html;
use closeloop_http::{parse_json, JsonObject, Problem, ProblemType};
use closeloop_trend::{Detector, DetectorSettings, Mention, Observation};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::Context;
use crate::ops::{self, escape};
use crate::workflow::database_problem;

/// Finished previews kept (running ones are never dropped).
pub const JOBS_KEPT: usize = 20;
/// Previews running at once on one instance: each reads a topic and classifies it all.
pub const MAX_RUNNING: usize = 2;
/// When a client refused for too many running previews may try again.
const RETRY_AFTER_SECONDS: u64 = 30;
const DEFAULT_DAYS: i64 = 7;
const MAX_DAYS: i64 = 90;
/// Example excerpts per theme and direction.
const EXAMPLES: usize = 3;
/// Records read (and classified, on the blocking pool) at a time.
const BATCH: usize = 500;
/// Excerpt length, as categorise cuts a mention's.
const EXCERPT_CHARS: usize = 160;

// ----- The engine -----

/// One feedback shown as an example of a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub feedback_id: String,
    pub language: String,
    pub excerpt: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Records read from `feedback.raw.v1` (the reader may start before the period).
    pub read: u64,
    /// Feedback received in the period (each once), erased customers' included.
    pub in_period: u64,
    /// Feedback whose themes would change.
    pub changed: u64,
    pub unchanged: u64,
    /// Feedback of erased customers: left out entirely.
    pub skipped_erased: u64,
    /// (feedback, theme) mentions the proposal adds, over every theme.
    pub added: u64,
    /// (feedback, theme) mentions counted now that the proposal would not find.
    pub dropped: u64,
}

/// What moves for one theme.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThemeChange {
    pub theme: String,
    pub added: u64,
    pub dropped: u64,
    pub added_examples: Vec<Example>,
    pub dropped_examples: Vec<Example>,
}

/// Whether the detector fired for a theme in the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Firing {
    pub fired: bool,
    /// Episodes that started in the period.
    pub episodes: u32,
    /// The kinds of trigger (`surge`, `recurrence`), each once.
    pub triggers: Vec<String>,
    /// Each episode's trigger in words.
    pub reasons: Vec<String>,
    /// Event time of the first trigger in the period.
    pub first_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorChange {
    pub theme: String,
    pub before: Firing,
    pub after: Firing,
    pub changed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PreviewResult {
    pub totals: Totals,
    /// Themes with any change, by id.
    pub themes: Vec<ThemeChange>,
    /// Per theme with any change, the detector as stored and as proposed.
    pub detectors: Vec<DetectorChange>,
}

/// One feedback of the period with both sides of the comparison.
#[derive(Debug, Clone)]
struct Judged {
    feedback_id: String,
    customer_id: String,
    given_at_ms: i64,
    language: String,
    excerpt: String,
    /// The proposal's themes, with whether the hit is negative.
    after: Vec<(String, bool)>,
    /// The themes trends counted.
    before: HashSet<String>,
}

/// The comparison so far.
#[derive(Debug, Default)]
struct Tally {
    totals: Totals,
    themes: BTreeMap<String, ThemeChange>,
    /// Per theme, the mentions the proposal adds, as the detector would count them.
    added: HashMap<String, Vec<Mention>>,
    /// Per theme, the feedback whose counted mention the proposal drops.
    dropped: HashMap<String, HashSet<String>>,
}

impl Tally {
    fn add(&mut self, judged: Judged) {
        let example = || Example {
            feedback_id: judged.feedback_id.clone(),
            language: judged.language.clone(),
            excerpt: judged.excerpt.clone(),
        };
        let after: HashSet<&str> = judged.after.iter().map(|(t, _)| t.as_str()).collect();
        let mut changed = false;
        for (theme, negative) in &judged.after {
            if judged.before.contains(theme) {
                continue;
            }
            changed = true;
            self.totals.added += 1;
            let entry = self.theme(theme);
            entry.added += 1;
            if entry.added_examples.len() < EXAMPLES {
                entry.added_examples.push(example());
            }
            self.added.entry(theme.clone()).or_default().push(Mention {
                feedback_id: judged.feedback_id.clone(),
                customer_id: judged.customer_id.clone(),
                negative: *negative,
                at_ms: judged.given_at_ms,
            });
        }
        for theme in &judged.before {
            if after.contains(theme.as_str()) {
                continue;
            }
            changed = true;
            self.totals.dropped += 1;
            let entry = self.theme(theme);
            entry.dropped += 1;
            if entry.dropped_examples.len() < EXAMPLES {
                entry.dropped_examples.push(example());
            }
            self.dropped
                .entry(theme.clone())
                .or_default()
                .insert(judged.feedback_id.clone());
        }
        if changed {
            self.totals.changed += 1;
        } else {
            self.totals.unchanged += 1;
        }
    }

    fn theme(&mut self, theme: &str) -> &mut ThemeChange {
        self.themes
            .entry(theme.to_owned())
            .or_insert_with(|| ThemeChange {
                theme: theme.to_owned(),
                ..ThemeChange::default()
            })
    }
}

/// Classifies one feedback with the proposal (pure); `before` is filled in later.
fn judge(classifier: &LexiconClassifier, feedback: &Feedback) -> Judged {
    let result = classifier.classify(&Input {
        text: &feedback.text,
        language_hint: feedback.customer.locale.as_deref(),
        rating: feedback.rating,
        nps: feedback.nps,
    });
    Judged {
        feedback_id: feedback.feedback_id.to_string(),
        customer_id: feedback.customer.id.clone(),
        given_at_ms: feedback.given_at.timestamp_millis(),
        language: result.language.as_str().to_owned(),
        excerpt: excerpt(&feedback.text, EXCERPT_CHARS),
        after: result
            .themes
            .into_iter()
            .map(|hit| (hit.id, hit.sentiment == SentimentLabel::Negative))
            .collect(),
        before: HashSet::new(),
    }
}

/// Replays `mentions` (any order) through a fresh detector: those before the period in
/// one batch (the history the detector warms up on), those in it one by one in event
/// time order, noting every episode that starts in the period.
pub fn replay(
    settings: &DetectorSettings,
    theme: &str,
    mentions: &[Mention],
    period: Period,
) -> Firing {
    let (since, until) = (
        period.since.timestamp_millis(),
        period.until.timestamp_millis(),
    );
    let mut sorted: Vec<&Mention> = mentions.iter().filter(|m| m.at_ms < until).collect();
    sorted.sort_by(|a, b| (a.at_ms, &a.feedback_id).cmp(&(b.at_ms, &b.feedback_id)));
    let split = sorted.partition_point(|m| m.at_ms < since);
    let mut detector = Detector::new(settings.clone());
    let history: Vec<Mention> = sorted[..split].iter().map(|m| (*m).clone()).collect();
    if !history.is_empty() {
        detector.observe_batch(theme, &history);
    }
    let mut firing = Firing::default();
    let mut episodes = HashSet::new();
    for mention in &sorted[split..] {
        let (_, observation) = detector.observe_batch(theme, std::slice::from_ref(*mention));
        let Observation::Raised(signal) = observation else {
            continue;
        };
        let at = signal.triggered_at_ms();
        // "Raised" also means an episode moved or grew: one entry per episode.
        if !(since..until).contains(&at) || !episodes.insert(at) {
            continue;
        }
        firing.fired = true;
        firing.episodes += 1;
        let name = signal.trigger.name().to_owned();
        if !firing.triggers.contains(&name) {
            firing.triggers.push(name);
        }
        firing.reasons.push(signal.trigger.describe(&signal.window));
        if firing.first_at.is_none() {
            firing.first_at = DateTime::from_timestamp_millis(at);
        }
    }
    firing
}

/// Why a preview failed.
#[derive(Debug, thiserror::Error)]
enum PreviewError {
    #[error("reading feedback.raw.v1: {0}")]
    Read(#[from] closeloop_bus::BusError),
    #[error("database: {0}")]
    Database(#[from] closeloop_store::sqlx::Error),
    #[error("classifying: {0}")]
    Classify(#[from] tokio::task::JoinError),
}

/// Runs the whole preview, reporting progress to `job`.
async fn run(ctx: &Context, job: &Job, taxonomy: Taxonomy) -> Result<PreviewResult, PreviewError> {
    let period = job.period;
    let mut reader = TopicReader::<Feedback>::open(&ctx.brokers, Some(period.since)).await?;
    job.progress(reader.progress());
    let classifier = Arc::new(LexiconClassifier::new(taxonomy));
    let mut tally = Tally::default();
    let mut seen = HashSet::new();
    while let Some(batch) = reader.next_batch(BATCH).await? {
        // The reader may start early and a record may be there twice (a replayed publish).
        let mut in_period: Vec<Feedback> = batch
            .into_iter()
            .map(|incoming| incoming.envelope.data)
            .filter(|feedback| period.contains(feedback.received_at))
            .filter(|feedback| seen.insert(feedback.feedback_id))
            .collect();
        tally.totals.in_period += in_period.len() as u64;
        let erased = erased(ctx, &in_period).await?;
        in_period.retain(|feedback| !erased.contains(&feedback.feedback_id));
        tally.totals.skipped_erased += erased.len() as u64;

        let classifier = classifier.clone();
        let mut judged = tokio::task::spawn_blocking(move || {
            in_period
                .iter()
                .map(|feedback| judge(&classifier, feedback))
                .collect::<Vec<_>>()
        })
        .await?;
        let ids: Vec<&str> = judged.iter().map(|j| j.feedback_id.as_str()).collect();
        let mut counted: HashMap<String, HashSet<String>> = HashMap::new();
        for (feedback_id, theme) in ctx.store.counted_themes(&ids).await? {
            counted.entry(feedback_id).or_default().insert(theme);
        }
        for mut one in judged.drain(..) {
            one.before = counted.remove(&one.feedback_id).unwrap_or_default();
            tally.add(one);
        }
        tally.totals.read = reader.progress().read;
        job.progress(reader.progress());
    }
    tally.totals.read = reader.progress().read;
    let detectors = detectors(ctx, &mut tally, period).await?;
    Ok(PreviewResult {
        totals: tally.totals,
        themes: tally.themes.into_values().collect(),
        detectors,
    })
}

/// The feedback of erased customers among `feedback` (erased everywhere, or in the
/// feedback's source).
async fn erased(
    ctx: &Context,
    feedback: &[Feedback],
) -> Result<HashSet<Uuid>, closeloop_store::sqlx::Error> {
    let pseudonyms: Vec<String> = feedback
        .iter()
        .map(|f| ctx.store.pseudonym_of(&f.customer.id))
        .collect();
    let unique: HashSet<&str> = pseudonyms.iter().map(String::as_str).collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    let mut scopes: HashMap<String, HashSet<String>> = HashMap::new();
    for (pseudonym, scope) in ctx.store.erasures_of(&unique).await? {
        scopes.entry(pseudonym).or_default().insert(scope);
    }
    Ok(feedback
        .iter()
        .zip(&pseudonyms)
        .filter(|(f, pseudonym)| {
            scopes
                .get(pseudonym.as_str())
                .is_some_and(|scopes| scopes.contains("*") || scopes.contains(&f.source))
        })
        .map(|(f, _)| f.feedback_id)
        .collect())
}

/// The detector as stored and as proposed, for every theme that changes.
async fn detectors(
    ctx: &Context,
    tally: &mut Tally,
    period: Period,
) -> Result<Vec<DetectorChange>, PreviewError> {
    let settings = ctx.detection().settings().clone();
    let mut changes = Vec::new();
    let themes: Vec<String> = tally.themes.keys().cloned().collect();
    for theme in themes {
        let history_ms = ctx.detection().config(&theme).history_ms();
        let stored = ctx
            .store
            .theme_mentions(
                &theme,
                period.since.timestamp_millis().saturating_sub(history_ms),
                i64::MIN,
            )
            .await?;
        let added = tally.added.remove(&theme).unwrap_or_default();
        let dropped = tally.dropped.remove(&theme).unwrap_or_default();
        let settings = settings.clone();
        let change = tokio::task::spawn_blocking(move || {
            let before = replay(&settings, &theme, &stored, period);
            let mut proposed: Vec<Mention> = stored
                .into_iter()
                .filter(|m| !dropped.contains(&m.feedback_id))
                .collect();
            proposed.extend(added);
            let after = replay(&settings, &theme, &proposed, period);
            DetectorChange {
                changed: before.fired != after.fired || before.first_at != after.first_at,
                theme,
                before,
                after,
            }
        })
        .await?;
        changes.push(change);
    }
    Ok(changes)
}

// ----- The jobs -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobProgress {
    /// Records of `feedback.raw.v1` read so far.
    pub read: u64,
    /// Records to read in all.
    pub total: u64,
}

/// A preview as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: Uuid,
    pub version: String,
    /// The current version when the preview started, if any.
    pub compared_with: Option<String>,
    pub period: Period,
    pub state: JobState,
    pub progress: JobProgress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PreviewResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One preview job.
#[derive(Debug)]
pub struct Job {
    period: Period,
    view: Mutex<JobView>,
}

impl Job {
    fn view(&self) -> MutexGuard<'_, JobView> {
        // A panic elsewhere leaves at worst a stale progress count.
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn progress(&self, progress: closeloop_bus::Progress) {
        self.view().progress = JobProgress {
            read: progress.read,
            total: progress.total,
        };
    }

    fn is_running(&self) -> bool {
        self.view().state == JobState::Running
    }
}

/// The previews of this instance.
pub struct Previews {
    jobs: Mutex<VecDeque<Arc<Job>>>,
    total: IntCounterVec,
}

impl Previews {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let total = IntCounterVec::new(
            Opts::new(
                "closeloop_trends_taxonomy_previews_total",
                "Replay previews of a taxonomy version that ended, by result (done, failed).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(total.clone()))?;
        for result in ["done", "failed"] {
            total.with_label_values(&[result]);
        }
        Ok(Self {
            jobs: Mutex::new(VecDeque::new()),
            total,
        })
    }

    fn jobs(&self) -> MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, id: Uuid) -> Option<JobView> {
        self.jobs()
            .iter()
            .map(|job| job.view().clone())
            .find(|view| view.id == id)
    }

    /// Registers a new running job, unless [`MAX_RUNNING`] run already.
    fn admit(&self, view: JobView) -> Option<Arc<Job>> {
        let mut jobs = self.jobs();
        if jobs.iter().filter(|job| job.is_running()).count() >= MAX_RUNNING {
            return None;
        }
        let job = Arc::new(Job {
            period: view.period,
            view: Mutex::new(view),
        });
        jobs.push_back(job.clone());
        while jobs.len() > JOBS_KEPT {
            match jobs.iter().position(|job| !job.is_running()) {
                Some(oldest) => jobs.remove(oldest),
                None => break,
            };
        }
        Some(job)
    }
}

/// Starts a preview of `version` over `period` in the background.
pub async fn start(ctx: &Arc<Context>, version: &str, period: Period) -> Result<JobView, Problem> {
    let Some(row) = ctx
        .store
        .taxonomy_version(version)
        .await
        .map_err(|e| database_problem(&e))?
    else {
        return Err(Problem::new(ProblemType::NotFound)
            .detail(format!("there is no taxonomy version {version:?}")));
    };
    let taxonomy = serde_json::from_str(&row.taxonomy_json)
        .map_err(closeloop_classify::TaxonomyError::from)
        .and_then(Taxonomy::from_json)
        .map_err(|error| {
            tracing::error!(version, %error, "stored taxonomy version cannot be read");
            Problem::internal(format!("the stored version {version:?} cannot be read"))
        })?;
    let compared_with = ctx
        .store
        .current_taxonomy()
        .await
        .map_err(|e| database_problem(&e))?
        .map(|current| current.version);
    let view = JobView {
        id: Uuid::now_v7(),
        version: row.version,
        compared_with,
        period,
        state: JobState::Running,
        progress: JobProgress::default(),
        result: None,
        error: None,
    };
    let Some(job) = ctx.previews.admit(view.clone()) else {
        return Err(Problem::new(ProblemType::RateLimited)
            .detail(format!(
                "{MAX_RUNNING} previews are running on this instance; try again when one is done"
            ))
            .retry_after(RETRY_AFTER_SECONDS));
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let outcome = run(&ctx, &job, taxonomy).await;
        let mut view = job.view();
        match outcome {
            Ok(result) => {
                tracing::info!(
                    id = %view.id,
                    version = %view.version,
                    changed = result.totals.changed,
                    added = result.totals.added,
                    dropped = result.totals.dropped,
                    "taxonomy preview done"
                );
                view.state = JobState::Done;
                view.result = Some(result);
                ctx.previews.total.with_label_values(&["done"]).inc();
            }
            Err(error) => {
                tracing::warn!(id = %view.id, version = %view.version, %error, "taxonomy preview failed");
                view.state = JobState::Failed;
                view.error = Some(error.to_string());
                ctx.previews.total.with_label_values(&["failed"]).inc();
            }
        }
    });
    Ok(view)
}

/// The period asked for: the last [`DEFAULT_DAYS`] days unless given; `since` before
/// `until`, at most [`MAX_DAYS`] days apart. Problems point at the field.
pub fn period_of(
    since: Option<&str>,
    until: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Period, Problem> {
    let mut errors = Vec::new();
    let mut time = |pointer: &str, value: Option<&str>| match value.filter(|v| !v.is_empty()) {
        None => Some(None),
        Some(value) => match DateTime::parse_from_rfc3339(value) {
            Ok(time) => Some(Some(time.with_timezone(&Utc))),
            Err(_) => {
                errors.push(Problem::field(
                    pointer,
                    "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z",
                ));
                None
            }
        },
    };
    let since = time("/since", since);
    let until = time("/until", until);
    let invalid = |errors| {
        Problem::new(ProblemType::InvalidBody)
            .detail("nothing was started: the period is not valid")
            .errors(errors)
    };
    let (Some(since), Some(until)) = (since, until) else {
        return Err(invalid(errors));
    };
    let until = until.unwrap_or(now);
    let since = since.unwrap_or(until - Duration::days(DEFAULT_DAYS));
    if since >= until {
        return Err(invalid(vec![Problem::field(
            "/since",
            "must be before until",
        )]));
    }
    if until - since > Duration::days(MAX_DAYS) {
        return Err(invalid(vec![Problem::field(
            "/since",
            format!("the period can be at most {MAX_DAYS} days"),
        )]));
    }
    Ok(Period { since, until })
}

// ----- HTTP -----

/// The API routes (ops token required when one is configured).
pub fn api_routes(ctx: &Context) -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/v1/taxonomy/versions/{version}/preview",
            post(start_preview),
        )
        .route("/v1/taxonomy/previews/{id}", get(get_preview))
        .route_layer(middleware::from_fn_with_state(
            ctx.ops.token().cloned(),
            closeloop_http::require_ops_token,
        ))
}

/// The `/ops` routes (signed in with the session cookie).
pub fn ops_routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/ops/taxonomy/previews/{id}", get(preview_page))
        .route(
            "/ops/taxonomy/versions/{version}/preview",
            post(start_from_form),
        )
}

#[derive(Debug, Deserialize)]
struct PeriodBody {
    since: Option<String>,
    until: Option<String>,
}

fn path_problem(rejection: PathRejection) -> Problem {
    Problem::new(ProblemType::InvalidParameter).detail(rejection.body_text())
}

fn unknown_preview() -> Problem {
    Problem::new(ProblemType::NotFound).detail("no such preview on this instance")
}

async fn start_preview(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Path(version) = path.map_err(path_problem)?;
    // No body at all: the defaults.
    let body = match body {
        Ok(body) if body.is_empty() => PeriodBody {
            since: None,
            until: None,
        },
        body => {
            let JsonObject(body) = parse_json::<JsonObject<PeriodBody>>(
                &closeloop_http::read_json_body(&headers, body)?,
            )?;
            body
        }
    };
    let period = period_of(body.since.as_deref(), body.until.as_deref(), Utc::now())?;
    let view = start(&ctx, &version, period).await?;
    let mut response = (StatusCode::ACCEPTED, Json(&view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/taxonomy/previews/{}", view.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn get_preview(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, Problem> {
    let Path(id) = path.map_err(path_problem)?;
    let id = Uuid::parse_str(&id).map_err(|_| unknown_preview())?;
    ctx.previews.get(id).map(Json).ok_or_else(unknown_preview)
}

async fn preview_page(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match ops::session(&ctx, &headers).await {
        Ok(Some(_)) => {}
        Ok(None) => return html(StatusCode::OK, ops::login_page(None)),
        Err(page) => return page,
    }
    let view = path
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .and_then(|id| ctx.previews.get(id));
    match view {
        Some(view) => html(StatusCode::OK, render(&view)),
        None => ops::problem_page(&unknown_preview()),
    }
}

async fn start_from_form(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let session = match ops::session(&ctx, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return html(
                StatusCode::UNAUTHORIZED,
                ops::login_page(Some("Please sign in again.")),
            )
        }
        Err(page) => return page,
    };
    if let Err(problem) = ctx.ops.check_form_origin(&headers, &uri) {
        return ops::problem_page(&problem);
    }
    let mut fields = match form {
        Ok(Form(fields)) => fields,
        Err(rejection) => {
            return ops::problem_page(
                &Problem::new(ProblemType::UnreadableBody).detail(rejection.body_text()),
            )
        }
    };
    if !session.csrf_matches(fields.remove("csrf").as_deref()) {
        return ops::problem_page(&ops::form_expired());
    }
    let Ok(Path(version)) = path else {
        return ops::problem_page(&unknown_preview());
    };
    let started = match period_of(
        fields.get("since").map(|s| s.trim()),
        fields.get("until").map(|s| s.trim()),
        Utc::now(),
    ) {
        Ok(period) => start(&ctx, &version, period).await,
        Err(problem) => Err(problem),
    };
    match started {
        Ok(view) => ops::see_other(&format!("/ops/taxonomy/previews/{}", view.id)),
        Err(problem) => ops::problem_page(&problem),
    }
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn firing_text(firing: &Firing) -> String {
    if !firing.fired {
        return "quiet".to_owned();
    }
    let first = firing.first_at.map(when).unwrap_or_default();
    format!(
        "fired ({}) from {first}: {}",
        firing.triggers.join(", "),
        firing.reasons.join("; ")
    )
}

fn examples(out: &mut String, examples: &[Example]) {
    for example in examples {
        out.push_str(&format!(
            "<blockquote class=\"excerpt\">{}<br><small>feedback {} · {}</small></blockquote>",
            escape(&example.excerpt),
            escape(&example.feedback_id),
            escape(&example.language)
        ));
    }
}

/// The preview as a page: progress while it runs (reloading itself), then what moves.
pub fn render(view: &JobView) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "<h1>Preview of taxonomy {}</h1><p class=\"meta\">compared with {} · feedback received \
         {} – {} · <a href=\"/ops\">back to ops</a></p>",
        escape(&view.version),
        escape(
            view.compared_with
                .as_deref()
                .unwrap_or("what trends counted")
        ),
        escape(&when(view.period.since)),
        escape(&when(view.period.until)),
    ));
    match view.state {
        JobState::Running => {
            // No JavaScript: the page reloads itself until the preview is done.
            out.push_str("<meta http-equiv=\"refresh\" content=\"2\">");
            out.push_str(&format!(
                "<p id=\"progress\">Running: {} of {} records read.</p>",
                view.progress.read, view.progress.total
            ));
        }
        JobState::Failed => out.push_str(&format!(
            "<p class=\"errors\" id=\"errors\">The preview failed: {}</p>",
            escape(view.error.as_deref().unwrap_or("unknown error"))
        )),
        JobState::Done => {}
    }
    let Some(result) = &view.result else {
        return ops::layout("closeloop ops — taxonomy preview", &out);
    };
    let t = &result.totals;
    out.push_str(&format!(
        "<p id=\"totals\">{} feedback in the period ({} records read): {} would change, {} \
         would not, {} of erased customers skipped. {} mentions added, {} dropped.</p>",
        t.in_period, t.read, t.changed, t.unchanged, t.skipped_erased, t.added, t.dropped
    ));
    out.push_str("<h2>Themes</h2>");
    if result.themes.is_empty() {
        out.push_str("<p>Nothing would move.</p>");
    }
    for theme in &result.themes {
        out.push_str(&format!(
            "<article id=\"theme-{0}\"><h3>{0}</h3><p>+{1} added · −{2} dropped</p>",
            escape(&theme.theme),
            theme.added,
            theme.dropped
        ));
        if !theme.added_examples.is_empty() {
            out.push_str("<p>Added, for example:</p>");
            examples(&mut out, &theme.added_examples);
        }
        if !theme.dropped_examples.is_empty() {
            out.push_str("<p>Dropped, for example:</p>");
            examples(&mut out, &theme.dropped_examples);
        }
        out.push_str("</article>");
    }
    out.push_str(
        "<h2>Detectors</h2><table id=\"detectors\"><tr><th>Theme</th><th>As counted</th>\
         <th>As proposed</th><th>Changed</th></tr>",
    );
    for change in &result.detectors {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&change.theme),
            escape(&firing_text(&change.before)),
            escape(&firing_text(&change.after)),
            if change.changed { "yes" } else { "no" }
        ));
    }
    out.push_str("</table>");
    ops::layout("closeloop ops — taxonomy preview", &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_trend::DetectorConfig;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn judged(id: &str, after: &[&str], before: &[&str]) -> Judged {
        Judged {
            feedback_id: id.into(),
            customer_id: format!("c-{id}"),
            given_at_ms: 1_000,
            language: "en".into(),
            excerpt: format!("text of {id}"),
            after: after.iter().map(|t| ((*t).to_owned(), true)).collect(),
            before: before.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn added_and_dropped_are_the_differences_per_theme() {
        let mut tally = Tally::default();
        tally.add(judged("f1", &["a", "b"], &["b"]));
        tally.add(judged("f2", &["a"], &["c"]));
        tally.add(judged("f3", &["b"], &["b"]));
        tally.add(judged("f4", &[], &[]));
        for i in 0..5 {
            tally.add(judged(&format!("g{i}"), &["a"], &[]));
        }
        let t = &tally.totals;
        assert_eq!((t.changed, t.unchanged, t.added, t.dropped), (7, 2, 7, 1));
        let a = &tally.themes["a"];
        assert_eq!((a.added, a.dropped), (7, 0));
        assert_eq!(a.added_examples.len(), EXAMPLES);
        assert_eq!(a.added_examples[0].feedback_id, "f1");
        let c = &tally.themes["c"];
        assert_eq!((c.added, c.dropped), (0, 1));
        assert_eq!(c.dropped_examples[0].excerpt, "text of f2");
        assert!(
            !tally.themes.contains_key("b"),
            "unchanged themes are not listed"
        );
        assert_eq!(tally.added["a"].len(), 7);
        assert!(tally.dropped["c"].contains("f2"));
    }

    #[test]
    fn a_period_is_checked_with_pointers_and_defaults_to_the_last_week() {
        let now = at("2026-12-05T00:00:00Z");
        let period = period_of(None, None, now).expect("defaults");
        assert_eq!(period.until, now);
        assert_eq!(period.since, at("2026-11-28T00:00:00Z"));
        let pointer = |since, until| {
            period_of(since, until, now).expect_err("refused").errors[0]
                .pointer
                .clone()
        };
        assert_eq!(pointer(Some("yesterday"), None), "/since");
        assert_eq!(pointer(None, Some("2026-13-01")), "/until");
        assert_eq!(
            pointer(Some("2026-12-02T00:00:00Z"), Some("2026-12-01T00:00:00Z")),
            "/since"
        );
        assert_eq!(
            pointer(Some("2026-01-01T00:00:00Z"), Some("2026-12-01T00:00:00Z")),
            "/since"
        );
        assert!(period_of(Some("2026-12-01T00:00:00Z"), Some(""), now).is_ok());
    }

    fn mention(id: &str, customer: &str, at_ms: i64) -> Mention {
        Mention {
            feedback_id: id.into(),
            customer_id: customer.into(),
            negative: true,
            at_ms,
        }
    }

    #[test]
    fn a_replay_tells_whether_the_detector_fires_in_the_period() {
        let mut config = DetectorConfig::default();
        config.surge.min_negative_mentions = 3;
        config.min_distinct_customers = 2;
        config.surge.min_baseline = 0.05;
        let settings = DetectorSettings::new(config);
        let since = at("2026-12-01T00:00:00Z");
        let period = Period {
            since,
            until: at("2026-12-02T00:00:00Z"),
        };
        let t = since.timestamp_millis() + 3_600_000;
        let quiet = replay(&settings, "x", &[mention("f1", "a", t)], period);
        assert!(!quiet.fired);
        let surge: Vec<Mention> = (0..4)
            .map(|i| mention(&format!("f{i}"), &format!("c{}", i % 2), t + i * 60_000))
            .collect();
        let fired = replay(&settings, "x", &surge, period);
        assert!(fired.fired, "{fired:?}");
        assert_eq!(fired.triggers, ["surge"]);
        assert_eq!(fired.episodes, 1);
        assert!(fired.first_at.is_some_and(|first| period.contains(first)));
        // The same surge after the period is not in it.
        let later = Period {
            since: at("2026-11-01T00:00:00Z"),
            until: since,
        };
        assert!(!replay(&settings, "x", &surge, later).fired);
    }

    fn job_view() -> JobView {
        JobView {
            id: Uuid::now_v7(),
            version: "v".into(),
            compared_with: None,
            period: Period {
                since: at("2026-12-01T00:00:00Z"),
                until: at("2026-12-02T00:00:00Z"),
            },
            state: JobState::Running,
            progress: JobProgress::default(),
            result: None,
            error: None,
        }
    }

    #[test]
    fn at_most_two_run_at_once_and_the_last_twenty_are_kept() {
        let previews = Previews::new(&Registry::new()).expect("metrics");
        let first = previews.admit(job_view()).expect("admitted");
        let second = previews.admit(job_view()).expect("admitted");
        assert!(previews.admit(job_view()).is_none(), "a third waits");
        first.view().state = JobState::Done;
        let mut ids = vec![first.view().id];
        for _ in 0..JOBS_KEPT + 5 {
            let job = previews.admit(job_view()).expect("admitted");
            job.view().state = JobState::Failed;
            ids.push(job.view().id);
        }
        assert_eq!(previews.jobs().len(), JOBS_KEPT);
        let second = second.view().id;
        assert!(previews.get(second).is_some(), "running ones stay");
        assert!(previews.get(ids[0]).is_none(), "the oldest ended one went");
        assert!(previews.get(ids[ids.len() - 1]).is_some());
    }

    #[test]
    fn the_page_escapes_what_feedback_says() {
        let hostile = "<script>alert(1)</script>";
        let view = JobView {
            id: Uuid::now_v7(),
            version: "2026.12-r2".into(),
            compared_with: Some("2026.12".into()),
            period: Period {
                since: at("2026-12-01T00:00:00Z"),
                until: at("2026-12-02T00:00:00Z"),
            },
            state: JobState::Done,
            progress: JobProgress { read: 3, total: 3 },
            result: Some(PreviewResult {
                totals: Totals::default(),
                themes: vec![ThemeChange {
                    theme: "a".into(),
                    added: 1,
                    dropped: 0,
                    added_examples: vec![Example {
                        feedback_id: "f1".into(),
                        language: "en".into(),
                        excerpt: hostile.into(),
                    }],
                    dropped_examples: vec![],
                }],
                detectors: vec![],
            }),
            error: None,
        };
        let page = render(&view);
        assert!(!page.contains(hostile));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("id=\"theme-a\""));
        let running = render(&JobView {
            state: JobState::Running,
            result: None,
            ..view
        });
        assert!(running.contains("http-equiv=\"refresh\""));
        assert!(running.contains("3 of 3"));
    }
}

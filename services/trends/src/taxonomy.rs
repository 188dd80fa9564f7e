//! Themes edited at run time: the taxonomy versions trends proposes, applies and
//! publishes, and the version this instance follows.
//!
//! The database is the truth (see [`crate::store`]'s taxonomy queries), `taxonomy.v1`
//! distributes it: an applied version is published (flagged after the ack), every trends
//! instance reads the topic in a consumer group of its own and switches to what it reads,
//! and a start publishes what an earlier run could not, so the topic's newest record is
//! always the current version.
//!
//! API: `GET /v1/taxonomy`, `GET /v1/taxonomy/versions[/{version}]`,
//! `POST /v1/taxonomy/versions` (a proposal: add, edit or retire one theme) and
//! `POST /v1/taxonomy/versions/{version}/apply` (compare-and-set on the current version).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use closeloop_bus::{BusError, Handler, HandlerError, Incoming, TopicReader};
use closeloop_classify::{Taxonomy, TaxonomyError, ThemeDef};
use closeloop_events::{Envelope, Period, TaxonomyApplied};
use closeloop_http::{parse_json, FieldError, JsonObject, Problem, ProblemType};
use closeloop_runtime::Error;
use closeloop_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::action::time;
use crate::context::Context;
use crate::detection::db_error;
use crate::store::{Applied, TaxonomyVersionRow};
use crate::workflow::database_problem;

/// Longest reclassification period one apply may ask for.
const MAX_RECLASSIFY_DAYS: i64 = 90;
/// How far `until` may lie ahead of this clock (clocks differ a little).
const MAX_UNTIL_AHEAD_MINUTES: i64 = 5;
const LANGUAGES: [&str; 2] = ["en", "de"];

/// The `/v1/taxonomy` routes; [`crate::api`] puts them behind the ops token.
pub(crate) fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/taxonomy", get(current))
        .route("/v1/taxonomy/versions", get(versions).post(propose_api))
        .route("/v1/taxonomy/versions/{version}", get(version))
        .route("/v1/taxonomy/versions/{version}/apply", post(apply_api))
}

/// `<root>-r<seq>` → `<root>`; a version without the suffix is a root itself.
pub(crate) fn root_of(version: &str) -> &str {
    match version.rfind("-r") {
        Some(at)
            if version.len() > at + 2 && version[at + 2..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &version[..at]
        }
        _ => version,
    }
}

/// The stored taxonomy of `row`, validated again.
fn taxonomy_of(row: &TaxonomyVersionRow) -> Result<Taxonomy, TaxonomyError> {
    Taxonomy::from_json(serde_json::from_str(&row.taxonomy_json)?)
}

fn stored_problem(row: &TaxonomyVersionRow, error: &TaxonomyError) -> Problem {
    tracing::error!(version = %row.version, %error, "stored taxonomy version cannot be read");
    Problem::internal(format!(
        "stored taxonomy version {} cannot be read",
        row.version
    ))
}

// ---------------------------------------------------------------------------------------
// Following the current version

/// At start: the file's taxonomy seeds an empty store, the stored current version becomes
/// this instance's, versions applied but never acknowledged are published in order, and
/// the current one is published again unless it is the topic's newest record (a journal
/// that dropped it, a topic created anew).
pub(crate) async fn follow_at_start(ctx: &Context, brokers: &str) -> Result<(), Error> {
    let file = ctx.taxonomy();
    let now = Utc::now().timestamp_millis();
    let seeded = ctx
        .store
        .seed_taxonomy(&file.version, &file.to_json().to_string(), now)
        .await
        .map_err(StoreError::from)?;
    let current = ctx
        .store
        .current_taxonomy()
        .await
        .map_err(StoreError::from)?
        .ok_or_else(|| Error::Config("no taxonomy version is stored".into()))?;
    if root_of(&current.version) != file.version {
        tracing::warn!(
            file = %file.version,
            current = %current.version,
            "the taxonomy file is another version than the stored line: the stored line \
             stays current (run-time edits survive a deploy)"
        );
    }
    let taxonomy = taxonomy_of(&current).map_err(|e| Error::setup("stored taxonomy", e))?;
    ctx.switch_taxonomy(taxonomy);
    ctx.metrics.taxonomy_version(&current.version);
    tracing::info!(version = %current.version, seeded, "following taxonomy version");

    for row in ctx
        .store
        .unpublished_taxonomies()
        .await
        .map_err(StoreError::from)?
    {
        publish(ctx, &row).await?;
        tracing::info!(version = %row.version, "published a taxonomy version a run before could not");
    }
    let mut reader = TopicReader::<TaxonomyApplied>::open(brokers, None).await?;
    let mut newest = None;
    while let Some(batch) = reader.next_batch(100).await? {
        if let Some(last) = batch.last() {
            newest = Some(last.envelope.data.version.clone());
        }
    }
    if newest.as_deref() != Some(current.version.as_str()) {
        publish(ctx, &current).await?;
        tracing::info!(
            version = %current.version,
            newest = ?newest,
            "published the current taxonomy version again: the topic ended with another"
        );
    }
    Ok(())
}

/// The event announcing `row` (applied) as the current version.
fn applied_event(row: &TaxonomyVersionRow) -> Result<TaxonomyApplied, serde_json::Error> {
    Ok(TaxonomyApplied {
        version: row.version.clone(),
        based_on: row.based_on.clone(),
        taxonomy: serde_json::from_str(&row.taxonomy_json)?,
        change: row.change.clone(),
        applied_at: time(row.applied_at_ms.unwrap_or(row.created_at_ms)),
        reclassify: match (row.reclassify_since_ms, row.reclassify_until_ms) {
            (Some(since), Some(until)) => Some(Period {
                since: time(since),
                until: time(until),
            }),
            _ => None,
        },
    })
}

/// Publishes an applied version and flags it published once the broker acknowledged it.
async fn publish(ctx: &Context, row: &TaxonomyVersionRow) -> Result<(), BusError> {
    let event = applied_event(row).map_err(|error| BusError::Read {
        topic: closeloop_events::topics::TAXONOMY.to_owned(),
        reason: format!("stored version {} is not JSON: {error}", row.version),
    })?;
    ctx.publisher.publish(&Envelope::new(event), None).await?;
    // Not flagged: published again at the next start, which consumers take as a no-op.
    if let Err(error) = ctx
        .store
        .mark_taxonomy_published(&row.version, Utc::now().timestamp_millis())
        .await
    {
        tracing::warn!(version = %row.version, %error, "could not flag a taxonomy version published");
    }
    Ok(())
}

/// `taxonomy.v1` → the version this instance follows. Each instance reads it in a group
/// of its own, so every instance sees every record.
pub(crate) struct TaxonomyHandler {
    ctx: Arc<Context>,
}

impl TaxonomyHandler {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

impl Handler for TaxonomyHandler {
    type Event = TaxonomyApplied;

    async fn handle(&self, incoming: &Incoming<TaxonomyApplied>) -> Result<(), HandlerError> {
        let applied = &incoming.envelope.data;
        let ctx = &self.ctx;
        if ctx.taxonomy().version == applied.version {
            return Ok(());
        }
        // A new group reads the topic from its start: a version stored as applied before
        // the current one is history, not a change.
        if let Some(row) = ctx
            .store
            .taxonomy_version(&applied.version)
            .await
            .map_err(db_error)?
        {
            let current = ctx.store.current_taxonomy().await.map_err(db_error)?;
            let current_seq = current.and_then(|c| c.applied_seq).unwrap_or(0);
            if row.applied_seq.is_some_and(|seq| seq < current_seq) {
                tracing::debug!(version = %applied.version, "an older taxonomy version read again");
                return Ok(());
            }
        }
        match Taxonomy::from_json(applied.taxonomy.clone()) {
            Ok(taxonomy) if taxonomy.version == applied.version => {
                ctx.switch_taxonomy(taxonomy);
                tracing::info!(version = %applied.version, change = %applied.change, "switched to taxonomy version");
            }
            Ok(taxonomy) => tracing::warn!(
                version = %applied.version,
                inner = %taxonomy.version,
                "skipped a taxonomy event whose taxonomy names another version"
            ),
            // Logged and skipped: the version stays what it was.
            Err(error) => tracing::warn!(
                version = %applied.version,
                %error,
                "skipped an invalid taxonomy version"
            ),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// What the API shows

/// The current version, `GET /v1/taxonomy`.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentView {
    pub version: String,
    pub based_on: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub themes: serde_json::Value,
}

/// One stored version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: String,
    pub based_on: Option<String>,
    /// `proposed` or `applied`.
    pub state: &'static str,
    pub change: String,
    pub created_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
    pub current: bool,
    /// Only when one version is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclassify: Option<Period>,
}

impl VersionView {
    fn of(row: &TaxonomyVersionRow, current: &str, with_taxonomy: bool) -> Self {
        VersionView {
            version: row.version.clone(),
            based_on: row.based_on.clone(),
            state: if row.applied_seq.is_some() {
                "applied"
            } else {
                "proposed"
            },
            change: row.change.clone(),
            created_at: time(row.created_at_ms),
            applied_at: row.applied_at_ms.map(time),
            current: row.version == current,
            taxonomy: with_taxonomy
                .then(|| serde_json::from_str(&row.taxonomy_json).ok())
                .flatten(),
            reclassify: match (row.reclassify_since_ms, row.reclassify_until_ms) {
                (Some(since), Some(until)) => Some(Period {
                    since: time(since),
                    until: time(until),
                }),
                _ => None,
            },
        }
    }
}

async fn current_version(ctx: &Context) -> Result<TaxonomyVersionRow, Problem> {
    ctx.store
        .current_taxonomy()
        .await
        .map_err(|e| database_problem(&e))?
        .ok_or_else(|| Problem::new(ProblemType::NotReady).detail("no taxonomy version is stored"))
}

async fn current(State(ctx): State<Arc<Context>>) -> Result<Json<CurrentView>, Problem> {
    let row = current_version(&ctx).await?;
    let taxonomy: serde_json::Value =
        serde_json::from_str(&row.taxonomy_json).map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(CurrentView {
        version: row.version,
        based_on: row.based_on,
        applied_at: row.applied_at_ms.map(time),
        themes: taxonomy["themes"].clone(),
    }))
}

/// Every version, newest first.
pub(crate) async fn list(ctx: &Context) -> Result<Vec<VersionView>, Problem> {
    let rows = ctx
        .store
        .taxonomy_versions()
        .await
        .map_err(|e| database_problem(&e))?;
    let current = rows
        .iter()
        .filter(|row| row.applied_seq.is_some())
        .max_by_key(|row| row.applied_seq)
        .map(|row| row.version.clone())
        .unwrap_or_default();
    Ok(rows
        .iter()
        .map(|row| VersionView::of(row, &current, false))
        .collect())
}

async fn versions(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<VersionView>>, Problem> {
    Ok(Json(list(&ctx).await?))
}

fn version_path(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(version) = path.map_err(|rejection| {
        Problem::new(ProblemType::InvalidParameter).detail(rejection.body_text())
    })?;
    Ok(version)
}

fn unknown_version(version: &str) -> Problem {
    Problem::new(ProblemType::NotFound).detail(format!("there is no taxonomy version {version:?}"))
}

async fn version(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<VersionView>, Problem> {
    let version = version_path(path)?;
    let row = ctx
        .store
        .taxonomy_version(&version)
        .await
        .map_err(|e| database_problem(&e))?
        .ok_or_else(|| unknown_version(&version))?;
    let current = current_version(&ctx).await?;
    Ok(Json(VersionView::of(&row, &current.version, true)))
}

// ---------------------------------------------------------------------------------------
// Proposing

/// One change to one theme.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Add(ThemeDef),
    Edit(ThemeDef),
    Retire(String),
}

impl Change {
    /// Where a problem with the theme is reported.
    fn pointer(&self) -> &'static str {
        match self {
            Change::Add(_) => "/add_theme",
            Change::Edit(_) => "/edit_theme",
            Change::Retire(_) => "/retire_theme",
        }
    }

    fn describe(&self) -> String {
        match self {
            Change::Add(theme) => format!("added theme {}", theme.id),
            Change::Edit(theme) => format!("edited theme {}", theme.id),
            Change::Retire(id) => format!("retired theme {id}"),
        }
    }

    fn make(&self, base: &Taxonomy, version: &str) -> Result<Taxonomy, TaxonomyError> {
        match self {
            Change::Add(theme) => base.with_theme_added(version, theme.clone()),
            Change::Edit(theme) => base.with_theme_replaced(version, theme.clone()),
            Change::Retire(id) => base.with_theme_retired(version, id),
        }
    }

    /// The field a taxonomy error is about.
    fn problem_with(&self, error: &TaxonomyError) -> FieldError {
        let at = self.pointer();
        let field = |suffix: &str| {
            if matches!(self, Change::Retire(_)) {
                at.to_owned()
            } else {
                format!("{at}{suffix}")
            }
        };
        let pointer = match error {
            TaxonomyError::InvalidId(_)
            | TaxonomyError::DuplicateId(_)
            | TaxonomyError::UnknownTheme(_)
            | TaxonomyError::HasChildren { .. }
            | TaxonomyError::Empty => field("/id"),
            TaxonomyError::UnknownParent { .. } | TaxonomyError::ParentCycle(_) => field("/parent"),
            TaxonomyError::MissingName { lang, .. } => field(&format!("/names/{lang}")),
            TaxonomyError::UnknownLanguage { lang, .. } => field(&format!(
                "/keywords/{}",
                closeloop_http::body::escape_pointer_token(lang)
            )),
            TaxonomyError::EmptyCue { field: f, lang, .. } => field(&format!(
                "/{f}/{}",
                closeloop_http::body::escape_pointer_token(lang)
            )),
            TaxonomyError::NoCues(_) => field("/keywords"),
            _ => String::new(),
        };
        let detail = match error {
            TaxonomyError::DuplicateId(id) => {
                format!("there is a theme {id:?} already: edit it instead")
            }
            TaxonomyError::Empty => "the last theme cannot be retired".to_owned(),
            other => other.to_string(),
        };
        Problem::field(pointer, detail)
    }
}

/// A change and the version it is based on (the current one when `None`).
#[derive(Debug, Clone)]
pub(crate) struct Proposal {
    pub based_on: Option<String>,
    pub change: Change,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeBody {
    based_on: Option<String>,
    add_theme: Option<JsonObject<ThemeBody>>,
    edit_theme: Option<JsonObject<ThemeBody>>,
    retire_theme: Option<String>,
}

/// A theme as sent; every field optional so a missing one gets its own pointer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThemeBody {
    pub id: Option<String>,
    pub names: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub phrases: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub weak: BTreeMap<String, Vec<String>>,
    pub parent: Option<String>,
}

pub(crate) fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::new(ProblemType::InvalidBody)
        .detail(format!(
            "Invalid taxonomy change: {} field(s) are invalid; nothing changed",
            errors.len()
        ))
        .errors(errors)
}

/// The theme of a body, trimmed, with every field problem found (pointers under `at`).
fn theme_of(at: &str, body: ThemeBody, errors: &mut Vec<FieldError>) -> ThemeDef {
    let token = closeloop_http::body::escape_pointer_token;
    let id = body.id.unwrap_or_default().trim().to_owned();
    if id.is_empty() {
        errors.push(Problem::field(format!("{at}/id"), "is required"));
    }
    let mut names = BTreeMap::new();
    match body.names {
        None => errors.push(Problem::field(format!("{at}/names"), "is required")),
        Some(given) => {
            for language in LANGUAGES {
                if given.get(language).is_none_or(|n| n.trim().is_empty()) {
                    errors.push(Problem::field(
                        format!("{at}/names/{language}"),
                        "is required",
                    ));
                }
            }
            for (language, name) in given {
                if !LANGUAGES.contains(&language.as_str()) {
                    errors.push(Problem::field(
                        format!("{at}/names/{}", token(&language)),
                        "only `en` and `de` are supported",
                    ));
                } else if !name.trim().is_empty() {
                    names.insert(language, name.trim().to_owned());
                }
            }
        }
    }
    let mut cues = |field: &str, given: BTreeMap<String, Vec<String>>| {
        let mut kept = BTreeMap::new();
        for (language, terms) in given {
            let pointer = format!("{at}/{field}/{}", token(&language));
            if !LANGUAGES.contains(&language.as_str()) {
                errors.push(Problem::field(pointer, "only `en` and `de` are classified"));
                continue;
            }
            for (i, term) in terms.iter().enumerate() {
                if term.trim().is_empty() {
                    errors.push(Problem::field(
                        format!("{pointer}/{i}"),
                        "must not be blank",
                    ));
                }
            }
            let terms: Vec<String> = terms.iter().map(|t| t.trim().to_owned()).collect();
            if !terms.is_empty() {
                kept.insert(language, terms);
            }
        }
        kept
    };
    let keywords = cues("keywords", body.keywords);
    let phrases = cues("phrases", body.phrases);
    let weak = cues("weak", body.weak);
    ThemeDef {
        id,
        names,
        keywords,
        phrases,
        weak,
        parent: body
            .parent
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
    }
}

/// Parses and checks a proposal's JSON body.
fn proposal_from_json(body: &[u8]) -> Result<Proposal, Problem> {
    let JsonObject(body): JsonObject<ProposeBody> = parse_json(body)?;
    let given = [
        body.add_theme.is_some(),
        body.edit_theme.is_some(),
        body.retire_theme.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(invalid(vec![Problem::field(
            "",
            "give exactly one of `add_theme`, `edit_theme` and `retire_theme`",
        )]));
    }
    let based_on = body.based_on;
    if let Some(JsonObject(theme)) = body.add_theme {
        theme_proposal(based_on, false, theme)
    } else if let Some(JsonObject(theme)) = body.edit_theme {
        theme_proposal(based_on, true, theme)
    } else {
        checked_proposal(
            based_on,
            Change::Retire(body.retire_theme.unwrap_or_default()),
        )
    }
}

/// An addition (or with `edit`, a replacement) of the theme in `body`, checked.
pub(crate) fn theme_proposal(
    based_on: Option<String>,
    edit: bool,
    body: ThemeBody,
) -> Result<Proposal, Problem> {
    let mut errors = Vec::new();
    let change = if edit {
        Change::Edit(theme_of("/edit_theme", body, &mut errors))
    } else {
        Change::Add(theme_of("/add_theme", body, &mut errors))
    };
    finish(based_on, change, errors)
}

/// A retirement (or an already checked theme change) with its base, checked.
pub(crate) fn checked_proposal(
    based_on: Option<String>,
    change: Change,
) -> Result<Proposal, Problem> {
    finish(based_on, change, Vec::new())
}

fn finish(
    based_on: Option<String>,
    change: Change,
    mut errors: Vec<FieldError>,
) -> Result<Proposal, Problem> {
    let change = match change {
        Change::Retire(id) => {
            let id = id.trim().to_owned();
            if id.is_empty() {
                errors.push(Problem::field("/retire_theme", "is required"));
            }
            Change::Retire(id)
        }
        other => other,
    };
    let based_on = based_on.map(|b| b.trim().to_owned());
    if based_on.as_deref() == Some("") {
        errors.push(Problem::field("/based_on", "must not be blank"));
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(Proposal { based_on, change })
}

/// Stores a checked proposal as a new version (validated against its base).
pub(crate) async fn propose(
    ctx: &Context,
    proposal: Proposal,
) -> Result<TaxonomyVersionRow, Problem> {
    let base = match &proposal.based_on {
        Some(version) => ctx
            .store
            .taxonomy_version(version)
            .await
            .map_err(|e| database_problem(&e))?
            .ok_or_else(|| {
                ctx.metrics.taxonomy_change("rejected");
                invalid(vec![Problem::field(
                    "/based_on",
                    format!("there is no taxonomy version {version:?}"),
                )])
            })?,
        None => current_version(ctx).await?,
    };
    let taxonomy = taxonomy_of(&base).map_err(|e| stored_problem(&base, &e))?;
    let change = &proposal.change;
    let made = ctx
        .store
        .propose_taxonomy(
            root_of(&base.version),
            &base.version,
            &change.describe(),
            Utc::now().timestamp_millis(),
            |version| {
                change
                    .make(&taxonomy, version)
                    .map(|next| next.to_json().to_string())
            },
        )
        .await
        .map_err(|e| database_problem(&e))?;
    match made {
        Ok(row) => {
            ctx.metrics.taxonomy_change("proposed");
            tracing::info!(version = %row.version, based_on = %base.version, change = %row.change, "taxonomy version proposed");
            Ok(row)
        }
        Err(error) => {
            ctx.metrics.taxonomy_change("rejected");
            Err(invalid(vec![change.problem_with(&error)]))
        }
    }
}

async fn propose_api(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = closeloop_http::read_json_body(&headers, body)?;
    let proposal = proposal_from_json(&body).inspect_err(|problem| {
        if problem.problem_type() == ProblemType::InvalidBody {
            ctx.metrics.taxonomy_change("rejected");
        }
    })?;
    let row = propose(&ctx, proposal).await?;
    let current = current_version(&ctx).await?;
    let location = format!("/v1/taxonomy/versions/{}", row.version);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(VersionView::of(&row, &current.version, true)),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Applying

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    reclassify: Option<JsonObject<ReclassifyBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReclassifyBody {
    since: Option<String>,
    until: Option<String>,
}

/// A reclassification period `[since, until)` as sent (RFC 3339 each), checked against
/// `now`: `since` before `until`, `until` not in the future (give or take a few minutes),
/// at most [`MAX_RECLASSIFY_DAYS`] long. Unix milliseconds.
pub(crate) fn reclassify_period(
    since: Option<&str>,
    until: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(i64, i64), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut parse = |name: &str, value: Option<&str>| -> Option<DateTime<Utc>> {
        let pointer = format!("/reclassify/{name}");
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => {
                errors.push(Problem::field(pointer, "is required"));
                None
            }
            Some(value) => match DateTime::parse_from_rfc3339(value) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(_) => {
                    errors.push(Problem::field(
                        pointer,
                        "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z",
                    ));
                    None
                }
            },
        }
    };
    let since = parse("since", since);
    let until = parse("until", until);
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            errors.push(Problem::field(
                "/reclassify/since",
                "must be before `until`",
            ));
        } else if until - since > Duration::days(MAX_RECLASSIFY_DAYS) {
            errors.push(Problem::field(
                "/reclassify/since",
                format!("the period may span at most {MAX_RECLASSIFY_DAYS} days"),
            ));
        }
        if until > now + Duration::minutes(MAX_UNTIL_AHEAD_MINUTES) {
            errors.push(Problem::field(
                "/reclassify/until",
                "must not be in the future: feedback not yet received is classified by the new version anyway",
            ));
        }
        if errors.is_empty() {
            return Ok((since.timestamp_millis(), until.timestamp_millis()));
        }
    }
    Err(errors)
}

fn apply_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<(i64, i64)>, Problem> {
    // No body at all: apply without reclassifying.
    if body.as_ref().is_ok_and(|b| b.is_empty()) {
        return Ok(None);
    }
    let body = closeloop_http::read_json_body(headers, body)?;
    let JsonObject(body): JsonObject<ApplyBody> = parse_json(&body)?;
    let Some(JsonObject(reclassify)) = body.reclassify else {
        return Ok(None);
    };
    reclassify_period(
        reclassify.since.as_deref(),
        reclassify.until.as_deref(),
        Utc::now(),
    )
    .map(Some)
    .map_err(invalid)
}

/// Applies a proposal (when its base is still current), publishes it and makes it this
/// instance's version.
pub(crate) async fn apply(
    ctx: &Context,
    version: &str,
    reclassify: Option<(i64, i64)>,
) -> Result<VersionView, Problem> {
    let applied = ctx
        .store
        .apply_taxonomy(version, Utc::now().timestamp_millis(), reclassify)
        .await
        .map_err(|e| database_problem(&e))?;
    let row = match applied {
        Applied::Now(row) => row,
        Applied::Unknown => return Err(unknown_version(version)),
        Applied::Already(row) => {
            ctx.metrics.taxonomy_change("rejected");
            return Err(Problem::new(ProblemType::Conflict).detail(format!(
                "taxonomy version {} is applied already",
                row.version
            )));
        }
        Applied::Stale { current } => {
            ctx.metrics.taxonomy_change("rejected");
            return Err(Problem::new(ProblemType::Conflict).detail(format!(
                "taxonomy version {version} is based on a version that is no longer current: \
                 {current} was applied since; propose the change again on {current}"
            )));
        }
    };
    ctx.metrics.taxonomy_change("applied");
    tracing::info!(version = %row.version, change = %row.change, "taxonomy version applied");
    // Committed: this instance follows it whatever the broker says.
    match taxonomy_of(&row) {
        Ok(taxonomy) => {
            ctx.switch_taxonomy(taxonomy);
        }
        Err(error) => return Err(stored_problem(&row, &error)),
    }
    if let Err(error) = publish(ctx, &row).await {
        tracing::warn!(version = %row.version, %error, "applied taxonomy version not published");
        return Err(Problem::new(ProblemType::BrokerUnavailable).detail(format!(
            "taxonomy version {} is applied, but taxonomy.v1 did not take it ({error}): \
             other services follow it once it is published, which trends does again at its \
             next start",
            row.version
        )));
    }
    Ok(VersionView::of(&row, &row.version, true))
}

async fn apply_api(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VersionView>, Problem> {
    let version = version_path(path)?;
    let reclassify = apply_body(&headers, body)?;
    Ok(Json(apply(&ctx, &version, reclassify).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(problem: &Problem) -> Vec<&str> {
        problem.errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn roots_drop_the_revision() {
        assert_eq!(root_of("2026.12-r12"), "2026.12");
        assert_eq!(root_of("2026.12"), "2026.12");
        assert_eq!(root_of("v-rx"), "v-rx");
        assert_eq!(root_of("v-r"), "v-r");
    }

    #[test]
    fn proposals_report_every_field() {
        let problem = proposal_from_json(
            br#"{"add_theme": {"names": {"en": " ", "fr": "x"},
                 "keywords": {"fr": ["a"], "en": ["ok", " "]}}}"#,
        )
        .expect_err("invalid");
        assert_eq!(problem.status, 422);
        assert_eq!(
            pointers(&problem),
            [
                "/add_theme/id",
                "/add_theme/names/en",
                "/add_theme/names/de",
                "/add_theme/names/fr",
                "/add_theme/keywords/en/1",
                "/add_theme/keywords/fr",
            ]
        );
        let problem = proposal_from_json(br#"{"retire_theme": "a", "add_theme": {}}"#)
            .expect_err("two changes");
        assert_eq!(pointers(&problem), [""]);
        let problem =
            proposal_from_json(br#"{"retire_theme": "a", "colour": 1}"#).expect_err("unknown");
        assert_eq!(problem.status, 422);
        let problem = proposal_from_json(br#"{"edit_theme": {"id": "a", "colour": 1}}"#)
            .expect_err("unknown field of a theme");
        assert_eq!(pointers(&problem), ["/edit_theme/colour"]);
    }

    #[test]
    fn reclassify_periods_are_bounded() {
        let now = Utc::now();
        let at = |t: DateTime<Utc>| t.to_rfc3339();
        let week_ago = at(now - Duration::days(7));
        assert!(reclassify_period(Some(&week_ago), Some(&at(now)), now).is_ok());
        let pointers = |r: Result<(i64, i64), Vec<FieldError>>| -> Vec<String> {
            r.expect_err("invalid")
                .into_iter()
                .map(|e| e.pointer)
                .collect()
        };
        assert_eq!(
            pointers(reclassify_period(Some(&at(now)), Some(&week_ago), now)),
            ["/reclassify/since"]
        );
        assert_eq!(
            pointers(reclassify_period(
                Some(&at(now - Duration::days(91))),
                Some(&at(now)),
                now
            )),
            ["/reclassify/since"]
        );
        assert_eq!(
            pointers(reclassify_period(
                Some(&week_ago),
                Some(&at(now + Duration::hours(1))),
                now
            )),
            ["/reclassify/until"]
        );
        assert_eq!(
            pointers(reclassify_period(Some("yesterday"), None, now)),
            ["/reclassify/since", "/reclassify/until"]
        );
    }
}

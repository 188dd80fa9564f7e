//! `/ops`: a small server-rendered page for the ops team — the unresolved actions with
//! their evidence (counts over time as an inline SVG chart, see [`crate::chart`]), the
//! emerging topics no theme covers yet, what costs us most (each theme's impact on NPS and
//! rating, see [`crate::impact`]), and plain HTML forms to acknowledge, assign, resolve (with the message
//! in English and German) and reopen. No JavaScript at all.
//!
//! Everything shown that came from outside — feedback excerpts above all, but also theme
//! names, customer ids, operator names and messages — is hostile input and goes through
//! [`escape`]; the Content-Security-Policy forbids scripts on top of that, so a missed
//! escape still cannot run code.
//!
//! Sign-in: with `TRENDS_OPS_TOKEN` set, the page asks for the token once and starts a
//! server-side session (see [`crate::auth`]): a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, expiring, ended by signing out. Every form carries the
//! session's random CSRF token (a per-process one without a token) and must be posted
//! from this site (`Origin`/`Referer`), so another site cannot post forms on an
//! operator's behalf.
//!
//! The "Themes" section (edit the taxonomy at run time) is [`themes`].

mod themes;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use closeloop_events::{
    ActionEffect, ActionStatus, EffectVerdict, Evidence, EvidenceCounts, EvidenceExcerpt,
};
use closeloop_http::html::page as html;
use closeloop_http::{Problem, ProblemType};
use serde::Deserialize;
use uuid::Uuid;

use crate::action::{Action, Finding};
use crate::auth::Session;
use crate::chart;
use crate::context::Context;
use crate::emerging::{self, EmergingView, Kind};
use crate::impact::{self, ImpactValue, ImpactView};
use crate::request::{self, parse_action_id};
use crate::store::{ActionFilter, StatusFilter};
use crate::workflow::{self, database_problem, Step};

/// Recently resolved actions shown (with a reopen form).
const RESOLVED_SHOWN: i64 = 20;
/// Historical findings shown, the most recent trigger first.
const FINDINGS_SHOWN: i64 = 20;
const UNRESOLVED_SHOWN: i64 = 200;
/// Emerging topics shown (of the unmatched list; the API has both lists, and more).
const EMERGING_SHOWN: usize = 10;

pub(crate) fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/ops", get(page))
        .route("/ops/login", post(login))
        .route("/ops/logout", post(logout))
        .route("/ops/actions/{id}/{step}", post(transition))
        .route("/ops/themes", post(themes::propose))
        .route("/ops/themes/{version}/apply", post(themes::apply))
}

pub use closeloop_http::html::escape;

/// The request's session (always one without a token), or the page that says why not:
/// `None` when the visitor must sign in first.
pub(crate) async fn session(
    ctx: &Context,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    ctx.ops
        .session(&ctx.store, headers)
        .await
        .map_err(|error| problem_page(&database_problem(&error)))
}

/// A page that shows only a problem (a database outage, a refused post).
pub(crate) fn problem_page(problem: &Problem) -> Response {
    html(
        problem.status(),
        layout(
            "closeloop ops",
            &format!(
                "<h1>closeloop ops</h1><p class=\"errors\" id=\"errors\">{}</p>",
                escape(&problem_lines(problem).join("; "))
            ),
        ),
    )
}

pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}\
article{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}\
.meta{color:#555}.notice{background:#e8f5e9;padding:.5rem 1rem}.errors{background:#fdecea;padding:.5rem 1rem}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}\
th:first-child,td:first-child{text-align:left}blockquote{margin:.3rem 0;padding:.3rem .8rem;border-left:3px solid #999;background:#f7f7f7}\
form{margin:.5rem 0}textarea{width:100%;min-height:3rem}label{display:block;margin:.3rem 0}\
.forms{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:1rem}\
svg.chart{display:block;margin:.5rem 0}details.series summary{cursor:pointer;color:#555}\
.effect{border-top:1px dashed #ccc;margin-top:.5rem}.verdict-improved{color:#2e7d32}.verdict-worse,.verdict-no_change{color:#c62828}\
.reopen-suggested{background:#fff3cd;padding:.5rem 1rem;border-left:4px solid #c62828}";

pub(crate) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

pub(crate) fn login_page(error: Option<&str>) -> String {
    let mut body = String::from("<h1>closeloop ops — sign in</h1>");
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"errors\" id=\"errors\">{}</p>",
            escape(error)
        );
    }
    body.push_str(
        "<form method=\"post\" action=\"/ops/login\"><label>Ops token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
    );
    layout("closeloop ops — sign in", &body)
}

#[derive(Debug, Deserialize)]
struct PageParams {
    notice: Option<String>,
    /// Opens the theme form to edit this theme.
    edit_theme: Option<String>,
    /// Opens the theme form prefilled with this emerging phrase (of `languages`,
    /// comma-separated).
    new_theme: Option<String>,
    languages: Option<String>,
}

/// Fixed texts for the notices a redirect may ask for (the event a step published);
/// anything else shows nothing.
fn notice_text(notice: &str) -> Option<&'static str> {
    match notice {
        "taxonomy_proposed" => {
            return Some("Taxonomy version proposed: apply it to make it current.")
        }
        "taxonomy_applied" => return Some("Taxonomy version applied: every service follows it."),
        _ => {}
    }
    let step = Step::ALL
        .into_iter()
        .find(|step| step.event_kind().as_str() == notice)?;
    Some(match step {
        Step::Acknowledge => "Action acknowledged.",
        Step::Assign => "Action assigned.",
        Step::Resolve => "Action resolved — the customers who complained will be told.",
        Step::Reopen => "Action reopened.",
    })
}

async fn page(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Response {
    let session = match session(&ctx, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return html(StatusCode::OK, login_page(None)),
        Err(page) => return page,
    };
    let params = query.ok().map(|Query(params)| params);
    let notice = params
        .as_ref()
        .and_then(|params| params.notice.as_deref())
        .and_then(notice_text);
    let form = match &params {
        Some(PageParams {
            edit_theme: Some(id),
            ..
        }) => ctx
            .taxonomy()
            .theme(id)
            .map(themes::ThemeForm::of_theme)
            .unwrap_or_default(),
        Some(PageParams {
            new_theme: Some(phrase),
            languages,
            ..
        }) => {
            let languages: Vec<&str> = languages.as_deref().unwrap_or("en").split(',').collect();
            themes::ThemeForm::of_phrase(phrase, &languages)
        }
        _ => themes::ThemeForm::default(),
    };
    render(&ctx, &session, StatusCode::OK, notice, &[], &form).await
}

/// The page with the actions, a notice and errors of a form that was refused.
async fn render(
    ctx: &Context,
    session: &Session,
    status: StatusCode,
    notice: Option<&str>,
    errors: &[String],
    form: &themes::ThemeForm,
) -> Response {
    let themes = match themes::load(ctx).await {
        Ok(themes) => themes,
        Err(problem) => return problem_page(&problem),
    };
    let unresolved = ctx
        .store
        .actions(&ActionFilter {
            status: Some(StatusFilter::Unresolved),
            limit: UNRESOLVED_SHOWN,
            ..ActionFilter::default()
        })
        .await;
    let resolved = ctx
        .store
        .actions(&ActionFilter {
            status: Some(StatusFilter::Is(ActionStatus::Resolved)),
            limit: RESOLVED_SHOWN,
            ..ActionFilter::default()
        })
        .await;
    let findings = ctx.store.findings(None, FINDINGS_SHOWN).await;
    let topics = emerging::view(&ctx.store, &ctx.emerging, Kind::Unmatched, EMERGING_SHOWN).await;
    let now_ms = Utc::now().timestamp_millis();
    let costs = impact::view(ctx, now_ms - ctx.impact.settings.period_ms, now_ms + 1).await;
    let (unresolved, resolved, findings, topics, costs) =
        match (unresolved, resolved, findings, topics, costs) {
            (Ok(u), Ok(r), Ok(f), Ok(t), Ok(c)) => (u, r, f, t, c),
            (Err(error), _, _, _, _)
            | (_, Err(error), _, _, _)
            | (_, _, Err(error), _, _)
            | (_, _, _, Err(error), _)
            | (_, _, _, _, Err(error)) => return problem_page(&database_problem(&error)),
        };
    let findings: Vec<Finding> = findings
        .iter()
        .filter_map(
            |row| match Finding::from_row(row, ctx.theme_name(&row.theme)) {
                Ok(finding) => Some(finding),
                Err(error) => {
                    tracing::error!(%error, theme = %row.theme, "stored finding cannot be shown");
                    None
                }
            },
        )
        .collect();
    let to_action = |row: &crate::store::ActionRow| -> Option<Action> {
        match Action::from_row(row, ctx.theme_name(&row.theme)) {
            Ok(action) => Some(action),
            Err(error) => {
                tracing::error!(%error, "stored action cannot be shown");
                None
            }
        }
    };
    let unresolved: Vec<Action> = unresolved.iter().filter_map(to_action).collect();
    // Resolved actions with the measured effect of their resolution.
    let mut resolved_actions = Vec::with_capacity(resolved.len());
    for row in &resolved {
        let Some(mut action) = to_action(row) else {
            continue;
        };
        match crate::effect::of(ctx, row).await {
            Ok(effect) => action.effect = effect,
            Err(error) => return problem_page(&database_problem(&error)),
        }
        resolved_actions.push(action);
    }
    let mut body = page_body(
        &unresolved,
        &resolved_actions,
        &findings,
        &topics,
        &costs,
        notice,
        errors,
        session.csrf(),
        session.can_sign_out(),
    );
    themes::section(&mut body, &themes, form, session.csrf());
    html(status, layout("closeloop ops", &body))
}

#[allow(clippy::too_many_arguments)]
fn page_body(
    unresolved: &[Action],
    resolved: &[Action],
    findings: &[Finding],
    topics: &EmergingView,
    costs: &ImpactView,
    notice: Option<&str>,
    errors: &[String],
    csrf: &str,
    can_sign_out: bool,
) -> String {
    let mut body = String::from("<h1>closeloop ops</h1>");
    if can_sign_out {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ops/logout\">{}<button type=\"submit\">Sign out</button></form>",
            hidden_csrf(csrf)
        );
    }
    if let Some(notice) = notice {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"notice\">{}</p>",
            escape(notice)
        );
    }
    if !errors.is_empty() {
        body.push_str("<ul class=\"errors\" id=\"errors\">");
        for error in errors {
            let _ = write!(body, "<li>{}</li>", escape(error));
        }
        body.push_str("</ul>");
    }
    let _ = write!(body, "<h2>Open actions ({})</h2>", unresolved.len());
    if unresolved.is_empty() {
        body.push_str(
            "<p id=\"no-open-actions\">Nothing to do: no theme is surging or recurring.</p>",
        );
    }
    for action in unresolved {
        action_card(&mut body, action, csrf);
    }
    costs_section(&mut body, costs);
    emerging_section(&mut body, topics);
    let _ = write!(body, "<h2>Recently resolved ({})</h2>", resolved.len());
    for action in resolved {
        resolved_card(&mut body, action, csrf);
    }
    if !findings.is_empty() {
        let _ = write!(
            body,
            "<h2>Historical findings ({})</h2><p class=\"meta\">Found in feedback of the past \
             (an import, a late replay): reported here, not raised, and no customer is told.</p>",
            findings.len()
        );
    }
    for finding in findings {
        finding_card(&mut body, finding);
    }
    body
}

/// The phrases surging in feedback no theme covers: a table, one excerpt each.
fn emerging_section(out: &mut String, view: &EmergingView) {
    let _ = write!(
        out,
        "<h2>Emerging topics ({})</h2><p class=\"meta\">Phrases surging in feedback that \
         matched no theme: {}.",
        view.topics.len(),
        escape(&view.rule)
    );
    if let (Some(window), Some(computed_at)) = (&view.window, view.computed_at) {
        let _ = write!(
            out,
            " Window {} – {}, {} customers; computed {}.",
            escape(&when(window.start)),
            escape(&when(window.end)),
            view.totals.window.customers,
            escape(&when(computed_at)),
        );
    }
    out.push_str("</p>");
    if view.topics.is_empty() {
        out.push_str(
            "<p id=\"no-emerging-topics\">No phrase stands out in the feedback no theme covers.</p>",
        );
        return;
    }
    out.push_str(
        "<table id=\"emerging-topics\"><tr><th>phrase</th><th>customers</th><th>before</th>\
         <th>ratio</th><th>languages</th><th>negative / neutral / positive</th>\
         <th>first seen</th><th>for example</th><th></th></tr>",
    );
    for topic in &view.topics {
        let _ = write!(
            out,
            "<tr class=\"emerging-topic\"><td>{}</td><td>{}</td><td>{}</td><td>{:.1}×</td><td>{}</td>\
             <td>{} / {} / {}</td><td>{}</td><td>",
            escape(&topic.phrase),
            topic.window.customers,
            topic.baseline.customers,
            topic.rate_ratio,
            escape(&topic.languages.join(", ")),
            topic.sentiment.negative,
            topic.sentiment.neutral,
            topic.sentiment.positive,
            escape(&when(topic.first_seen)),
        );
        if let Some(example) = topic.excerpts.first() {
            let _ = write!(out, "<q class=\"excerpt\">{}</q>", escape(&example.excerpt));
        }
        let _ = write!(out, "</td><td>{}</td></tr>", themes::make_theme_link(topic));
    }
    out.push_str("</table>");
}

/// Themes shown in "What costs us most".
const COSTS_SHOWN: usize = 10;

/// An impact with its interval, or that there is too little data for one.
fn impact_cell(value: &ImpactValue, unit: &str) -> String {
    match value.estimate() {
        Some(e) => format!(
            "{:+.2}{unit} <small>({:+.2} to {:+.2})</small>",
            e.value, e.ci_low, e.ci_high
        ),
        None => "not enough data".to_owned(),
    }
}

/// The themes ranked by how much NPS (then rating) they cost over the last period.
fn costs_section(out: &mut String, view: &ImpactView) {
    let _ = write!(
        out,
        "<h2>What costs us most</h2><p class=\"meta\">How much higher NPS and the average \
         rating of {} – {} would be without the feedback mentioning the theme negatively \
         (95 % interval; at least {} scored feedback on each side). {} scored feedback",
        escape(&when(view.since)),
        escape(&when(view.until)),
        view.min_count,
        view.feedback,
    );
    if let Some(nps) = view.nps.mean {
        let _ = write!(out, ", NPS {nps:+.0}");
    }
    if let Some(rating) = view.rating.mean {
        let _ = write!(out, ", average rating {rating:.2}");
    }
    out.push_str(".</p>");
    if view.themes.is_empty() {
        out.push_str("<p id=\"no-theme-impact\">No scored feedback mentions a theme yet.</p>");
        return;
    }
    out.push_str(
        "<table id=\"theme-impact\"><tr><th>theme</th><th>mentions</th><th>negative</th>\
         <th>share</th><th>NPS impact</th><th>rating impact</th></tr>",
    );
    for theme in view.themes.iter().take(COSTS_SHOWN) {
        let _ = write!(
            out,
            "<tr class=\"theme-impact\" data-theme=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.1}%</td><td>{}</td><td>{}</td></tr>",
            escape(&theme.theme),
            theme_title(&theme.theme, &theme.theme_name),
            theme.mentions,
            theme.negative_mentions,
            theme.negative_share * 100.0,
            impact_cell(&theme.nps_impact, " points"),
            impact_cell(&theme.rating_impact, " stars"),
        );
    }
    out.push_str("</table>");
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn theme_title(theme: &str, theme_name: &BTreeMap<String, String>) -> String {
    let en = theme_name
        .get("en")
        .cloned()
        .unwrap_or_else(|| theme.to_owned());
    match theme_name.get("de") {
        Some(de) if *de != en => format!("{} / {}", escape(&en), escape(de)),
        _ => escape(&en),
    }
}

fn counts_table(out: &mut String, title: &str, rows: &BTreeMap<String, EvidenceCounts>) {
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>mentions</th><th>negative</th><th>customers</th></tr>",
        escape(title)
    );
    for (name, counts) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            counts.mentions,
            counts.negative_mentions,
            counts.distinct_customers
        );
    }
    out.push_str("</table>");
}

/// An action raised more than this after its trigger's event time was found late
/// (mentions that reached trends after a backlog, a replay or an import).
const FOUND_LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The trigger's event time if the action was found late.
fn found_late(action: &Action) -> Option<DateTime<Utc>> {
    let triggered_at = action.evidence.triggered_at?;
    (action.raised_at - triggered_at > FOUND_LATE_AFTER).then_some(triggered_at)
}

fn evidence(out: &mut String, action: &Action) {
    let late = found_late(action).map(|triggered_at| {
        format!(
            "found late: triggered {}, raised {}",
            when(triggered_at),
            when(action.raised_at)
        )
    });
    evidence_of(out, &action.evidence, late.as_deref());
}

/// A historical finding: its theme, when it happened and was found, and its evidence.
fn finding_card(out: &mut String, finding: &Finding) {
    let _ = write!(
        out,
        "<article class=\"finding\" id=\"finding-{}-{}\" data-theme=\"{}\"><h3>{}</h3>\
         <p class=\"meta\">{} · triggered {} · found {} · history: reported, not raised</p>",
        escape(&finding.theme),
        finding.triggered_at.timestamp_millis(),
        escape(&finding.theme),
        theme_title(&finding.theme, &finding.theme_name),
        escape(&finding.evidence.detector),
        escape(&when(finding.triggered_at)),
        escape(&when(finding.found_at)),
    );
    evidence_of(out, &finding.evidence, None);
    out.push_str("</article>");
}

/// The evidence's numbers, series, breakdowns and excerpts; `note` goes under its reason.
fn evidence_of(out: &mut String, e: &Evidence, note: Option<&str>) {
    let _ = write!(
        out,
        "<p><strong>{}</strong> negative of {} mentions ({:.0}% negative) from <strong>{}</strong> customers, {} – {}",
        e.negative_mentions,
        e.mentions,
        e.negative_share * 100.0,
        e.distinct_customers,
        escape(&when(e.window_start)),
        escape(&when(e.window_end)),
    );
    if let Some(rating) = e.average_rating {
        let _ = write!(out, "; average rating {rating:.1}");
    }
    if let Some(nps) = e.average_nps {
        let _ = write!(out, "; average NPS score {nps:.1}");
    }
    out.push_str("</p>");
    if e.nps_impact.is_some() || e.rating_impact.is_some() {
        out.push_str("<p class=\"impact\">What it costs over the last days (95 % interval):");
        for (name, impact, unit) in [
            ("NPS", e.nps_impact, " points"),
            ("rating", e.rating_impact, " stars"),
        ] {
            if let Some(i) = impact {
                let _ = write!(
                    out,
                    " {name} {:+.2}{unit} ({:+.2} to {:+.2});",
                    i.value, i.ci_low, i.ci_high
                );
            }
        }
        out.push_str("</p>");
    }
    if !e.reason.is_empty() {
        let _ = write!(out, "<p class=\"meta\">Why: {}</p>", escape(&e.reason));
    }
    if let Some(note) = note {
        let _ = write!(out, "<p class=\"meta\">{}</p>", escape(note));
    }
    let _ = write!(out, "<p class=\"meta\">Rule: {}</p>", escape(&e.rule));
    if !e.series.is_empty() {
        out.push_str(&chart::of(e, "Negative and all mentions over time"));
        out.push_str(
            "<details class=\"series\"><summary>Counts per bucket</summary>\
             <table><tr><th>from</th><th>mentions</th><th>negative</th><th>customers</th></tr>",
        );
        for bucket in &e.series {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&when(bucket.start)),
                bucket.counts.mentions,
                bucket.counts.negative_mentions,
                bucket.counts.distinct_customers
            );
        }
        out.push_str("</table></details>");
    }
    counts_table(out, "channel", &e.by_channel);
    counts_table(out, "touchpoint", &e.by_touchpoint);
    excerpts(out, &e.excerpts);
    for related in &e.related {
        let name = related
            .theme_name
            .get("en")
            .map_or(related.theme.as_str(), String::as_str);
        let _ = write!(
            out,
            "<div class=\"related\"><p><strong>Same problem: {}</strong> ({}) surged too and joined this action: \
             {} negative of {} mentions from {} customers; they hear \"we did\" with it.</p>",
            escape(name),
            escape(&related.theme),
            related.counts.negative_mentions,
            related.counts.mentions,
            related.counts.distinct_customers,
        );
        if !related.reason.is_empty() {
            let _ = write!(
                out,
                "<p class=\"meta\">Why: {}</p>",
                escape(&related.reason)
            );
        }
        excerpts(out, &related.excerpts);
        out.push_str("</div>");
    }
}

fn excerpts(out: &mut String, excerpts: &[EvidenceExcerpt]) {
    for excerpt in excerpts {
        let _ = write!(
            out,
            "<blockquote class=\"excerpt\">{}<br><small>customer {} · feedback {} · {}</small></blockquote>",
            escape(&excerpt.excerpt),
            escape(&excerpt.customer_id),
            excerpt.feedback_id,
            escape(&when(excerpt.given_at)),
        );
    }
}

fn hidden_csrf(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

/// The opening tag of the form that takes `step` on action `id`, with its CSRF field;
/// `transition` reads the step back from the path.
fn step_form(id: Uuid, step: Step, hidden_csrf: &str) -> String {
    let step = step.as_str();
    format!("<form method=\"post\" action=\"/ops/actions/{id}/{step}\" id=\"{step}-{id}\">{hidden_csrf}")
}

fn action_card(out: &mut String, action: &Action, csrf: &str) {
    let id = action.action_id;
    let _ = write!(
        out,
        "<article id=\"action-{id}\" data-theme=\"{}\"><h3>{}</h3><p class=\"meta\">{} · raised {} · <span class=\"status\">{}</span>",
        escape(&action.theme),
        theme_title(&action.theme, &action.theme_name),
        escape(&action.evidence.detector),
        escape(&when(action.raised_at)),
        action.status.as_str(),
    );
    if let Some(assignee) = &action.workflow.assignee {
        let _ = write!(out, " · assigned to {}", escape(assignee));
    } else if let Some(by) = &action.workflow.acknowledged_by {
        let _ = write!(out, " · acknowledged by {}", escape(by));
    }
    if action.workflow.reopened_count > 0 {
        let _ = write!(out, " · reopened {}×", action.workflow.reopened_count);
    }
    out.push_str("</p>");
    evidence(out, action);
    let csrf = hidden_csrf(csrf);
    out.push_str("<div class=\"forms\">");
    if action.status == ActionStatus::Open {
        let _ = write!(
            out,
            "{}<label>Your name <input name=\"acknowledged_by\" required maxlength=\"200\"></label>\
             <button type=\"submit\">Acknowledge</button></form>",
            step_form(id, Step::Acknowledge, &csrf)
        );
    }
    let _ = write!(
        out,
        "{}<label>Assign to <input name=\"assignee\" required maxlength=\"200\"></label>\
         <label>Your name <input name=\"assigned_by\" required maxlength=\"200\"></label>\
         <button type=\"submit\">Assign</button></form>\
         {}<label>What we did (English, required) <textarea name=\"message_en\" required maxlength=\"2000\"></textarea></label>\
         <label>Was wir getan haben (Deutsch) <textarea name=\"message_de\" maxlength=\"2000\"></textarea></label>\
         <label>Your name <input name=\"resolved_by\" required maxlength=\"200\"></label>\
         <button type=\"submit\">Resolve and tell the customers</button></form></div></article>",
        step_form(id, Step::Assign, &csrf),
        step_form(id, Step::Resolve, &csrf),
    );
}

fn resolved_card(out: &mut String, action: &Action, csrf: &str) {
    let id = action.action_id;
    let _ = write!(
        out,
        "<article id=\"action-{id}\" data-theme=\"{}\"><h3>{}</h3><p class=\"meta\"><span class=\"status\">{}</span>",
        escape(&action.theme),
        theme_title(&action.theme, &action.theme_name),
        action.status.as_str()
    );
    if let Some(resolution) = &action.resolution {
        let _ = write!(
            out,
            " by {} at {}</p>",
            escape(&resolution.resolved_by),
            escape(&when(resolution.resolved_at))
        );
        for (language, message) in &resolution.message {
            let _ = write!(
                out,
                "<blockquote class=\"resolution\" lang=\"{}\">{}</blockquote>",
                escape(language),
                escape(message)
            );
        }
    } else {
        out.push_str("</p>");
    }
    if let Some(effect) = &action.effect {
        effect_section(out, id, effect);
    }
    let _ = write!(
        out,
        "{}<label>Why <input name=\"reason\" maxlength=\"2000\"></label>\
         <label>Your name <input name=\"reopened_by\" required maxlength=\"200\"></label>\
         <button type=\"submit\">Reopen</button></form></article>",
        step_form(id, Step::Reopen, &hidden_csrf(csrf))
    );
}

/// What a verdict says, in words.
fn verdict_text(verdict: EffectVerdict) -> &'static str {
    match verdict {
        EffectVerdict::Improved => "improved",
        EffectVerdict::NoChange => "no change",
        EffectVerdict::Worse => "worse",
        EffectVerdict::TooEarly => "too early to tell",
        EffectVerdict::NotEnoughData => "not enough data",
    }
}

/// Did the resolution work: the verdict, the numbers behind it, a flag asking for a
/// reopen decision when it did not show, and the chart of the windows around it.
fn effect_section(out: &mut String, id: Uuid, effect: &ActionEffect) {
    let verdict = effect.verdict.as_str();
    let _ = write!(
        out,
        "<section class=\"effect\" id=\"effect-{id}\" data-verdict=\"{verdict}\">\
         <p><strong>Effect: <span class=\"verdict verdict-{verdict}\">{}</span></strong> — \
         negative mentions per day {:.1} before, {:.1} after",
        verdict_text(effect.verdict),
        effect.negative_per_day_before,
        effect.negative_per_day_after,
    );
    if let Some(change) = effect.change {
        let _ = write!(out, " ({:+.0} %)", change * 100.0);
    }
    let _ = write!(
        out,
        "; negative share {:.0} % → {:.0} %; complaining customers {} → {}.",
        effect.negative_share_before * 100.0,
        effect.negative_share_after * 100.0,
        effect.before.distinct_customers,
        effect.after.distinct_customers,
    );
    if let (Some(rate), Some(share)) = (effect.p_rate_lower, effect.p_share_lower) {
        let _ = write!(out, " p(fewer) = {rate:.2e}, p(lower share) = {share:.2e}.");
    }
    if effect.verdict == EffectVerdict::TooEarly {
        let _ = write!(
            out,
            " Final once feedback reaches {}.",
            escape(&when(effect.after_end))
        );
    }
    out.push_str("</p>");
    if effect.reopen_suggested {
        let _ = write!(
            out,
            "<p class=\"reopen-suggested\" id=\"reopen-suggested-{id}\">⚑ <strong>Decide on a reopen:</strong> \
             the fix does not show in the feedback ({}). Reopen below, or leave it resolved.</p>",
            verdict_text(effect.verdict)
        );
    }
    let window = chart::Window {
        start: effect.resolved_at,
        end: effect.after_end,
        fired_at: Some(effect.resolved_at),
        expected_negative: Some(f64::from(effect.before.negative_mentions)),
        labels: chart::Labels::EFFECT,
    };
    out.push_str(&chart::svg(
        &effect.series,
        &window,
        "negative mentions before and after the resolution",
    ));
    out.push_str("</section>");
}

/// Sets `cookie` on `response` (a value that cannot be a header is left out).
fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn login(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Err(problem) = ctx.ops.check_form_origin(&headers, &uri) {
        return problem_page(&problem);
    }
    let Some(expected) = ctx.ops.token() else {
        return see_other("/ops");
    };
    let presented = form
        .ok()
        .and_then(|Form(mut fields)| fields.remove("token"));
    if !presented.is_some_and(|token| expected.matches(token.trim())) {
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(Some("That is not the ops token.")),
        );
    }
    match ctx.ops.sign_in(&ctx.store).await {
        Ok(cookie) => with_cookie(see_other("/ops"), &cookie),
        Err(error) => problem_page(&database_problem(&error)),
    }
}

/// Ends the session everywhere (its cookie no longer works on any replica) and clears
/// the cookie; without a live session only the cookie is cleared.
async fn logout(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Err(problem) = ctx.ops.check_form_origin(&headers, &uri) {
        return problem_page(&problem);
    }
    let session = match session(&ctx, &headers).await {
        Ok(session) => session,
        Err(page) => return page,
    };
    if let Some(session) = session {
        let presented = form.ok().and_then(|Form(mut fields)| fields.remove("csrf"));
        if !session.csrf_matches(presented.as_deref()) {
            return problem_page(&form_expired());
        }
        if let Err(error) = ctx.ops.sign_out(&ctx.store, &session).await {
            return problem_page(&database_problem(&error));
        }
    }
    with_cookie(see_other("/ops"), &ctx.ops.cleared_cookie())
}

pub(crate) fn form_expired() -> Problem {
    Problem::new(ProblemType::FormExpired)
        .detail("the form is stale or did not come from this page; reload and try again")
}

/// Problems of a refused form, as lines for the page.
fn problem_lines(problem: &Problem) -> Vec<String> {
    let mut lines = vec![match &problem.detail {
        Some(detail) => format!("{}: {detail}", problem.title),
        None => problem.title.clone(),
    }];
    for error in &problem.errors {
        let field = error.pointer.trim_start_matches('/').replace('/', " ");
        lines.push(format!("{field}: {}", error.detail));
    }
    lines
}

/// The page again, with the reasons a form was refused.
async fn refused(ctx: &Context, session: &Session, problem: Problem) -> Response {
    render(
        ctx,
        session,
        problem.status(),
        None,
        &problem_lines(&problem),
        &themes::ThemeForm::default(),
    )
    .await
}

async fn transition(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    uri: Uri,
    Path((raw_id, step)): Path<(String, String)>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let session = match session(&ctx, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return html(
                StatusCode::UNAUTHORIZED,
                login_page(Some("Please sign in again.")),
            )
        }
        Err(page) => return page,
    };
    let refused = |problem| refused(&ctx, &session, problem);
    if let Err(problem) = ctx.ops.check_form_origin(&headers, &uri) {
        return refused(problem).await;
    }
    let mut fields = match form {
        Ok(Form(fields)) => fields,
        Err(rejection) => {
            return refused(Problem::new(ProblemType::UnreadableBody).detail(rejection.body_text()))
                .await
        }
    };
    if !session.csrf_matches(fields.remove("csrf").as_deref()) {
        return refused(form_expired()).await;
    }
    let id = match parse_action_id(&raw_id) {
        Ok(id) => id,
        Err(problem) => return refused(problem).await,
    };
    let Some(step) = Step::parse(&step) else {
        return refused(Problem::new(ProblemType::NotFound).detail("no such step")).await;
    };
    let result = match request::from_form(step, fields) {
        Ok(command) => workflow::apply(&ctx, id, command)
            .await
            .map_err(|e| e.problem()),
        Err(problem) => Err(problem),
    };
    match result {
        Ok(_) => see_other(&format!("/ops?notice={}", step.event_kind().as_str())),
        Err(problem) => refused(problem).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_events::{ActionWorkflow, Evidence, EvidenceBucket, RelatedEvidence};

    const HOSTILE: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;";

    fn hostile_excerpt() -> EvidenceExcerpt {
        EvidenceExcerpt {
            feedback_id: Uuid::now_v7(),
            customer_id: HOSTILE.into(),
            excerpt: HOSTILE.into(),
            given_at: Utc::now(),
        }
    }

    fn hostile_action(status: ActionStatus) -> Action {
        let now = Utc::now();
        Action {
            action_id: Uuid::now_v7(),
            theme: "delivery_time".into(),
            theme_name: BTreeMap::from([
                ("en".into(), HOSTILE.into()),
                ("de".into(), "Lieferzeit".into()),
            ]),
            status,
            raised_at: now,
            updated_at: now,
            evidence: Evidence {
                window_start: now,
                window_end: now,
                mentions: 3,
                negative_mentions: 2,
                distinct_customers: 2,
                rule: HOSTILE.into(),
                reason: HOSTILE.into(),
                excerpts: vec![hostile_excerpt()],
                by_channel: BTreeMap::from([(HOSTILE.into(), EvidenceCounts::default())]),
                series: [0, 10, 30]
                    .map(|minutes| EvidenceBucket {
                        start: now + chrono::TimeDelta::minutes(minutes),
                        counts: EvidenceCounts {
                            mentions: 3,
                            negative_mentions: 2,
                            distinct_customers: 2,
                        },
                    })
                    .to_vec(),
                expected_negative_mentions: Some(0.5),
                related: vec![RelatedEvidence {
                    theme: "delivery".into(),
                    theme_name: BTreeMap::from([("en".into(), HOSTILE.into())]),
                    reason: HOSTILE.into(),
                    excerpts: vec![EvidenceExcerpt {
                        feedback_id: Uuid::now_v7(),
                        customer_id: HOSTILE.into(),
                        excerpt: HOSTILE.into(),
                        given_at: now,
                    }],
                    ..RelatedEvidence::default()
                }],
                ..Evidence::default()
            },
            resolution: (status == ActionStatus::Resolved).then(|| closeloop_events::Resolution {
                message: BTreeMap::from([("en".into(), HOSTILE.into())]),
                resolved_by: HOSTILE.into(),
                resolved_at: now,
            }),
            workflow: ActionWorkflow {
                assignee: Some(HOSTILE.into()),
                ..ActionWorkflow::default()
            },
            effect: None,
            history: None,
        }
    }

    /// One theme with a number, one without, named `name`.
    fn costs(name: &str) -> ImpactView {
        let now = Utc::now();
        let overall = impact::OverallView {
            count: 40,
            mean: Some(12.0),
        };
        let theme = |id: &str, nps: ImpactValue| impact::ThemeImpactView {
            theme: id.into(),
            theme_name: BTreeMap::from([("en".into(), name.into())]),
            mentions: 12,
            negative_mentions: 10,
            negative_share: 0.25,
            nps_impact: nps,
            nps_score_impact: nps,
            rating_impact: ImpactValue::NotEnoughData("not_enough_data"),
        };
        ImpactView {
            since: now,
            until: now,
            min_count: 10,
            feedback: 40,
            nps: overall,
            nps_score: overall,
            rating: overall,
            themes: vec![
                theme(
                    "delivery_time",
                    ImpactValue::Estimate(closeloop_trend::impact::Estimate {
                        value: 20.0,
                        ci_low: 5.5,
                        ci_high: 34.5,
                    }),
                ),
                theme("price", ImpactValue::NotEnoughData("not_enough_data")),
            ],
        }
    }

    #[test]
    fn evidence_shows_what_the_theme_costs() {
        let mut out = String::new();
        let impact = closeloop_events::ScoreImpact {
            value: 12.5,
            ci_low: 3.25,
            ci_high: 21.75,
        };
        evidence_of(
            &mut out,
            &Evidence {
                nps_impact: Some(impact),
                ..Evidence::default()
            },
            None,
        );
        assert!(out.contains("NPS +12.50 points (+3.25 to +21.75)"), "{out}");
        assert!(!out.contains("rating"), "none without enough data: {out}");
        let mut without = String::new();
        evidence_of(&mut without, &Evidence::default(), None);
        assert!(!without.contains("What it costs"), "{without}");
    }

    #[test]
    fn what_costs_most_is_a_ranked_table_with_intervals() {
        let mut out = String::new();
        costs_section(&mut out, &costs("Delivery"));
        assert!(out.contains("<h2>What costs us most</h2>"), "{out}");
        let delivery = out.find("data-theme=\"delivery_time\"").expect("listed");
        let price = out.find("data-theme=\"price\"").expect("listed");
        assert!(delivery < price, "in the order given");
        assert!(
            out.contains("+20.00 points <small>(+5.50 to +34.50)</small>"),
            "{out}"
        );
        assert!(out.contains("not enough data"), "{out}");
    }

    fn effect(verdict: EffectVerdict, at: DateTime<Utc>) -> ActionEffect {
        let day = chrono::TimeDelta::days(1);
        ActionEffect {
            verdict,
            reopen_suggested: matches!(verdict, EffectVerdict::NoChange | EffectVerdict::Worse),
            before_start: at - day * 7,
            resolved_at: at,
            after_end: at + day * 7,
            before: EvidenceCounts {
                mentions: 70,
                negative_mentions: 35,
                distinct_customers: 20,
            },
            after: EvidenceCounts {
                mentions: 70,
                negative_mentions: 30,
                distinct_customers: 18,
            },
            negative_per_day_before: 5.0,
            negative_per_day_after: 30.0 / 7.0,
            negative_share_before: 0.5,
            negative_share_after: 30.0 / 70.0,
            change: Some(-1.0 / 7.0),
            p_rate_lower: Some(0.3),
            p_rate_higher: Some(0.8),
            p_share_lower: Some(0.25),
            p_share_higher: Some(0.8),
            measured_at: at + day * 7,
            series: (-7..7)
                .map(|d| EvidenceBucket {
                    start: at + day * d,
                    counts: EvidenceCounts {
                        mentions: 10,
                        negative_mentions: 5,
                        distinct_customers: 4,
                    },
                })
                .collect(),
        }
    }

    fn no_topics() -> EmergingView {
        EmergingView {
            kind: "unmatched",
            computed_at: None,
            window: None,
            baseline: None,
            totals: emerging::CountsView {
                window: Default::default(),
                baseline: Default::default(),
            },
            rule: "at least 5 customers".into(),
            topics: vec![],
        }
    }

    fn hostile_topics() -> EmergingView {
        let now = Utc::now();
        let topic = emerging::TopicView {
            phrase: HOSTILE.into(),
            key: HOSTILE.into(),
            words: 1,
            languages: vec![HOSTILE.into()],
            window: Default::default(),
            baseline: Default::default(),
            expected_customers: 0.1,
            rate_ratio: 50.0,
            p_value: 1e-9,
            score: 9.0,
            sentiment: Default::default(),
            first_seen: now,
            excerpts: vec![emerging::ExcerptView {
                feedback_id: "f".into(),
                customer_id: HOSTILE.into(),
                excerpt: HOSTILE.into(),
                given_at: now,
            }],
        };
        EmergingView {
            computed_at: Some(now),
            window: Some(emerging::SpanView {
                start: now,
                end: now,
            }),
            rule: HOSTILE.into(),
            topics: vec![topic],
            ..no_topics()
        }
    }

    #[test]
    fn hostile_feedback_never_reaches_the_page_as_markup() {
        let hostile = hostile_action(ActionStatus::Open);
        let finding = Finding {
            theme: hostile.theme.clone(),
            theme_name: hostile.theme_name.clone(),
            triggered_at: hostile.raised_at,
            found_at: hostile.raised_at,
            updated_at: hostile.raised_at,
            evidence: hostile.evidence.clone(),
        };
        let page = page_body(
            &[hostile_action(ActionStatus::Acknowledged)],
            &[hostile_action(ActionStatus::Resolved)],
            &[finding],
            &hostile_topics(),
            &costs(HOSTILE),
            Some(HOSTILE),
            &[HOSTILE.to_owned()],
            "csrf-token",
            true,
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        // The escaped text is still shown, once per place it appears.
        assert!(page.matches("&lt;script&gt;").count() >= 8);
        assert!(page.contains("Same problem: &lt;script&gt;"), "{page}");
        assert!(page.contains("Historical findings (1)"), "{page}");
        assert!(page.contains("Emerging topics (1)"), "{page}");
        assert!(page.contains("<table id=\"emerging-topics\">"), "{page}");
        assert!(page.contains("name=\"csrf\" value=\"csrf-token\""));
        assert!(
            page.contains("/reopen\""),
            "resolved actions can be reopened"
        );
    }

    #[test]
    fn every_form_posts_to_a_step_the_handler_knows() {
        let open = hostile_action(ActionStatus::Open);
        let resolved = hostile_action(ActionStatus::Resolved);
        let page = page_body(
            std::slice::from_ref(&open),
            std::slice::from_ref(&resolved),
            &[],
            &no_topics(),
            &costs("Delivery"),
            None,
            &[],
            "c",
            false,
        );
        for (action, step) in [
            (&open, Step::Acknowledge),
            (&open, Step::Assign),
            (&open, Step::Resolve),
            (&resolved, Step::Reopen),
        ] {
            let path = format!("/ops/actions/{}/{}", action.action_id, step.as_str());
            assert!(page.contains(&format!("action=\"{path}\"")), "{path}");
            assert_eq!(Step::parse(step.as_str()), Some(step));
            assert!(notice_text(step.event_kind().as_str()).is_some());
        }
        assert_eq!(Step::parse("delete"), None);
    }

    #[test]
    fn an_action_found_late_says_when_it_was_triggered() {
        let mut action = hostile_action(ActionStatus::Open);
        let mut shown = |triggered_before: Option<chrono::TimeDelta>| {
            action.evidence.triggered_at = triggered_before.map(|t| action.raised_at - t);
            let mut out = String::new();
            evidence(&mut out, &action);
            out.contains("found late: triggered")
        };
        assert!(!shown(None), "older events have no trigger time");
        assert!(!shown(Some(chrono::TimeDelta::minutes(3))), "found live");
        assert!(
            shown(Some(chrono::TimeDelta::hours(30))),
            "found a day late"
        );
    }

    #[test]
    fn an_open_action_shows_its_series_as_a_chart_above_the_table() {
        let open = hostile_action(ActionStatus::Open);
        let page = page_body(
            std::slice::from_ref(&open),
            &[],
            &[],
            &no_topics(),
            &costs("Delivery"),
            None,
            &[],
            "c",
            false,
        );
        let card = page
            .split(&format!("id=\"action-{}\"", open.action_id))
            .nth(1)
            .and_then(|rest| rest.split("</article>").next())
            .expect("the action's card");
        let chart = card.find("<svg").expect("a chart in the card");
        let table = card.find("<details").expect("the table under it");
        assert!(chart < table, "{card}");
        assert_eq!(
            card.matches("<g class=\"bucket\">").count(),
            open.evidence.series.len()
        );
        assert!(card.contains("class=\"expected\""), "{card}");
        let rows = card[table..].split("</details>").next().unwrap_or_default();
        assert_eq!(
            rows.matches("<tr><td>").count(),
            3,
            "the table stays: {card}"
        );
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert_eq!(
            notice_text("resolved").map(|t| t.starts_with("Action resolved")),
            Some(true)
        );
        assert_eq!(notice_text("<script>"), None);
    }

    #[test]
    fn a_resolved_action_shows_its_effect_and_asks_for_a_reopen_decision_when_it_did_not_work() {
        let mut resolved = hostile_action(ActionStatus::Resolved);
        let card = |action: &Action| {
            let mut out = String::new();
            resolved_card(&mut out, action, "c");
            out
        };
        assert!(
            !card(&resolved).contains("class=\"effect\""),
            "not measured yet"
        );

        resolved.effect = Some(effect(EffectVerdict::NoChange, resolved.raised_at));
        let shown = card(&resolved);
        let id = resolved.action_id;
        assert!(
            shown.contains(&format!("id=\"effect-{id}\" data-verdict=\"no_change\"")),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("id=\"reopen-suggested-{id}\"")),
            "{shown}"
        );
        assert!(shown.contains("5.0 before, 4.3 after (-14 %)"), "{shown}");
        assert_eq!(shown.matches("<g class=\"bucket\">").count(), 14, "{shown}");
        assert!(
            shown.contains("<title>resolved "),
            "the resolution is marked: {shown}"
        );
        let effect_at = shown.find("class=\"effect\"").unwrap_or_default();
        let reopen_at = shown.find("/reopen\"").unwrap_or_default();
        assert!(
            effect_at < reopen_at,
            "the verdict comes before the reopen form"
        );

        resolved.effect = Some(effect(EffectVerdict::Improved, resolved.raised_at));
        let shown = card(&resolved);
        assert!(shown.contains("data-verdict=\"improved\""));
        assert!(!shown.contains("reopen-suggested"), "{shown}");

        resolved.effect = Some(effect(EffectVerdict::TooEarly, resolved.raised_at));
        assert!(card(&resolved).contains("Final once feedback reaches"));
    }
}

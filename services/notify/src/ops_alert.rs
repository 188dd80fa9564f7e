//! Ops alerts: a chat or webhook message to the ops team when an action is raised,
//! reopened, or escalates (its distinct customers grew by the escalation factor since
//! the last alert about it). Targets: Slack (incoming webhook, Block Kit), Microsoft
//! Teams (workflow webhook, Adaptive Card 1.4) and a generic JSON webhook signed like
//! the customer webhooks (Standard Webhooks).
//!
//! ```text
//! actions.v1 (raised / reopened / updated) ─▶ decide per route ─▶ notify_ops_alerts
//!     (route per theme, else `*`; quiet period     (ledger: one row per alert identity,
//!      per route and theme; escalation factor)      queued or suppressed)
//!                                                        │ queued: same transaction
//!                                                        ▼
//!                  notify_deliveries, channel ops_slack / ops_teams / ops_webhook
//!                  (the customer outbox and its worker: lease, retries, backoff, DLQ)
//! ```
//!
//! The message is rendered when the alert is decided, in the route's language, so a
//! retry sends exactly what was decided. Route URLs are secrets (a Slack or Teams
//! webhook URL is its own credential): they live in [`SecretUrl`], never in `Debug`
//! output, logs, errors or the database.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use closeloop_events::{ActionEvent, ActionEventKind};
use closeloop_store::Database;
use closeloop_telemetry::Secret;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::message;
use crate::outbox::{Due, PENDING};
use crate::signature;
use crate::webhook;
use crate::worker::Attempt;

/// Every ops channel in the outbox starts with this; the customer-only parts (the
/// notifications API, erasure, preferences, the frequency cap) leave such rows alone.
pub const CHANNEL_PREFIX: &str = "ops_";
/// Ledger outcomes.
pub const QUEUED: &str = "queued";
pub const SUPPRESSED: &str = "suppressed";
/// Not sent because the route does not want this kind of alert; kept as the baseline
/// of the action's next escalation (a route for escalations only needs one).
pub const UNWANTED: &str = "unwanted";
/// Excerpts quoted per alert.
const EXCERPTS: usize = 3;
/// Characters kept of one excerpt.
const EXCERPT_CHARS: usize = 200;

/// Where an alert goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Slack,
    Teams,
    Webhook,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Slack, Target::Teams, Target::Webhook];

    pub fn as_str(&self) -> &'static str {
        match self {
            Target::Slack => "slack",
            Target::Teams => "teams",
            Target::Webhook => "webhook",
        }
    }

    /// The outbox channel of this target's alerts.
    pub fn channel(&self) -> &'static str {
        match self {
            Target::Slack => "ops_slack",
            Target::Teams => "ops_teams",
            Target::Webhook => "ops_webhook",
        }
    }

    /// The target of an outbox channel, `None` for the customer channels.
    pub fn of_channel(channel: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.channel() == channel)
    }
}

/// What happened that is worth an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Raised,
    Reopened,
    Escalated,
}

impl AlertKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::Raised => "raised",
            AlertKind::Reopened => "reopened",
            AlertKind::Escalated => "escalated",
        }
    }
}

/// A route's URL: its `Debug` prints `[redacted]` and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(reqwest::Url);

impl SecretUrl {
    /// The URL itself, for the one place that sends to it.
    pub fn expose(&self) -> &reqwest::Url {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One configured route, checked.
#[derive(Debug, Clone)]
pub struct Route {
    /// Names the route in the ledger, the outbox (`source`) and errors.
    pub name: String,
    /// A theme id, or `*`: every theme no route names.
    pub theme: String,
    pub target: Target,
    pub url: SecretUrl,
    /// Signs generic webhook requests.
    pub secret: Option<Secret>,
    /// `en` or `de`.
    pub language: &'static str,
    pub events: HashSet<AlertKind>,
}

/// Ops alert settings: the routes and how often they may speak.
#[derive(Debug, Clone)]
pub struct OpsAlerts {
    pub routes: Vec<Route>,
    /// A route that alerted about a theme stays quiet about it this long (event time).
    pub quiet_ms: i64,
    /// Alert again when distinct customers reach this × the count at the last alert.
    pub escalation_factor: f64,
    /// trends' `/ops` page; an action is at `{ops_url}#action-{id}`.
    pub ops_url: String,
}

impl OpsAlerts {
    /// The routes for `theme`: those naming it, else the `*` ones.
    pub fn routes_for(&self, theme: &str) -> Vec<&Route> {
        let named: Vec<&Route> = self.routes.iter().filter(|r| r.theme == theme).collect();
        if !named.is_empty() {
            return named;
        }
        self.routes.iter().filter(|r| r.theme == "*").collect()
    }

    /// The link to the action's row on `/ops`.
    pub fn link(&self, action_id: Uuid) -> String {
        format!("{}#action-{action_id}", self.ops_url.trim_end_matches('#'))
    }
}

/// A routes file that cannot be used. Never quotes a URL or secret.
#[derive(Debug, thiserror::Error)]
pub enum OpsConfigError {
    #[error("cannot read the ops alert routes {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ops alert routes, line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("ops alert route {route}: {field} {problem}")]
    Route {
        route: String,
        field: &'static str,
        problem: String,
    },
    #[error("ops alerts: {0}")]
    Setting(String),
}

/// One `[[route]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: String,
    theme: String,
    kind: Target,
    url: String,
    secret: Option<String>,
    language: Option<String>,
    events: Option<Vec<AlertKind>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default, rename = "route")]
    routes: Vec<RouteSpec>,
}

/// The languages the alert wording exists in.
const LANGUAGES: [&str; 2] = ["en", "de"];

/// Reads and checks the routes file (TOML, `[[route]]` tables).
pub fn load_routes(path: &Path) -> Result<Vec<Route>, OpsConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| OpsConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_routes(&text)
}

/// Parses and checks routes: a bad one is named with the field that is wrong.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, OpsConfigError> {
    // toml's own Display quotes the offending line, which may hold a URL: only its
    // message and the line number are passed on.
    let file: RoutesFile = toml::from_str(text).map_err(|error| OpsConfigError::Syntax {
        line: error
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1),
        message: error.message().to_owned(),
    })?;
    let mut names = HashSet::new();
    let mut routes = Vec::new();
    for (index, spec) in file.routes.into_iter().enumerate() {
        let label = if spec.name.trim().is_empty() {
            format!("#{}", index + 1)
        } else {
            spec.name.trim().to_owned()
        };
        let bad = |field: &'static str, problem: String| OpsConfigError::Route {
            route: label.clone(),
            field,
            problem,
        };
        if spec.name.trim().is_empty() {
            return Err(bad("name", "is empty".into()));
        }
        if !names.insert(label.clone()) {
            return Err(bad("name", "is used by another route too".into()));
        }
        if spec.theme.trim().is_empty() {
            return Err(bad("theme", "is empty (a theme id, or `*`)".into()));
        }
        let url = reqwest::Url::parse(spec.url.trim())
            .map_err(|e| bad("url", format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("url", "must be http or https".into()));
        }
        let secret = match (spec.kind, spec.secret) {
            (_, None) => None,
            (Target::Webhook, Some(secret)) => {
                signature::validate_secret(&secret).map_err(|e| bad("secret", e.to_string()))?;
                Some(Secret::new(secret))
            }
            (_, Some(_)) => {
                return Err(bad(
                    "secret",
                    "is only for kind = \"webhook\" (a Slack or Teams URL is its own secret)"
                        .into(),
                ))
            }
        };
        let language = match spec.language.as_deref().map(str::trim) {
            None => "en",
            Some(tag) => LANGUAGES
                .into_iter()
                .find(|l| *l == tag)
                .ok_or_else(|| bad("language", format!("{tag:?} is not one of en, de")))?,
        };
        let events: HashSet<AlertKind> = match spec.events {
            None => [AlertKind::Raised, AlertKind::Reopened, AlertKind::Escalated].into(),
            Some(events) if events.is_empty() => {
                return Err(bad("events", "is empty (leave it out for all)".into()))
            }
            Some(events) => events.into_iter().collect(),
        };
        if spec.kind == Target::Webhook && secret.is_none() {
            tracing::warn!(route = %label, "ops alert webhook route without a secret: requests are unsigned");
        }
        routes.push(Route {
            name: label,
            theme: spec.theme.trim().to_owned(),
            target: spec.kind,
            url: SecretUrl(url),
            secret,
            language,
            events,
        });
    }
    Ok(routes)
}

/// What the ledger knows of earlier alerts of one route about one action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Previous {
    /// Distinct customers at the latest alert (sent or suppressed).
    pub distinct_customers: i64,
    /// Escalation alerts so far.
    pub escalations: i64,
}

/// The alert an action event calls for on a route that has seen `previous` about the
/// action, with its identity (`raised`, `reopened:<n>`, `escalated:<level>`); `None`
/// when it calls for none. An update escalates when its distinct customers reached
/// `factor` × those at the previous alert (and grew): a replay of that update finds
/// its own alert as the previous one and does not qualify again.
pub fn alert_for(
    event: &ActionEvent,
    previous: Option<Previous>,
    factor: f64,
) -> Option<(AlertKind, String)> {
    match event.kind {
        ActionEventKind::Raised => Some((AlertKind::Raised, "raised".to_owned())),
        ActionEventKind::Reopened => Some((
            AlertKind::Reopened,
            format!("reopened:{}", event.workflow.reopened_count),
        )),
        ActionEventKind::Updated => {
            let previous = previous?;
            let now = i64::from(event.evidence.distinct_customers);
            let escalated = now > previous.distinct_customers
                && now as f64 >= factor * previous.distinct_customers as f64;
            escalated.then(|| {
                (
                    AlertKind::Escalated,
                    format!("escalated:{}", previous.escalations + 1),
                )
            })
        }
        _ => None,
    }
}

/// What one action event did to the ledger.
#[derive(Debug, Default, PartialEq)]
pub struct Decided {
    /// (target, alert kind) of the alerts queued.
    pub queued: Vec<(Target, AlertKind)>,
    /// Targets whose alert the quiet period suppressed.
    pub suppressed: Vec<Target>,
}

/// Decides and stores the alerts `event` (which occurred at `at_ms`) calls for: per
/// route, a ledger row and, unless the quiet period holds it, an outbox row with the
/// rendered message, both in one transaction. Escalations pass the quiet period: each
/// needs the customers to have multiplied, so they cannot flap. Only what is new is
/// returned, so a replayed event counts nothing.
pub async fn decide(
    db: &Database,
    alerts: &OpsAlerts,
    event: &ActionEvent,
    at_ms: i64,
    now_ms: i64,
) -> Result<Decided, sqlx::Error> {
    let mut decided = Decided::default();
    let action_id = event.action_id.to_string();
    for route in alerts.routes_for(&event.theme) {
        // Reads first, outside the write transaction: an action's events come from one
        // partition (keyed by theme), so nothing else decides about this theme meanwhile,
        // and the unique identity settles a race during a rebalance.
        let previous = previous(db, &route.name, &action_id).await?;
        let Some((kind, alert)) = alert_for(event, previous, alerts.escalation_factor) else {
            continue;
        };
        let wanted = route.events.contains(&kind);
        let quiet = wanted
            && kind != AlertKind::Escalated
            && recently_alerted(
                db,
                &route.name,
                &event.theme,
                at_ms.saturating_sub(alerts.quiet_ms),
            )
            .await?;
        let alert_id = Uuid::now_v7().to_string();
        let outcome = match (wanted, quiet) {
            (false, _) => UNWANTED,
            (true, true) => SUPPRESSED,
            (true, false) => QUEUED,
        };
        let mut tx = db.pool().begin().await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO notify_ops_alerts (alert_id, route, action_id, theme, alert, \
             distinct_customers, decided_at_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING RETURNING alert_id",
        )
        .bind(&alert_id)
        .bind(&route.name)
        .bind(&action_id)
        .bind(&event.theme)
        .bind(&alert)
        .bind(i64::from(event.evidence.distinct_customers))
        .bind(at_ms)
        .bind(outcome)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            continue; // decided before: a replay
        }
        if outcome != QUEUED {
            tx.commit().await?;
            if quiet {
                decided.suppressed.push(route.target);
            }
            continue;
        }
        let previous_customers = previous.map(|p| p.distinct_customers);
        let payload = render(
            route,
            event,
            kind,
            previous_customers,
            &alerts.link(event.action_id),
            &alert_id,
        );
        sqlx::query(
            "INSERT INTO notify_deliveries (delivery_id, action_id, customer_id, source, \
             channel, language, payload, status, attempts, next_attempt_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&alert_id)
        .bind(&action_id)
        // The (action, customer) key of the outbox, made of the alert's identity.
        .bind(format!("ops:{}:{alert}", route.name))
        .bind(&route.name)
        .bind(route.target.channel())
        .bind(route.language)
        .bind(payload.to_string())
        .bind(PENDING)
        .bind(0_i64)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        decided.queued.push((route.target, kind));
    }
    Ok(decided)
}

async fn previous(
    db: &Database,
    route: &str,
    action_id: &str,
) -> Result<Option<Previous>, sqlx::Error> {
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT distinct_customers FROM notify_ops_alerts WHERE route = $1 AND action_id = $2 \
         ORDER BY decided_at_ms DESC, alert_id DESC LIMIT 1",
    )
    .bind(route)
    .bind(action_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(distinct_customers) = latest else {
        return Ok(None);
    };
    let escalations: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notify_ops_alerts WHERE route = $1 AND action_id = $2 \
         AND alert LIKE 'escalated:%'",
    )
    .bind(route)
    .bind(action_id)
    .fetch_one(db.pool())
    .await?;
    Ok(Some(Previous {
        distinct_customers,
        escalations,
    }))
}

/// Whether the route sent an alert about the theme after `since_ms` (event time).
async fn recently_alerted(
    db: &Database,
    route: &str,
    theme: &str,
    since_ms: i64,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notify_ops_alerts WHERE route = $1 AND theme = $2 \
         AND outcome = $3 AND decided_at_ms > $4",
    )
    .bind(route)
    .bind(theme)
    .bind(QUEUED)
    .bind(since_ms)
    .fetch_one(db.pool())
    .await?;
    Ok(count > 0)
}

/// The fixed words of an alert, per language (the theme name comes from the event).
struct Words {
    raised: &'static str,
    reopened: &'static str,
    escalated: &'static str,
    negative: &'static str,
    mentions: &'static str,
    customers: &'static str,
    said: &'static str,
    open: &'static str,
}

const EN: Words = Words {
    raised: "New action",
    reopened: "Action reopened",
    escalated: "Action escalating",
    negative: "Negative mentions",
    mentions: "Mentions",
    customers: "Customers",
    said: "What customers said",
    open: "Open in /ops",
};

const DE: Words = Words {
    raised: "Neue Maßnahme",
    reopened: "Maßnahme wieder offen",
    escalated: "Maßnahme eskaliert",
    negative: "Negative Nennungen",
    mentions: "Nennungen",
    customers: "Kunden",
    said: "Was Kunden sagten",
    open: "In /ops öffnen",
};

fn words(language: &str) -> &'static Words {
    match language {
        "de" => &DE,
        _ => &EN,
    }
}

/// The parts of an alert, cleaned (control characters out, whitespace collapsed) but
/// not yet escaped for a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub title: String,
    pub theme_name: String,
    pub reason: String,
    /// (label, value) pairs.
    pub counts: Vec<(String, String)>,
    pub excerpts_title: String,
    pub excerpts: Vec<String>,
    pub link_title: String,
    pub link: String,
}

/// The alert's content in `language`.
pub fn parts(
    language: &str,
    event: &ActionEvent,
    kind: AlertKind,
    previous_customers: Option<i64>,
    link: &str,
) -> Parts {
    let w = words(language);
    let theme_name = message::clean(message::theme_name(
        &event.theme_name,
        language,
        &event.theme,
    ));
    let heading = match kind {
        AlertKind::Raised => w.raised,
        AlertKind::Reopened => w.reopened,
        AlertKind::Escalated => w.escalated,
    };
    let evidence = &event.evidence;
    let reason = if evidence.reason.trim().is_empty() {
        &evidence.rule
    } else {
        &evidence.reason
    };
    let customers = match (kind, previous_customers) {
        (AlertKind::Escalated, Some(before)) => {
            format!("{before} → {}", evidence.distinct_customers)
        }
        _ => evidence.distinct_customers.to_string(),
    };
    Parts {
        title: format!("{heading}: {theme_name}"),
        theme_name,
        reason: message::clean(reason),
        counts: vec![
            (w.customers.to_owned(), customers),
            (
                w.negative.to_owned(),
                evidence.negative_mentions.to_string(),
            ),
            (w.mentions.to_owned(), evidence.mentions.to_string()),
        ],
        excerpts_title: w.said.to_owned(),
        excerpts: evidence
            .excerpts
            .iter()
            .map(|e| message::excerpt(&e.excerpt, EXCERPT_CHARS))
            .filter(|e| !e.is_empty())
            .take(EXCERPTS)
            .collect(),
        link_title: w.open.to_owned(),
        link: link.to_owned(),
    }
}

/// Slack mrkdwn escaping: the three characters Slack gives meaning to (`<@U…>`,
/// `<!channel>`, `<url|text>` and entities); everything else is shown as written.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Slack incoming-webhook body: a `text` fallback (notifications, old clients) and blocks.
pub fn slack_payload(parts: &Parts) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": parts.title, "emoji": false}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&parts.reason)}}),
        json!({"type": "section", "fields": parts.counts.iter().map(|(label, value)| json!({
            "type": "mrkdwn",
            "text": format!("*{}*\n{}", slack_escape(label), slack_escape(value)),
        })).collect::<Vec<_>>()}),
    ];
    if !parts.excerpts.is_empty() {
        let quoted: Vec<String> = parts
            .excerpts
            .iter()
            .map(|e| format!(">{}", slack_escape(e)))
            .collect();
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "*{}*\n{}", slack_escape(&parts.excerpts_title), quoted.join("\n")
            )}}),
        );
    }
    blocks.push(json!({"type": "actions", "elements": [{
        "type": "button",
        "text": {"type": "plain_text", "text": parts.link_title},
        "url": parts.link,
    }]}));
    json!({
        "text": slack_escape(&format!("{} — {}", parts.title, parts.reason)),
        "blocks": blocks,
    })
}

/// A Slack payload as the team sees it in the channel, as plain text (for `closeloop
/// demo` and for reading a dead letter).
pub fn slack_as_text(payload: &Value) -> String {
    let mut lines = Vec::new();
    let text = |v: &Value| slack_unescape(v["text"].as_str().unwrap_or_default());
    for block in payload["blocks"].as_array().into_iter().flatten() {
        match block["type"].as_str().unwrap_or_default() {
            "header" => {
                let title = text(&block["text"]);
                lines.push(title.clone());
                lines.push("═".repeat(title.chars().count()));
            }
            "section" => {
                if block["text"].is_object() {
                    lines.extend(text(&block["text"]).lines().map(str::to_owned));
                }
                let fields: Vec<String> = block["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| text(f).replace('\n', ": "))
                    .collect();
                if !fields.is_empty() {
                    lines.push(fields.join(" · "));
                }
            }
            "actions" => {
                for element in block["elements"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "[{}] {}",
                        text(&element["text"]),
                        element["url"].as_str().unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
    // What Slack draws instead of the markup: bold as plain text, a quote with a bar.
    lines
        .into_iter()
        .map(|line| match line.strip_prefix('>') {
            Some(quoted) => format!("▍ {quoted}"),
            None => line.replace('*', ""),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Slack alert about a newly raised `event`, as the team reads it (plain text): what
/// `closeloop demo` shows.
pub fn slack_preview(event: &ActionEvent, language: &str, ops_url: &str) -> String {
    let link = format!("{}#action-{}", ops_url, event.action_id);
    slack_as_text(&slack_payload(&parts(
        language,
        event,
        AlertKind::Raised,
        None,
        &link,
    )))
}

/// Teams workflow-webhook body: one Adaptive Card 1.4. Card text is plain JSON, so the
/// customer's words need no escaping beyond JSON's own.
pub fn teams_payload(parts: &Parts) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": parts.title, "size": "Large", "weight": "Bolder", "wrap": true}),
        json!({"type": "TextBlock", "text": parts.reason, "wrap": true}),
        json!({"type": "FactSet", "facts": parts.counts.iter().map(|(label, value)| json!({
            "title": label, "value": value,
        })).collect::<Vec<_>>()}),
    ];
    if !parts.excerpts.is_empty() {
        body.push(json!({"type": "TextBlock", "text": parts.excerpts_title, "weight": "Bolder", "wrap": true}));
        for excerpt in &parts.excerpts {
            body.push(
                json!({"type": "TextBlock", "text": excerpt, "isSubtle": true, "wrap": true}),
            );
        }
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": parts.link_title, "url": parts.link}],
            },
        }],
    })
}

/// The generic webhook body (`sent_at` is added per attempt, as for customers).
pub fn webhook_payload(
    parts: &Parts,
    event: &ActionEvent,
    kind: AlertKind,
    language: &str,
    alert_id: &str,
    previous_customers: Option<i64>,
) -> Value {
    let evidence = &event.evidence;
    json!({
        "type": "closeloop.ops_alert",
        "alert_id": alert_id,
        "alert": kind.as_str(),
        "action_id": event.action_id,
        "theme": {"id": event.theme, "name": parts.theme_name},
        "language": language,
        "title": parts.title,
        "reason": parts.reason,
        "detector": evidence.detector,
        "counts": {
            "mentions": evidence.mentions,
            "negative_mentions": evidence.negative_mentions,
            "distinct_customers": evidence.distinct_customers,
            "previous_distinct_customers": previous_customers,
        },
        "excerpts": parts.excerpts,
        "url": parts.link,
    })
}

/// The message of one alert for `route`'s target and language.
pub fn render(
    route: &Route,
    event: &ActionEvent,
    kind: AlertKind,
    previous_customers: Option<i64>,
    link: &str,
    alert_id: &str,
) -> Value {
    let parts = parts(route.language, event, kind, previous_customers, link);
    match route.target {
        Target::Slack => slack_payload(&parts),
        Target::Teams => teams_payload(&parts),
        Target::Webhook => webhook_payload(
            &parts,
            event,
            kind,
            route.language,
            alert_id,
            previous_customers,
        ),
    }
}

/// Sends queued alerts (the worker calls it for `ops_*` rows).
#[derive(Debug, Clone)]
pub struct OpsSender {
    pub http: reqwest::Client,
    pub routes: HashMap<String, Route>,
    pub timeout: Duration,
}

impl OpsSender {
    pub fn new(http: reqwest::Client, routes: &[Route], timeout: Duration) -> Self {
        Self {
            http,
            routes: routes.iter().map(|r| (r.name.clone(), r.clone())).collect(),
            timeout,
        }
    }

    /// The rate-limit key of the route's receiver (host and port; not the secret path).
    pub fn destination(&self, route: &str) -> Option<String> {
        Some(webhook::rate_limit_key(
            "ops",
            self.routes.get(route)?.url.expose(),
        ))
    }

    /// One POST of the stored message.
    pub async fn send(&self, due: &Due) -> Attempt {
        let Some(route) = self.routes.get(&due.source) else {
            return Attempt::Reject {
                status: None,
                error: format!("no ops alert route {} configured", due.source),
            };
        };
        let (body, sent_at) = match route.target {
            Target::Webhook => match webhook::with_sent_at(due.payload.as_deref()) {
                Ok(stamped) => stamped,
                Err(rejected) => return rejected,
            },
            // Slack and Teams get exactly the stored card.
            Target::Slack | Target::Teams => match &due.payload {
                Some(payload) => (payload.clone().into_bytes(), chrono::Utc::now()),
                None => {
                    return Attempt::Reject {
                        status: None,
                        error: "payload missing".to_owned(),
                    }
                }
            },
        };
        webhook::post(
            &self.http,
            route.url.expose(),
            &due.delivery_id,
            route.secret.as_ref(),
            body,
            sent_at,
            self.timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_events::{ActionStatus, Evidence, EvidenceExcerpt};
    use std::collections::BTreeMap;

    const ROUTES: &str = r#"
[[route]]
name = "ops-slack"
theme = "*"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/sEcReTtOkEn"

[[route]]
name = "escalations"
theme = "*"
kind = "teams"
url = "https://example.webhook.office.com/workflows/sEcReTtOkEn"
events = ["escalated"]

[[route]]
name = "payments-hook"
theme = "payment"
kind = "webhook"
url = "https://alerts.example.com/hook"
secret = "whsec_c2VjcmV0LWZvci1ub3RpZnktdGVzdHM="
language = "de"
events = ["raised"]
"#;

    pub(crate) fn event(kind: ActionEventKind, customers: u32) -> ActionEvent {
        let now = chrono::Utc::now();
        ActionEvent {
            action_id: Uuid::now_v7(),
            kind,
            theme: "delivery_time".into(),
            theme_name: BTreeMap::from([
                ("en".into(), "Delivery time".into()),
                ("de".into(), "Lieferzeit".into()),
            ]),
            status: ActionStatus::Open,
            raised_at: now,
            evidence: Evidence {
                window_start: now,
                window_end: now,
                mentions: 12,
                negative_mentions: 9,
                distinct_customers: customers,
                rule: "rule".into(),
                reason: "9 negative mentions, 3.1× the baseline".into(),
                excerpts: ["<@channel> & *bold*", "Late\u{7} again", "three", "four"]
                    .iter()
                    .map(|text| EvidenceExcerpt {
                        feedback_id: Uuid::now_v7(),
                        customer_id: "c".into(),
                        excerpt: (*text).into(),
                        given_at: now,
                    })
                    .collect(),
                ..Evidence::default()
            },
            resolution: None,
            effect: None,
            workflow: Default::default(),
        }
    }

    #[test]
    fn routes_parse_and_never_print_their_secrets() {
        let routes = parse_routes(ROUTES).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].language, "en");
        assert_eq!(routes[0].events.len(), 3);
        assert_eq!(routes[2].language, "de");
        assert!(routes[2].secret.is_some());
        let sender = OpsSender::new(reqwest::Client::new(), &routes, Duration::from_secs(1));
        let printed = format!("{routes:?} {sender:?}");
        assert!(!printed.contains("sEcReTtOkEn"), "{printed}");
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(printed.contains("[redacted]"));
        let alerts = OpsAlerts {
            routes,
            quiet_ms: 0,
            escalation_factor: 2.0,
            ops_url: "http://localhost:8082/ops".into(),
        };
        assert_eq!(alerts.routes_for("payment")[0].name, "payments-hook");
        assert_eq!(alerts.routes_for("delivery_time")[0].name, "ops-slack");
    }

    #[test]
    fn bad_routes_are_named_with_their_field_and_no_secret() {
        let check = |text: &str, wanted: &[&str]| {
            let error = parse_routes(text).unwrap_err().to_string();
            for w in wanted {
                assert!(error.contains(w), "{error} lacks {w}");
            }
            assert!(!error.contains("sEcReT"), "{error}");
        };
        let route = |extra: &str| {
            format!("[[route]]\nname = \"r1\"\ntheme = \"*\"\nkind = \"slack\"\n{extra}\n")
        };
        check(&route("url = \"ftp://x/sEcReT\""), &["r1", "url", "http"]);
        check(&route("url = \"not a url sEcReT\""), &["r1", "url"]);
        check(
            &route("url = \"https://x/sEcReT\"\nsecret = \"whsec_sEcReT\""),
            &["r1", "secret", "webhook"],
        );
        check(
            &route("url = \"https://x/sEcReT\"\nlanguage = \"fr\""),
            &["r1", "language"],
        );
        check(
            &route("url = \"https://x/sEcReT\"\nevents = []"),
            &["r1", "events"],
        );
        check(
            "[[route]]\nname = \"w\"\ntheme = \"*\"\nkind = \"webhook\"\nurl = \"https://x/sEcReT\"\nsecret = \"whsec_%%%\"\n",
            &["w", "secret", "base64"],
        );
        check(
            &route("url = \"https://x/sEcReT\"\nkind2 = 1"),
            &["line", "kind2"],
        );
        check(
            &format!(
                "{}{}",
                route("url = \"https://x/a\""),
                route("url = \"https://x/b\"")
            ),
            &["r1", "name", "another"],
        );
    }

    #[test]
    fn raises_and_reopens_alert_and_updates_escalate_by_the_factor() {
        let raised = event(ActionEventKind::Raised, 4);
        assert_eq!(
            alert_for(&raised, None, 2.0),
            Some((AlertKind::Raised, "raised".into()))
        );
        let mut reopened = event(ActionEventKind::Reopened, 4);
        reopened.workflow.reopened_count = 2;
        assert_eq!(alert_for(&reopened, None, 2.0).unwrap().1, "reopened:2");
        let before = Previous {
            distinct_customers: 4,
            escalations: 0,
        };
        assert_eq!(
            alert_for(&event(ActionEventKind::Updated, 7), Some(before), 2.0),
            None
        );
        assert_eq!(
            alert_for(&event(ActionEventKind::Updated, 8), Some(before), 2.0),
            Some((AlertKind::Escalated, "escalated:1".into()))
        );
        // Nothing to compare with: no escalation.
        assert_eq!(
            alert_for(&event(ActionEventKind::Updated, 80), None, 2.0),
            None
        );
        assert_eq!(
            alert_for(&event(ActionEventKind::Resolved, 8), Some(before), 2.0),
            None
        );
    }

    #[test]
    fn slack_escapes_customer_text_and_reads_back_as_written() {
        let event = event(ActionEventKind::Raised, 4);
        let parts = parts(
            "en",
            &event,
            AlertKind::Raised,
            None,
            "http://o/ops#action-1",
        );
        assert_eq!(parts.excerpts.len(), 3);
        assert_eq!(parts.excerpts[1], "Late again");
        let slack = slack_payload(&parts);
        let quoted = slack["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(quoted.contains("&lt;@channel&gt; &amp; *bold*"), "{quoted}");
        assert!(!quoted.contains("<@channel>"));
        let text = slack_as_text(&slack);
        assert!(text.starts_with("New action: Delivery time\n"), "{text}");
        assert!(text.contains("▍ <@channel> & *bold*"), "{text}");
        assert!(
            text.contains("Customers: 4 · Negative mentions: 9"),
            "{text}"
        );
        assert!(
            text.contains("[Open in /ops] http://o/ops#action-1"),
            "{text}"
        );
        let teams = teams_payload(&parts);
        let card = &teams["attachments"][0]["content"];
        assert_eq!(card["version"], "1.4");
        assert!(card.to_string().contains("<@channel> & *bold*"));
        let de = parts_de(&event);
        assert_eq!(de.title, "Neue Maßnahme: Lieferzeit");
    }

    #[tokio::test]
    async fn decisions_are_stored_once_and_the_quiet_period_holds_raises_not_escalations() {
        for db in crate::test_databases("ops_alert_decide").await {
            let alerts = OpsAlerts {
                routes: parse_routes(ROUTES).unwrap(),
                quiet_ms: 3_600_000,
                escalation_factor: 2.0,
                ops_url: "http://o/ops".into(),
            };
            let t = 1_700_000_000_000;
            let first = event(ActionEventKind::Raised, 4);
            let decided = decide(&db, &alerts, &first, t, t).await.unwrap();
            assert_eq!(decided.queued, vec![(Target::Slack, AlertKind::Raised)]);
            // Replayed: nothing new.
            assert_eq!(
                decide(&db, &alerts, &first, t, t).await.unwrap(),
                Decided::default()
            );
            // Another action on the theme 10 minutes later: quiet.
            let second = event(ActionEventKind::Raised, 5);
            let decided = decide(&db, &alerts, &second, t + 600_000, t).await.unwrap();
            assert_eq!(decided.suppressed, vec![Target::Slack]);
            // The first action's customers doubled: escalates through the quiet period,
            // once, and again only after doubling once more.
            let mut update = first.clone();
            update.kind = ActionEventKind::Updated;
            update.evidence.distinct_customers = 8;
            let decided = decide(&db, &alerts, &update, t + 700_000, t).await.unwrap();
            assert_eq!(
                decided.queued,
                vec![
                    (Target::Slack, AlertKind::Escalated),
                    // The escalations-only route knows the raise as its baseline.
                    (Target::Teams, AlertKind::Escalated)
                ]
            );
            assert_eq!(
                decide(&db, &alerts, &update, t + 700_000, t).await.unwrap(),
                Decided::default()
            );
            update.evidence.distinct_customers = 15;
            assert_eq!(
                decide(&db, &alerts, &update, t + 800_000, t).await.unwrap(),
                Decided::default()
            );
            update.evidence.distinct_customers = 16;
            let decided = decide(&db, &alerts, &update, t + 900_000, t).await.unwrap();
            assert_eq!(
                decided.queued,
                vec![
                    (Target::Slack, AlertKind::Escalated),
                    // The escalations-only route knows the raise as its baseline.
                    (Target::Teams, AlertKind::Escalated)
                ]
            );
            // An hour after the last alert sent (the escalation), a raise goes out again.
            let third = event(ActionEventKind::Raised, 3);
            let decided = decide(&db, &alerts, &third, t + 4_500_001, t)
                .await
                .unwrap();
            assert_eq!(decided.queued, vec![(Target::Slack, AlertKind::Raised)]);
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT customer_id, channel FROM notify_deliveries ORDER BY created_at_ms, delivery_id",
            )
            .fetch_all(db.pool())
            .await
            .unwrap();
            let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(
                ids,
                [
                    "ops:ops-slack:raised",
                    "ops:ops-slack:escalated:1",
                    "ops:escalations:escalated:1",
                    "ops:ops-slack:escalated:2",
                    "ops:escalations:escalated:2",
                    "ops:ops-slack:raised",
                ]
            );
            assert_eq!(rows[2].1, "ops_teams");
        }
    }

    fn parts_de(event: &ActionEvent) -> Parts {
        parts("de", event, AlertKind::Raised, None, "x")
    }

    #[test]
    fn escalations_show_how_the_customers_grew() {
        let event = event(ActionEventKind::Updated, 9);
        let parts = parts("en", &event, AlertKind::Escalated, Some(4), "x");
        assert_eq!(parts.title, "Action escalating: Delivery time");
        assert_eq!(parts.counts[0].1, "4 → 9");
    }
}

//! notify: the last step of the feedback loop. It keeps a small projection of
//! categorised feedback (who said what about which theme, and whether they may be
//! contacted), and when an action on a theme is resolved it tells each consenting
//! customer who complained about it what was done: "you said, we did".
//!
//! ```text
//! feedback.categorised.v1 ──▶ notify_mentions ─┐
//! actions.v1 (resolved) ───────────────────────┴▶ notify_deliveries (outbox)
//!                                    (rendered from      │   + notify_skips
//!                                     templates/*.toml)  │ delivery worker
//!                                                        ▼ (rate limit, retries)
//!                      signed webhook per source / e-mail over SMTP ──▶ notifications.v1
//! privacy.erasure.v1 ──▶ forget the customer, cancel their pending deliveries
//! customers.preferences.v1 ──▶ notify_preferences (consent, channels, language,
//!                              unsubscribed); unsubscribing cancels what is waiting
//! actions.v1 (raised / reopened / escalating) ──▶ notify_ops_alerts (quiet period)
//!                              ──▶ notify_deliveries, channels ops_* ──▶ Slack / Teams /
//!                                  signed webhook of the ops team ([`ops_alert`])
//! ```
//!
//! Every message carries a signed one-click unsubscribe link that notify serves
//! ([`unsubscribe`]), and a frequency cap holds (or skips) messages to a customer who
//! was written to within the period ([`frequency`]).
//!
//! [`Service::build`] prepares everything and binds the listener;
//! [`Service::run_until_stopped`] runs the consumers, the worker and the HTTP server.

pub mod api;
pub mod email;
pub mod frequency;
pub mod handlers;
pub mod message;
pub mod metrics;
pub mod ops_alert;
pub mod outbox;
pub mod preferences;
pub mod projection;
pub mod signature;
pub mod template;
pub mod unsubscribe;
pub mod webhook;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use closeloop_bus::KafkaArgs;
use closeloop_runtime::Foundation;
use closeloop_store::DatabaseArgs;
use closeloop_telemetry::Secret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use closeloop_runtime::Error;

use crate::email::{EmailConfigError, EmailSender};
use crate::frequency::{Cap, WhenCapped};
use crate::handlers::{
    ActionHandler, Context, ErasureHandler, FeedbackHandler, Prefer, PreferencesHandler, Routing,
};
use crate::metrics::NotifyMetrics;
use crate::ops_alert::{OpsAlerts, OpsSender};
use crate::template::Templates;
use crate::webhook::WebhookSender;
use crate::worker::Worker;
use closeloop_runtime::RateLimiter;

/// Consumer groups, one per topic, so a slow topic never holds up another.
pub const FEEDBACK_GROUP: &str = "closeloop-notify-feedback";
pub const ACTIONS_GROUP: &str = "closeloop-notify-actions";
pub const ERASURE_GROUP: &str = "closeloop-notify-erasure";
pub const PREFERENCES_GROUP: &str = "closeloop-notify-preferences";

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "notify",
    about = "Tells customers what became of their feedback: resolved actions → signed webhooks and e-mail"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub pseudonym: closeloop_runtime::PseudonymArgs,
    /// Address of the HTTP API (`/v1/notifications`, `/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "NOTIFY_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: SocketAddr,
    /// When set, /v1/* requires `Authorization: Bearer <token>`: the same ops token as
    /// trends' (`closeloop up` gives both the one it is configured with).
    #[arg(long, env = "NOTIFY_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<closeloop_http::OpsToken>,
    /// Timeouts and the connection bound of the HTTP server (`HTTP_*`).
    #[command(flatten)]
    pub http: closeloop_http::HttpLimits,
    /// Per source webhook URL, `source=url`, repeatable / comma-separated in env.
    #[arg(long = "webhook", env = "NOTIFY_WEBHOOKS", value_delimiter = ',', value_parser = parse_pair)]
    pub webhooks: Vec<(String, String)>,
    /// Per source signing secret, `source=whsec_...`.
    #[arg(long = "webhook-secret", env = "NOTIFY_WEBHOOK_SECRETS", hide_env_values = true, value_delimiter = ',', value_parser = parse_secret_pair)]
    pub webhook_secrets: Vec<(String, Secret)>,
    /// Attempts per delivery before it is given up (dead).
    #[arg(long, env = "NOTIFY_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to 10 minutes.
    #[arg(long, env = "NOTIFY_RETRY_BASE_MS", default_value_t = 500)]
    pub retry_base_ms: u64,
    /// Customers whose negative mention is this recent at resolution are told too, not
    /// only those cited in the action's evidence.
    #[arg(long, env = "NOTIFY_LOOKBACK_DAYS", default_value_t = 30)]
    pub lookback_days: i64,
    /// Per request timeout of webhook calls.
    #[arg(long, env = "NOTIFY_HTTP_TIMEOUT_MS", default_value_t = 5000)]
    pub http_timeout_ms: u64,
    /// How long a delivery being sent stays claimed beyond the send timeout; if notify
    /// dies mid-send, the delivery is sent again (same id) after this.
    #[arg(long, env = "NOTIFY_LEASE_MARGIN_MS", default_value_t = 30_000)]
    pub lease_margin_ms: u64,
    /// Sends per second to one destination (a webhook host, an e-mail domain).
    #[arg(long, env = "NOTIFY_RATE_PER_SECOND", default_value_t = 20.0)]
    pub rate_per_second: f64,
    /// Sends one destination may get at once before the rate applies.
    #[arg(long, env = "NOTIFY_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,
    /// A directory of message templates (`en.toml`, `de.toml`, …) overriding the built-in
    /// ones field by field or adding languages.
    #[arg(long, env = "NOTIFY_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// SMTP relay for e-mail, `smtp://[user:pass@]host[:port][?tls=required]` or
    /// `smtps://…`. Without it, nobody is e-mailed.
    #[arg(long, env = "NOTIFY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SmtpUrl>,
    /// The e-mails' sender, e.g. `Customer Care <care@example.com>`.
    #[arg(long, env = "NOTIFY_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// Timeout of one SMTP transaction.
    #[arg(long, env = "NOTIFY_SMTP_TIMEOUT_MS", default_value_t = 30_000)]
    pub smtp_timeout_ms: u64,
    /// The channel for a customer reachable both ways.
    #[arg(long, env = "NOTIFY_PREFER_CHANNEL", value_enum, default_value_t = Prefer::Email)]
    pub prefer_channel: Prefer,
    /// At most one message per customer in this period (`7d`, `36h`, `90m`, `30s`);
    /// `0` turns the cap off.
    #[arg(long, env = "NOTIFY_FREQUENCY_CAP", default_value = "7d", value_parser = parse_period)]
    pub frequency_cap: Duration,
    /// What becomes of a message decided within the customer's period: `hold` it and
    /// send it combined with the others when the period ends, or `skip` it.
    #[arg(long, env = "NOTIFY_WHEN_CAPPED", value_enum, default_value_t = WhenCapped::Hold)]
    pub when_capped: WhenCapped,
    /// Where customers reach notify's unsubscribe links, e.g. `https://care.example.com`
    /// [default: http://<NOTIFY_HTTP_ADDR>].
    #[arg(long, env = "NOTIFY_PUBLIC_URL")]
    pub public_url: Option<reqwest::Url>,
    /// Signs unsubscribe links, at least 16 characters [default: the pseudonym key,
    /// else a public development key].
    #[arg(long, env = "NOTIFY_UNSUBSCRIBE_KEY", hide_env_values = true, value_parser = parse_link_key)]
    pub unsubscribe_key: Option<Secret>,
    /// How long an unsubscribe link works.
    #[arg(long, env = "NOTIFY_UNSUBSCRIBE_LINK_DAYS", default_value_t = 365)]
    pub unsubscribe_link_days: u32,
    /// A TOML file of ops alert routes (`[[route]]` with name, theme, kind = slack |
    /// teams | webhook, url, secret, language, events). Without it, ops get no alerts.
    #[arg(long, env = "NOTIFY_OPS_ALERTS")]
    pub ops_alerts: Option<PathBuf>,
    /// A route that alerted about a theme stays quiet about it this long (`1h`, `30m`;
    /// `0`: never quiet). Escalations pass.
    #[arg(long, env = "NOTIFY_OPS_QUIET_PERIOD", default_value = "1h", value_parser = parse_period)]
    pub ops_quiet_period: Duration,
    /// Alert again about an open action when its distinct customers reach this factor
    /// times the count at its last alert.
    #[arg(long, env = "NOTIFY_OPS_ESCALATION_FACTOR", default_value_t = 2.0)]
    pub ops_escalation_factor: f64,
    /// trends' `/ops` page, which alerts link to (`#action-<id>`).
    #[arg(
        long,
        env = "NOTIFY_OPS_URL",
        default_value = "http://localhost:8082/ops"
    )]
    pub ops_url: reqwest::Url,
}

/// Shared with the other services' durations.
pub use closeloop_runtime::parse_period;

/// The unsubscribe key; like [`parse_secret_pair`], never quoted back in an error.
fn parse_link_key(text: &str) -> Result<Secret, String> {
    if text.trim().len() < 16 {
        return Err("the unsubscribe key must be at least 16 characters long".to_owned());
    }
    Ok(Secret::new(text.trim()))
}

/// The SMTP URL, which may hold a password: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(pub String);

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpUrl(<redacted>)")
    }
}

impl std::str::FromStr for SmtpUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the SMTP URL is empty".to_owned());
        }
        Ok(SmtpUrl(text.to_owned()))
    }
}

/// `source=value`, split at the first `=` (URLs and base64 secrets may contain more).
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected `source=value`, got {text:?}")),
    }
}

/// `source=secret`, like [`parse_pair`], the secret kept out of `Debug` output. Never
/// fails, because clap would quote the text in its error, and it may be a secret with
/// `source=` missing: such an entry has an empty source, which start-up refuses.
pub fn parse_secret_pair(text: &str) -> Result<(String, Secret), std::convert::Infallible> {
    Ok(match parse_pair(text) {
        Ok((source, secret)) => (source, Secret::new(secret)),
        Err(_) => (String::new(), Secret::default()),
    })
}

/// Where each source's notifications go and the secret they are signed with.
#[derive(Debug, Default)]
struct Routes {
    webhooks: HashMap<String, reqwest::Url>,
    secrets: HashMap<String, Secret>,
}

/// Per-source webhook routes, checked once so a bad URL or secret fails start-up.
fn routes(config: &Config) -> Result<Routes, Error> {
    let mut webhooks = HashMap::new();
    for (source, url) in &config.webhooks {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("webhook URL of source {source}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "webhook URL of source {source} must be http or https, not {}",
                parsed.scheme()
            )));
        }
        webhooks.insert(source.clone(), parsed);
    }
    let mut secrets = HashMap::new();
    for (source, secret) in &config.webhook_secrets {
        if source.is_empty() || secret.is_empty() {
            return Err(Error::Config(
                "a webhook secret is not of the form `source=secret`".into(),
            ));
        }
        signature::validate_secret(secret.expose())
            .map_err(|e| Error::Config(format!("webhook secret of source {source}: {e}")))?;
        secrets.insert(source.clone(), secret.clone());
    }
    for source in webhooks
        .keys()
        .filter(|source| !secrets.contains_key(*source))
    {
        // Allowed (a receiver on localhost may not care), but receivers then cannot
        // tell our requests from anyone else's: say so loudly.
        tracing::warn!(%source, "no webhook secret configured: requests to this source are unsigned");
    }
    Ok(Routes { webhooks, secrets })
}

/// The ops alert settings, checked once so a bad route fails start-up naming the route
/// and the field; `None` without a routes file.
fn ops_alerts(config: &Config) -> Result<Option<Arc<OpsAlerts>>, Error> {
    let Some(path) = &config.ops_alerts else {
        return Ok(None);
    };
    let factor = config.ops_escalation_factor;
    if !(factor.is_finite() && factor > 1.0) {
        return Err(Error::Config(
            "the ops escalation factor (NOTIFY_OPS_ESCALATION_FACTOR) must be above 1".into(),
        ));
    }
    let routes = ops_alert::load_routes(path).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Some(Arc::new(OpsAlerts {
        routes,
        quiet_ms: i64::try_from(config.ops_quiet_period.as_millis()).unwrap_or(i64::MAX),
        escalation_factor: factor,
        ops_url: config.ops_url.to_string(),
    })))
}

/// The key that signs unsubscribe links: the configured one, else the pseudonym key
/// (the MAC is domain-separated, so sharing it is safe), else the public development
/// key, which on PostgreSQL (the production form) is said loudly.
fn link_key(config: &Config, db: &closeloop_store::Database) -> Secret {
    if let Some(key) = config
        .unsubscribe_key
        .clone()
        .or_else(|| config.pseudonym.pseudonym_key.clone())
    {
        return key;
    }
    if db.backend() == closeloop_store::Backend::Postgres {
        tracing::warn!(
            "neither NOTIFY_UNSUBSCRIBE_KEY nor CLOSELOOP_PSEUDONYM_KEY is set: unsubscribe \
             links are signed with a public development key, so anyone could unsubscribe \
             a customer whose id they know; set a secret key"
        );
    }
    Secret::new(unsubscribe::DEVELOPMENT_KEY)
}

/// notify, built and bound, ready to run.
pub struct Service {
    config: Config,
    foundation: Foundation,
    metrics: NotifyMetrics,
    webhook: WebhookSender,
    email: Option<EmailSender>,
    templates: Arc<Templates>,
    ops: Option<Arc<OpsAlerts>>,
}

impl Service {
    /// Checks the configuration, loads the templates, connects and migrates the
    /// database, prepares topics, the publisher, metrics and the webhook client, and
    /// binds the HTTP listener.
    pub async fn build(config: Config) -> Result<Service, Error> {
        if config.max_attempts == 0 {
            return Err(Error::Config("max attempts must be at least 1".into()));
        }
        if config.lookback_days < 0 {
            return Err(Error::Config("lookback days must not be negative".into()));
        }
        if !(config.rate_per_second.is_finite() && config.rate_per_second > 0.0) {
            return Err(Error::Config("the rate per second must be above 0".into()));
        }
        if config.rate_burst == 0 {
            return Err(Error::Config("the rate burst must be at least 1".into()));
        }
        if config.unsubscribe_link_days == 0 {
            return Err(Error::Config(
                "unsubscribe links must work for at least 1 day".into(),
            ));
        }
        let Routes { webhooks, secrets } = routes(&config)?;
        let ops = ops_alerts(&config)?;
        let templates = Templates::load(config.templates_dir.as_deref())
            .map_err(|e| Error::setup("message templates", e))?;
        let email = match (&config.smtp_url, &config.email_from) {
            (Some(url), Some(from)) => Some(
                EmailSender::new(
                    &url.0,
                    from,
                    Duration::from_millis(config.smtp_timeout_ms.max(1)),
                )
                .map_err(|e| Error::setup("e-mail", e))?,
            ),
            (Some(_), None) => return Err(Error::setup("e-mail", EmailConfigError::NoFrom)),
            (None, _) => None,
        };

        let foundation = Foundation::start(closeloop_runtime::spec!("notify", config)).await?;
        let metrics = NotifyMetrics::register(&foundation.telemetry.registry)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.http_timeout_ms.max(1)))
            // A signed body goes only where it was configured to go.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("closeloop-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::setup("webhook HTTP client", e))?;

        let webhook = WebhookSender {
            http: http.clone(),
            urls: webhooks,
            secrets,
            timeout: Duration::from_millis(config.http_timeout_ms.max(1)),
        };
        tracing::info!(
            http_addr = %foundation.http_addr(),
            sources = webhook.urls.len(),
            email = email.is_some(),
            ops_alert_routes = ops.as_ref().map_or(0, |ops| ops.routes.len()),
            languages = ?templates.languages().collect::<Vec<_>>(),
            "notify built"
        );
        Ok(Service {
            config,
            foundation,
            metrics,
            webhook,
            email,
            templates: Arc::new(templates),
            ops,
        })
    }

    /// The address the HTTP server is bound to (the real port when configured with 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.foundation.http_addr()
    }

    /// Runs the three consumers, the delivery worker and the HTTP server until
    /// `shutdown` is cancelled (or one of them fails, which stops the rest), then waits
    /// for in-flight work to finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Service {
            config,
            foundation,
            metrics,
            webhook,
            email,
            templates,
            ops,
        } = self;
        let db = foundation.db.clone();
        let publisher = foundation.publisher.clone();
        let wake = Arc::new(Notify::new());
        let routing = Routing {
            webhook_sources: webhook.urls.keys().cloned().collect(),
            email: email.is_some(),
            prefer: config.prefer_channel,
        };
        let cap = (!config.frequency_cap.is_zero()).then(|| Cap {
            period_ms: i64::try_from(config.frequency_cap.as_millis()).unwrap_or(i64::MAX),
            when_capped: config.when_capped,
        });
        let public_url = match &config.public_url {
            Some(url) => url.to_string(),
            None => format!("http://{}", foundation.http_addr()),
        };
        let links = Arc::new(unsubscribe::Links::new(
            link_key(&config, &db),
            &public_url,
            chrono::Duration::days(i64::from(config.unsubscribe_link_days)),
        ));
        let ctx = Context {
            db: db.clone(),
            metrics: metrics.clone(),
            publisher: publisher.clone(),
            templates: templates.clone(),
            routing: Arc::new(routing),
            wake: wake.clone(),
            lookback: chrono::Duration::days(config.lookback_days),
            pseudonyms: config.pseudonym.pseudonyms("notify", &db),
            cap,
            links: links.clone(),
            ops: ops.clone(),
        };
        let ops_sender = OpsSender::new(
            webhook.http.clone(),
            ops.as_ref().map_or(&[][..], |ops| &ops.routes),
            webhook.timeout,
        );
        let worker = Worker {
            db: db.clone(),
            publisher,
            metrics,
            webhook,
            email,
            limiter: RateLimiter::new(config.rate_per_second, config.rate_burst),
            max_attempts: config.max_attempts,
            retry_base: Duration::from_millis(config.retry_base_ms.max(1)),
            lease_margin: Duration::from_millis(config.lease_margin_ms),
            wake,
            cap,
            ops: ops_sender,
            templates,
        };
        let routes =
            api::routes(db, config.ops_token, cap).merge(unsubscribe::routes(ctx.clone(), links));
        foundation
            .run(shutdown, routes, |tasks| {
                tasks.consumer(FEEDBACK_GROUP, FeedbackHandler { ctx: ctx.clone() });
                tasks.consumer(ACTIONS_GROUP, ActionHandler::new(ctx.clone()));
                tasks.consumer(PREFERENCES_GROUP, PreferencesHandler { ctx: ctx.clone() });
                tasks.consumer(ERASURE_GROUP, ErasureHandler { ctx });
                let stop = tasks.stop_token();
                tasks.spawn("delivery worker", async move {
                    worker.run(stop).await;
                    Ok::<(), std::convert::Infallible>(())
                });
            })
            .await
    }
}

/// Fresh, migrated notify databases for a unit test: SQLite, and PostgreSQL when
/// `DATABASE_URL` names one (each statement must mean the same on both).
#[cfg(test)]
pub(crate) async fn test_databases(test: &str) -> Vec<closeloop_store::Database> {
    let mut configs = vec![closeloop_store::testing::sqlite_config()];
    configs.extend(closeloop_store::testing::postgres_config(test));
    let mut databases = Vec::new();
    for config in configs {
        let db = closeloop_store::Database::connect(&config)
            .await
            .expect("database");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrations");
        databases.push(db);
    }
    databases
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_pair("shopdesk=https://x.test/hook?a=b"),
            Ok(("shopdesk".into(), "https://x.test/hook?a=b".into()))
        );
        assert_eq!(
            parse_pair("shopdesk=whsec_abc=="),
            Ok(("shopdesk".into(), "whsec_abc==".into()))
        );
        assert!(parse_pair("no-equals").is_err());
        assert!(parse_pair("=value").is_err());
        assert!(parse_pair("key=").is_err());
    }

    #[test]
    fn config_parses_repeatable_webhooks() {
        let config = Config::parse_from([
            "notify",
            "--webhook",
            "a=http://127.0.0.1:1/a,b=http://127.0.0.1:1/b",
            "--webhook-secret",
            "a=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ]);
        assert_eq!(config.webhooks.len(), 2);
        assert_eq!(config.max_attempts, 8);
        let routes = routes(&config).unwrap();
        assert_eq!(routes.webhooks["b"].path(), "/b");
        assert!(routes.secrets.contains_key("a"));
    }

    #[test]
    fn webhook_secrets_never_reach_debug_output() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let config = Config::parse_from(["notify", "--webhook-secret", &format!("a={secret}")]);
        assert_eq!(config.webhook_secrets[0].1.expose(), secret);
        let printed = format!("{config:?} {:?}", routes(&config).unwrap());
        assert!(
            !printed.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{printed}"
        );
        assert!(printed.contains("[redacted]"), "{printed}");
        // Nor the error about a secret with its `source=` missing.
        let config = Config::parse_from(["notify", "--webhook-secret", secret]);
        let error = routes(&config).unwrap_err().to_string();
        assert!(error.contains("source=secret"), "{error}");
        assert!(
            !error.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{error}"
        );
    }

    #[test]
    fn the_ops_token_is_parsed_and_never_printed() {
        let config = Config::parse_from(["notify", "--ops-token", "tok-s3cret-value"]);
        assert_eq!(
            config.ops_token.as_ref().map(|t| t.expose()),
            Some("tok-s3cret-value")
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(Config::try_parse_from(["notify", "--ops-token", " "]).is_err());
        assert!(Config::parse_from(["notify"]).ops_token.is_none());
    }

    #[test]
    fn bad_routes_fail_start_up() {
        let mut config = Config::parse_from(["notify"]);
        config.webhooks = vec![("a".into(), "ftp://x/y".into())];
        assert!(matches!(routes(&config), Err(Error::Config(_))));
        config.webhooks = vec![];
        config.webhook_secrets = vec![("a".into(), Secret::new("whsec_!!"))];
        assert!(matches!(routes(&config), Err(Error::Config(_))));
    }

    #[test]
    fn e_mail_settings_parse_and_the_smtp_url_is_never_printed() {
        let config = Config::parse_from([
            "notify",
            "--smtp-url",
            "smtps://user:hunter2@mail.example.com",
            "--email-from",
            "Care <care@example.com>",
            "--prefer-channel",
            "webhook",
            "--templates-dir",
            "/etc/closeloop/templates",
        ]);
        assert_eq!(config.prefer_channel, Prefer::Webhook);
        assert_eq!(
            config.templates_dir.as_deref(),
            Some(std::path::Path::new("/etc/closeloop/templates"))
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(Config::try_parse_from(["notify", "--prefer-channel", "pigeon"]).is_err());
        assert!(Config::try_parse_from(["notify", "--smtp-url", " "]).is_err());
    }

    #[tokio::test]
    async fn bad_settings_fail_start_up_with_a_clear_error() {
        let build = |configure: fn(&mut Config)| async move {
            let mut config = Config::parse_from(["notify"]);
            config.http_addr = "127.0.0.1:0".parse().unwrap();
            configure(&mut config);
            match Service::build(config).await {
                Ok(_) => panic!("should not build"),
                Err(error) => error.to_string(),
            }
        };
        let error = build(|c| c.smtp_url = Some(SmtpUrl("smtp://127.0.0.1:1".into()))).await;
        assert!(error.contains("NOTIFY_EMAIL_FROM"), "{error}");
        let error = build(|c| {
            c.smtp_url = Some(SmtpUrl("mail://x".into()));
            c.email_from = Some("a@example.com".into());
        })
        .await;
        assert!(error.contains("smtp://"), "{error}");
        let error = build(|c| c.templates_dir = Some("/nonexistent/templates".into())).await;
        assert!(error.contains("templates directory"), "{error}");
        let error = build(|c| c.rate_per_second = 0.0).await;
        assert!(error.contains("rate"), "{error}");
    }
}

//! `closeloop demo`: plays a few hundred realistic English and German feedback events
//! through the loop and narrates it closing — feedback accepted, a surging theme raised
//! as an action, the action resolved, customers told "you said, we did" — and shows a
//! few of those messages as the customers read them: e-mails as a local SMTP relay
//! received them, webhooks as the source system received them. Last, feedback given in
//! the minutes after the resolution shows whether the fix worked: the effect verdict.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use closeloop_notify::SmtpUrl;
use closeloop_sinks::{ReceivedMail, SmtpSink, WebhookSink};
use closeloop_store::DatabaseArgs;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::demo_corpus;
use crate::stack::{ServiceConfigs, Stack};
use crate::up::{dev_key, local_defaults};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many feedback events to play.
    #[arg(long, default_value_t = 300)]
    pub events: usize,
    /// Seed of the generated feedback.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The demo's own database (recreated on every run).
    #[arg(long, default_value = "sqlite://data/demo.db")]
    pub database_url: String,
    /// Give up if the loop has not closed after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Which story to play.
    #[arg(long, value_enum, default_value_t = Scenario::Loop)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A theme surges, ops resolve it, customers hear "we did", the effect is measured.
    Loop,
    /// A topic no theme covers emerges, becomes a theme (previewed, applied, the hour
    /// reclassified) and, once it surges, an action.
    NewTopic,
}

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    remove_sqlite_files(&args.database_url);
    let mut configs =
        ServiceConfigs::from_env(&DatabaseArgs::new(&args.database_url)).with_ephemeral_ports();
    // Thresholds for a demo-sized stream: the surging theme crosses them within
    // seconds, the background noise of other themes does not.
    configs.trends.min_negative_mentions = 20;
    configs.trends.min_distinct_customers = 10;
    // The effect of the resolution, on a demo's time scale: four minutes each side (the
    // feedback after it may be dated at most ingest's allowed clock skew ahead).
    configs.trends.effect_window = EFFECT_WINDOW;
    configs.trends.effect_refresh = Duration::from_secs(1);
    // Emerging topics on a demo's time scale: listed within a second, against the day.
    configs.trends.emerging_refresh_seconds = 1;
    configs.trends.emerging_window_days = 1;
    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink_listener.local_addr()?;
    let secrets = local_defaults(&mut configs, sink_addr);
    let sink = WebhookSink::new(secrets, false);
    // Customers who gave an address are e-mailed, through a local relay that keeps what
    // it receives (unless a real SMTP relay is configured).
    let smtp = SmtpSink::new();
    let smtp_listener = TcpListener::bind("127.0.0.1:0").await?;
    if configs.notify.smtp_url.is_none() {
        configs.notify.smtp_url = Some(SmtpUrl(format!("smtp://{}", smtp_listener.local_addr()?)));
        configs.notify.email_from = Some("Customer Care <care@closeloop.demo>".to_owned());
    }

    println!("▶ closeloop demo: starting the embedded broker and the four services …");
    configs.share_ops_token();
    let ops = ops_client(configs.trends.ops_token.as_ref())?;
    let stack = Stack::start_embedded(configs, 1, 3).await?;
    sink.spawn(sink_listener, stack.shutdown_token())?;
    smtp.spawn(smtp_listener, stack.shutdown_token())?;
    let story = async {
        match args.scenario {
            Scenario::Loop => play(&args, &stack, &ops, &sink, &smtp, started).await,
            Scenario::NewTopic => crate::demo_topic::play(&args, &stack, &ops, started).await,
        }
    };
    let demo = tokio::select! {
        result = story => result,
        _ = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    stack.stop().await;
    demo?;
    match args.scenario {
        Scenario::Loop => println!(
            "\n✔ loop closed in {:.1} s (everything included: start-up, {} events, detection, resolution, notification, effect)",
            started.elapsed().as_secs_f64(),
            args.events
        ),
        Scenario::NewTopic => println!(
            "\n✔ a new theme from the feedback itself in {:.1} s (start-up, emerging topic, preview, apply, reclassification, action)",
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(())
}

/// The client for trends' and notify's APIs: with the ops token when one is configured.
fn ops_client(token: Option<&closeloop_http::OpsToken>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

async fn play(
    args: &DemoArgs,
    stack: &Stack,
    ops: &reqwest::Client,
    sink: &WebhookSink,
    smtp: &SmtpSink,
    started: Instant,
) -> anyhow::Result<()> {
    let deadline = started + Duration::from_secs(args.timeout_secs);
    println!(
        "  broker {}  ·  ingest http://{}  ·  trends http://{}  ·  notify http://{}",
        stack.bootstrap_servers, stack.ingest, stack.trends, stack.notify
    );

    // 1. Feedback arrives from two source systems, in English and German.
    let feedback = demo_corpus::generate(args.seed, args.events, chrono::Utc::now())?;
    let german = feedback
        .iter()
        .filter(|f| {
            f.body["customer"]["locale"]
                .as_str()
                .is_some_and(|l| l.starts_with("de"))
        })
        .count();
    println!(
        "\n① {} feedback events ({} German, {} English) from support tickets, surveys, reviews, app stores …",
        feedback.len(),
        german,
        feedback.len() - german
    );
    for sample in feedback.iter().take(3) {
        println!("   “{}”", sample.body["text"].as_str().unwrap_or_default());
    }
    let posted = Instant::now();
    let (accepted, failed) = post_feedback(stack, &feedback, "demo").await?;
    println!(
        "   ingest answered 202 for {accepted} ({failed} failed) in {:.2} s — each only after the broker acknowledged it",
        posted.elapsed().as_secs_f64()
    );

    // 2. categorise + trends: a theme surges and becomes an action.
    println!("\n② categorising (language, sentiment, themes) and watching themes for trends …");
    let action = loop {
        let actions: Value = ops
            .get(format!("http://{}/v1/actions?status=open", stack.trends))
            .send()
            .await?
            .json()
            .await?;
        let open = actions.as_array().cloned().unwrap_or_default();
        if let Some(action) = open
            .iter()
            .find(|a| a["theme"] == "delivery_time")
            .or_else(|| open.first())
        {
            break action.clone();
        }
        anyhow::ensure!(Instant::now() < deadline, "no action was raised in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let evidence = &action["evidence"];
    println!(
        "   ⚑ action raised after {:.1} s: theme “{}” — {} negative mentions from {} customers ({})",
        started.elapsed().as_secs_f64(),
        action["theme_name"]["en"].as_str().or(action["theme"].as_str()).unwrap_or("?"),
        evidence["negative_mentions"],
        evidence["distinct_customers"],
        evidence["rule"].as_str().unwrap_or_default()
    );
    for excerpt in evidence["excerpts"]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
    {
        println!(
            "     evidence: “{}”",
            excerpt["excerpt"].as_str().unwrap_or_default()
        );
    }

    if let Some(theme) = action["theme"].as_str() {
        print_impact(ops, stack.trends, theme).await?;
    }

    // The ops team hears of it in chat: the alert notify would post to Slack (with an
    // `NOTIFY_OPS_ALERTS` route), rendered by the same code, as text.
    let mut raised = action.clone();
    raised["kind"] = json!("raised");
    if let Ok(event) = serde_json::from_value::<closeloop_events::ActionEvent>(raised) {
        println!("\n   💬 the ops team's Slack channel:");
        let ops_url = format!("http://{}/ops", stack.trends);
        for line in closeloop_notify::ops_alert::slack_preview(&event, "en", &ops_url).lines() {
            for line in wrap(line, 88) {
                println!("{}", format!("     │ {line}").trim_end());
            }
        }
    }

    // 3. The ops team fixes it and resolves the action with a "we did" message.
    let action_id = action["action_id"].as_str().unwrap_or_default().to_owned();
    let resolution = json!({
        "message": {
            "en": "We added a second delivery partner in your region and now ship within 48 hours.",
            "de": "Wir haben einen zweiten Lieferdienst in Ihrer Region beauftragt und versenden jetzt innerhalb von 48 Stunden."
        },
        "resolved_by": "ops@closeloop.demo"
    });
    let response = ops
        .post(format!(
            "http://{}/v1/actions/{action_id}/resolve",
            stack.trends
        ))
        .json(&resolution)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "resolving the action failed: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let resolved: Value = response.json().await?;
    let resolved_at: chrono::DateTime<chrono::Utc> = resolved["resolution"]["resolved_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the resolved action has no resolution time"))?;
    println!(
        "\n③ ops resolved it: “{}”",
        resolution["message"]["en"].as_str().unwrap_or_default()
    );
    println!(
        "                    “{}”",
        resolution["message"]["de"].as_str().unwrap_or_default()
    );

    // 4. notify tells every consenting customer who complained, in their language.
    let view = wait_for_deliveries(ops, stack.notify, &action_id, deadline).await?;
    let counts = &view["counts"];
    let deliveries = view["deliveries"].as_array().cloned().unwrap_or_default();
    let by_channel = |channel: &str| {
        deliveries
            .iter()
            .filter(|d| d["channel"] == channel && d["status"] == "delivered")
            .count()
    };
    let mails = smtp.received();
    let received = sink.received();
    println!(
        "\n④ “you said, we did”: {} customers told — {} by e-mail, {} through their source's webhook \
         ({} dead-lettered); {} not told because they did not consent, {} with no way to reach them",
        counts["delivered"],
        by_channel("email"),
        by_channel("webhook"),
        counts["dead"],
        counts["skipped_no_consent"],
        counts["skipped_no_route"],
    );
    println!(
        "   the relay received {} e-mails; the source systems {} webhooks with valid signatures ({} rejected)",
        mails.len(),
        received.len(),
        sink.rejected()
    );
    let language_of = |customer: &str| {
        deliveries
            .iter()
            .find(|d| d["customer_id"] == customer)
            .and_then(|d| d["language"].as_str())
            .unwrap_or("en")
            .to_owned()
    };
    for language in ["de", "en"] {
        if let Some((customer, mail)) = mails
            .iter()
            .filter_map(|mail| Some((customer_of(&deliveries, mail)?, mail)))
            .find(|(customer, _)| language_of(customer) == language)
        {
            print_mail(&customer, language, mail);
        }
        if let Some(message) = received.iter().find(|m| m.payload["language"] == language) {
            println!(
                "\n   ↪ webhook to {} for customer {}{} ({language}):",
                message.source,
                message.payload["customer"]["id"].as_str().unwrap_or("?"),
                message.payload["customer"]["reference"]
                    .as_str()
                    .map(|r| format!(", their reference {r}"))
                    .unwrap_or_default(),
            );
            for line in wrap(message.payload["text"].as_str().unwrap_or_default(), 88) {
                println!("     │ {line}");
            }
        }
    }

    // 5. Did it work? Feedback given after the resolution, by its event time.
    show_effect(args, stack, ops, &action_id, resolved_at).await
}

/// Posts `feedback` to ingest, 16 at a time, each with an idempotency key made of
/// `key_prefix` and its index. Returns how many were accepted and how many not.
pub(crate) async fn post_feedback(
    stack: &Stack,
    feedback: &[demo_corpus::DemoFeedback],
    key_prefix: &str,
) -> anyhow::Result<(usize, usize)> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/feedback", stack.ingest);
    let mut responses = futures::stream::iter(feedback.iter().enumerate())
        .map(|(i, item)| {
            let request = client
                .post(&url)
                .bearer_auth(dev_key(item.source))
                .header("Idempotency-Key", format!("{key_prefix}-{i}"))
                .json(&item.body);
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(16);
    let (mut accepted, mut failed) = (0, 0);
    while let Some(status) = responses.next().await {
        match status {
            Ok(202) => accepted += 1,
            other => {
                failed += 1;
                tracing::warn!(?other, "feedback not accepted");
            }
        }
    }
    Ok((accepted, failed))
}

/// The windows compared before and after the resolution in the demo.
const EFFECT_WINDOW: Duration = Duration::from_secs(4 * 60);

/// Posts the feedback of the minutes after the resolution — the delivery complaints
/// mostly gone, customers praising the faster delivery, the rest as before — dated after
/// it, then feedback just past the window so the event-time clock passes it, and shows
/// the verdict trends measured.
async fn show_effect(
    args: &DemoArgs,
    stack: &Stack,
    ops: &reqwest::Client,
    action_id: &str,
    resolved_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    // Its own minute: the loop itself had `--timeout-secs`.
    let deadline = Instant::now() + Duration::from_secs(60);
    let window = chrono::Duration::from_std(EFFECT_WINDOW)?;
    let later = demo_corpus::generate(args.seed.wrapping_add(1), args.events, resolved_at)?;
    let mut surge = 0usize;
    let mut after: Vec<_> = later
        .into_iter()
        .filter(|f| {
            let delivery = f.expected_theme == Some("delivery_time");
            if delivery && f.expected_negative {
                // One in twenty-five of the complaints is still there.
                surge += 1;
                surge.is_multiple_of(25)
            } else {
                delivery || f.expected_theme.is_some()
            }
        })
        .collect();
    anyhow::ensure!(after.len() > 1, "no feedback for after the resolution");
    // Spread over the window after the resolution; the last few just past it move the
    // event-time clock beyond it (a few, as not every text yields a theme mention).
    let n = after.len() as i32;
    let past = n.min(10);
    for (i, item) in after.iter_mut().enumerate() {
        let i = i as i32;
        let at = if i >= n - past {
            resolved_at + window + chrono::Duration::seconds(10 + 3 * i64::from(i - (n - past)))
        } else {
            resolved_at
                + chrono::Duration::seconds(5)
                + (window - chrono::Duration::seconds(10)) * i / (n - past).max(1)
        };
        item.body["occurred_at"] =
            Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    println!(
        "
⑤ did it work? {} more feedback events, dated in the {} minutes after the resolution (event time) …",
        after.len(),
        EFFECT_WINDOW.as_secs() / 60
    );
    post_feedback(stack, &after, "demo-after").await?;
    let effect = loop {
        let action: Value = ops
            .get(format!("http://{}/v1/actions/{action_id}", stack.trends))
            .send()
            .await?
            .json()
            .await?;
        let effect = &action["effect"];
        if !effect.is_null() && effect["verdict"] != "too_early" {
            break effect.clone();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the effect was not measured in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let percent = |v: &Value| v.as_f64().unwrap_or_default() * 100.0;
    println!(
        "   delivery complaints {} → {} ({:.0} → {:.0} a day{}), negative share {:.0} % → {:.0} %, complaining customers {} → {}",
        effect["before"]["negative_mentions"],
        effect["after"]["negative_mentions"],
        effect["negative_per_day_before"].as_f64().unwrap_or_default(),
        effect["negative_per_day_after"].as_f64().unwrap_or_default(),
        effect["change"]
            .as_f64()
            .map(|c| format!(", {:+.0} %", c * 100.0))
            .unwrap_or_default(),
        percent(&effect["negative_share_before"]),
        percent(&effect["negative_share_after"]),
        effect["before"]["distinct_customers"],
        effect["after"]["distinct_customers"],
    );
    println!(
        "   ✓ effect: {}{}  (p = {:.1e} fewer, {:.1e} lower share; see /ops)",
        effect["verdict"].as_str().unwrap_or("?"),
        if effect["reopen_suggested"] == true {
            " — flagged for a reopen decision"
        } else {
            ""
        },
        effect["p_rate_lower"].as_f64().unwrap_or(1.0),
        effect["p_share_lower"].as_f64().unwrap_or(1.0),
    );
    Ok(())
}

/// What the theme costs NPS and rating over the last 30 days (`GET /v1/themes/impact`).
async fn print_impact(
    ops: &reqwest::Client,
    trends: std::net::SocketAddr,
    theme: &str,
) -> anyhow::Result<()> {
    let ranking: Value = ops
        .get(format!("http://{trends}/v1/themes/impact"))
        .send()
        .await?
        .json()
        .await?;
    let Some(impact) = ranking["themes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["theme"] == theme)
    else {
        return Ok(());
    };
    let figure = |value: &Value, unit: &str| match value["value"].as_f64() {
        Some(v) => format!(
            "{v:+.2} {unit} (95 % CI {:+.2} to {:+.2})",
            value["ci_low"].as_f64().unwrap_or(f64::NAN),
            value["ci_high"].as_f64().unwrap_or(f64::NAN)
        ),
        None => format!("not enough data for {unit}"),
    };
    println!(
        "     what it costs: without its {} negative scored mentions ({:.0} % of {} scored feedback), \
         the period would gain NPS {} and average rating {}",
        impact["negative_mentions"],
        impact["negative_share"].as_f64().unwrap_or(0.0) * 100.0,
        ranking["feedback"],
        figure(&impact["nps_impact"], "points"),
        figure(&impact["rating_impact"], "stars"),
    );
    Ok(())
}

/// The customer an e-mail went to, found through its Message-ID (the delivery id).
fn customer_of(deliveries: &[Value], mail: &ReceivedMail) -> Option<String> {
    let message_id = mail.header("Message-ID")?;
    let delivery_id = message_id.trim_start_matches('<').split('@').next()?;
    deliveries
        .iter()
        .find(|d| d["delivery_id"] == delivery_id)
        .and_then(|d| d["customer_id"].as_str())
        .map(str::to_owned)
}

fn print_mail(customer: &str, language: &str, mail: &ReceivedMail) {
    println!(
        "\n   ✉ e-mail to customer {customer} <{}> ({language}):",
        mail.rcpt_to.join(", ")
    );
    println!("     │ From: {}", mail.header("From").unwrap_or_default());
    println!(
        "     │ Subject: {}",
        mail.header("Subject").unwrap_or_default()
    );
    // RFC 8058: mail clients show an "Unsubscribe" button that POSTs to this link.
    if let Some(link) = mail.header("List-Unsubscribe") {
        println!("     │ List-Unsubscribe: {link}");
    }
    println!("     │");
    for paragraph in mail.text().unwrap_or_default().lines() {
        for line in wrap(paragraph, 88) {
            println!("{}", format!("     │ {line}").trim_end());
        }
    }
}

/// Word-wraps `text` to lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let current = lines.last_mut().map(|l| l.chars().count()).unwrap_or(0);
        if current > 0 && current + 1 + word.chars().count() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// Polls notify until the action's deliveries exist and none is pending; returns the
/// action's notifications (`counts`, `deliveries`, `skipped`).
async fn wait_for_deliveries(
    client: &reqwest::Client,
    notify: SocketAddr,
    action_id: &str,
    deadline: Instant,
) -> anyhow::Result<Value> {
    loop {
        let view: Value = client
            .get(format!(
                "http://{notify}/v1/notifications?action={action_id}"
            ))
            .send()
            .await?
            .json()
            .await?;
        let deliveries = view["deliveries"].as_array().map_or(0, Vec::len);
        if deliveries > 0 && view["counts"]["pending"] == 0 {
            return Ok(view);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "notifications were not delivered in time ({deliveries} so far)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes a SQLite database, its WAL files and the broker journal beside it, so a run
/// starts from an empty store (the demo and the lab's bench recreate theirs); other URLs
/// are left alone.
pub fn remove_sqlite_files(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        // The broker journal of `up` on this file belongs to it: a fresh database with
        // an old journal would be refilled with the old run's backlog.
        let _ = std::fs::remove_dir_all(crate::up::default_journal_dir(url));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("averylongword x", 4), ["averylongword", "x"]);
        assert_eq!(wrap("", 10), [""]);
    }
}

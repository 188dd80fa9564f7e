//! `closeloop demo`: plays a few hundred realistic English and German feedback events
//! through the loop and narrates it closing — feedback accepted, a surging theme raised
//! as an action, the action resolved, customers told "you said, we did".

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use closeloop_store::DatabaseArgs;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::demo_corpus;
use crate::sink::WebhookSink;
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
    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink_listener.local_addr()?;
    let secrets = local_defaults(&mut configs, sink_addr);
    let sink = WebhookSink::new(secrets, false);

    println!("▶ closeloop demo: starting the embedded broker and the four services …");
    let stack = Stack::start_embedded(configs, 1, 3).await?;
    sink.spawn(sink_listener, stack.shutdown_token());
    let demo = tokio::select! {
        result = play(&args, &stack, &sink, started) => result,
        _ = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    stack.stop().await;
    demo?;
    println!(
        "\n✔ loop closed in {:.1} s (everything included: start-up, {} events, detection, resolution, notification)",
        started.elapsed().as_secs_f64(),
        args.events
    );
    Ok(())
}

async fn play(
    args: &DemoArgs,
    stack: &Stack,
    sink: &WebhookSink,
    started: Instant,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    println!(
        "  broker {}  ·  ingest http://{}  ·  trends http://{}  ·  notify http://{}",
        stack.bootstrap_servers, stack.ingest, stack.trends, stack.notify
    );

    // 1. Feedback arrives from two source systems, in English and German.
    let feedback = demo_corpus::generate(args.seed, args.events, chrono::Utc::now());
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
    let mut accepted = 0usize;
    let mut failed = 0usize;
    let mut responses = futures::stream::iter(feedback.iter().enumerate())
        .map(|(i, item)| {
            let client = client.clone();
            let url = format!("http://{}/v1/feedback", stack.ingest);
            async move {
                client
                    .post(url)
                    .bearer_auth(dev_key(item.source))
                    .header("Idempotency-Key", format!("demo-{i}"))
                    .json(&item.body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(16);
    while let Some(status) = responses.next().await {
        match status {
            Ok(202) => accepted += 1,
            other => {
                failed += 1;
                tracing::warn!(?other, "feedback not accepted");
            }
        }
    }
    println!(
        "   ingest answered 202 for {accepted} ({failed} failed) in {:.2} s — each only after the broker acknowledged it",
        posted.elapsed().as_secs_f64()
    );

    // 2. categorise + trends: a theme surges and becomes an action.
    println!("\n② categorising (language, sentiment, themes) and watching themes for trends …");
    let action = loop {
        let actions: Value = client
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

    // 3. The ops team fixes it and resolves the action with a "we did" message.
    let action_id = action["action_id"].as_str().unwrap_or_default().to_owned();
    let resolution = json!({
        "message": {
            "en": "We added a second delivery partner in your region and now ship within 48 hours.",
            "de": "Wir haben einen zweiten Lieferdienst in Ihrer Region beauftragt und versenden jetzt innerhalb von 48 Stunden."
        },
        "resolved_by": "ops@closeloop.demo"
    });
    let response = client
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
    println!(
        "\n③ ops resolved it: “{}”",
        resolution["message"]["en"].as_str().unwrap_or_default()
    );
    println!(
        "                    “{}”",
        resolution["message"]["de"].as_str().unwrap_or_default()
    );

    // 4. notify tells every consenting customer who complained, in their language.
    let deliveries = wait_for_deliveries(&client, stack.notify, &action_id, deadline).await?;
    let received = sink.received();
    let delivered = deliveries
        .iter()
        .filter(|d| d["status"] == "delivered")
        .count();
    println!(
        "\n④ “you said, we did”: {delivered} customers told ({} dead-lettered), {} webhook messages received with valid signatures, {} rejected",
        deliveries.len() - delivered,
        received.len(),
        sink.rejected()
    );
    for language in ["en", "de"] {
        for message in received
            .iter()
            .filter(|m| m.payload["language"] == language)
            .take(2)
        {
            println!(
                "   ✉ to {} via {} ({}):\n     {}",
                message.payload["customer"]["id"].as_str().unwrap_or("?"),
                message.source,
                language,
                message.payload["text"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Polls notify until the action's deliveries exist and none is pending.
async fn wait_for_deliveries(
    client: &reqwest::Client,
    notify: SocketAddr,
    action_id: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<Value>> {
    loop {
        let deliveries: Value = client
            .get(format!(
                "http://{notify}/v1/notifications?action={action_id}"
            ))
            .send()
            .await?
            .json()
            .await?;
        let deliveries = deliveries.as_array().cloned().unwrap_or_default();
        if !deliveries.is_empty() && deliveries.iter().all(|d| d["status"] != "pending") {
            return Ok(deliveries);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "notifications were not delivered in time ({} so far)",
            deliveries.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn remove_sqlite_files(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
}

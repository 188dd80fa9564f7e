//! `closeloop up`: the whole loop in one process on embedded defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use closeloop_bus::{ensure_topics, recreate_topics, TopicSpec};
use closeloop_ingest::SourceKey;
use closeloop_store::DatabaseArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::stack::{NotReady, ServiceConfigs, Stack};
use closeloop_sinks::WebhookSink;

/// The source systems `up` and `demo` accept feedback from when none are configured.
pub const DEV_SOURCES: &[&str] = &["shopdesk", "surveyhub"];

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Run on this Kafka cluster (`host:port,…`) instead of the embedded one, e.g. the
    /// one `deploy/kafka/cluster.sh start` prints; missing topics are created.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Copies of each topic created on `--brokers` (3 gets `min.insync.replicas=2`).
    #[arg(long, default_value_t = 3)]
    pub replication: i32,
    /// Delete and recreate the topics on `--brokers` first: start from empty topics
    /// (benchmarks; never on a cluster whose records you need).
    #[arg(long, requires = "brokers")]
    pub fresh_topics: bool,
    /// Mock brokers in the embedded Kafka cluster.
    #[arg(long, default_value_t = 1)]
    pub embedded_brokers: i32,
    /// Partitions per topic in the embedded cluster.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Where the embedded broker keeps its journal, so that what was accepted survives a
    /// crash of `up` [default: next to the SQLite file, `<name>-broker/`].
    #[arg(long, env = "CLOSELOOP_BROKER_JOURNAL")]
    pub broker_journal: Option<PathBuf>,
    /// Keep the embedded broker in memory only: a restart starts from empty topics and
    /// loses what was accepted but not yet processed.
    #[arg(
        long,
        env = "CLOSELOOP_IN_MEMORY_BROKER",
        conflicts_with = "broker_journal"
    )]
    pub in_memory_broker: bool,
    /// Where the built-in webhook sink listens (it plays the source systems' webhook
    /// receivers and prints what customers would read).
    #[arg(long, env = "CLOSELOOP_SINK_ADDR", default_value = "127.0.0.1:8090")]
    pub sink_addr: SocketAddr,
}

/// A development API key per source, and the webhook secret notify signs with.
pub fn dev_key(source: &str) -> String {
    format!("dev-key-{source}")
}

/// The name and key of the development admin key, which erases across sources (and may
/// set a customer's preferences).
pub const DEV_ADMIN: &str = "privacy";

pub fn dev_admin_key() -> String {
    format!("dev-admin-key-{DEV_ADMIN}")
}

pub fn dev_webhook_secret(source: &str) -> String {
    let raw = format!("closeloop-dev-webhook-secret-{source}");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Fills in what the environment left unset so the loop works out of the box: dev API
/// keys for the dev sources, and their webhooks pointing at the local sink.
pub fn local_defaults(configs: &mut ServiceConfigs, sink: SocketAddr) -> HashMap<String, String> {
    if configs.ingest.api_keys.is_empty() {
        configs.ingest.api_keys = DEV_SOURCES
            .iter()
            .map(|source| SourceKey {
                source: source.to_string(),
                key: dev_key(source).into(),
            })
            .collect();
        // Only beside the dev source keys: configured keys never get a public admin key.
        if configs.ingest.admin_keys.is_empty() {
            configs.ingest.admin_keys = vec![SourceKey {
                source: DEV_ADMIN.to_owned(),
                key: dev_admin_key().into(),
            }];
        }
    }
    if configs.notify.webhooks.is_empty() {
        configs.notify.webhooks = DEV_SOURCES
            .iter()
            .map(|source| {
                (
                    source.to_string(),
                    format!("http://{sink}/webhooks/{source}"),
                )
            })
            .collect();
        configs.notify.webhook_secrets = DEV_SOURCES
            .iter()
            .map(|source| (source.to_string(), dev_webhook_secret(source).into()))
            .collect();
    }
    configs
        .notify
        .webhook_secrets
        .iter()
        .map(|(source, secret)| (source.clone(), secret.expose().to_owned()))
        .collect()
}

/// `data/closeloop.db` → `data/closeloop-broker`: the journal beside the database it
/// belongs with (a fresh database with an old journal would replay into an empty loop).
pub fn default_journal_dir(database_url: &str) -> PathBuf {
    let sqlite_file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .filter(|path| !path.is_empty() && *path != ":memory:");
    match sqlite_file.map(Path::new) {
        Some(path) => {
            let stem = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| "closeloop".into());
            path.with_file_name(format!("{stem}-broker"))
        }
        None => PathBuf::from("data/closeloop-broker"),
    }
}

/// How long `up` waits for its consumers to join their groups before it says it is up
/// anyway (on a real cluster a busy group coordinator can take a while).
const READY_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut configs = ServiceConfigs::from_env(&args.database);
    let sink_listener = TcpListener::bind(args.sink_addr).await?;
    let secrets = local_defaults(&mut configs, args.sink_addr);
    let sink = WebhookSink::new(secrets, true);
    let keys = configs.ingest.api_keys.clone();
    let admin_keys = configs.ingest.admin_keys.clone();
    let mut stack = match &args.brokers {
        Some(brokers) => {
            let topics = TopicSpec::all(args.partitions);
            if args.fresh_topics {
                recreate_topics(brokers, &topics, args.replication).await?;
            } else {
                ensure_topics(brokers, &topics, args.replication).await?;
            }
            configs.set_brokers(brokers);
            Stack::start(configs).await?
        }
        None if args.in_memory_broker => {
            Stack::start_embedded(configs, args.embedded_brokers, args.partitions).await?
        }
        None => {
            let dir = args
                .broker_journal
                .clone()
                .unwrap_or_else(|| default_journal_dir(&args.database.database_url));
            let (stack, restored) =
                Stack::start_durable(configs, args.embedded_brokers, args.partitions, &dir).await?;
            println!(
                "Broker journal {}: {} records restored, {} already processed left behind",
                dir.display(),
                restored.records,
                restored.dropped
            );
            stack
        }
    };
    sink.spawn(sink_listener, stack.shutdown_token())?;
    // "Up" means consuming: what is posted after the banner is handled at once.
    match stack.wait_ready(READY_LIMIT).await {
        Ok(()) => {}
        Err(NotReady::Waiting(waiting)) => tracing::warn!(
            services = ?waiting,
            "not every consumer has joined its group yet; what is accepted waits for them"
        ),
        Err(NotReady::Stopped(service, error)) => return stopped(stack, service, error).await,
    }

    println!("closeloop is up\n");
    println!(
        "  Kafka bootstrap   {}   (e.g. kcat -b {} -L)",
        stack.bootstrap_servers, stack.bootstrap_servers
    );
    println!("  ingest            http://{}/v1/feedback", stack.ingest);
    println!("  categorise        http://{}/metrics", stack.categorise);
    println!("  trends (ops API)  http://{}/v1/actions", stack.trends);
    println!("  ops page          http://{}/ops", stack.trends);
    println!(
        "  notify            http://{}/v1/notifications?action=…",
        stack.notify
    );
    println!(
        "  webhook sink      http://{}/webhooks/<source>",
        args.sink_addr
    );
    println!("  database          {}", args.database.database_url);
    for key in &keys {
        println!(
            "  API key           {}: Bearer {}",
            key.source,
            key.key.expose()
        );
    }
    for key in &admin_keys {
        println!(
            "  admin key         {} (erasure across sources, preferences): Bearer {}",
            key.source,
            key.key.expose()
        );
    }
    println!("\nTry:\n  curl -s -X POST http://{}/v1/feedback -H 'Authorization: Bearer {}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"channel\":\"review\",\"customer\":{{\"id\":\"c-1\",\"locale\":\"de-DE\",\"consent\":true}},\"text\":\"Die Lieferung kam viel zu spät\",\"rating\":2}}'\n", stack.ingest, keys.first().map(|k| k.key.expose()).unwrap_or("<key>"));
    println!("Ctrl-C stops it.");

    if let Some((service, error)) = stack.wait(shutdown).await {
        return stopped(stack, service, error).await;
    }
    stack.stop().await;
    Ok(())
}

/// A service stopped on its own: the others stop too, and `up` fails with its error.
async fn stopped(stack: Stack, service: &'static str, error: String) -> anyhow::Result<()> {
    tracing::error!(service, %error, "service stopped; shutting down");
    stack.stop().await;
    anyhow::bail!("{service} stopped: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_journal_lives_beside_the_sqlite_file() {
        assert_eq!(
            default_journal_dir("sqlite://data/closeloop.db"),
            PathBuf::from("data/closeloop-broker")
        );
        assert_eq!(
            default_journal_dir("sqlite:///var/lib/cl/loop.db?mode=rwc"),
            PathBuf::from("/var/lib/cl/loop-broker")
        );
        assert_eq!(
            default_journal_dir("postgres://postgres@127.0.0.1/test"),
            PathBuf::from("data/closeloop-broker")
        );
    }
}

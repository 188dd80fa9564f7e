//! The whole loop in one process: the embedded broker plus the four services as tokio
//! tasks — the same `Service` code that runs as separate processes in production.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use closeloop_bus::{EmbeddedBroker, KafkaArgs, Restored, TopicSpec};
use closeloop_store::DatabaseArgs;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The configuration of each service in the stack.
#[derive(Debug, Clone)]
pub struct ServiceConfigs {
    pub ingest: closeloop_ingest::Config,
    pub categorise: closeloop_categorise::Config,
    pub trends: closeloop_trends::Config,
    pub notify: closeloop_notify::Config,
}

impl ServiceConfigs {
    /// Each service's defaults (flags' defaults and the environment), all on `database`.
    pub fn from_env(database: &DatabaseArgs) -> Self {
        let mut configs = Self {
            ingest: closeloop_ingest::Config::parse_from(["ingest"]),
            categorise: closeloop_categorise::Config::parse_from(["categorise"]),
            trends: closeloop_trends::Config::parse_from(["trends"]),
            notify: closeloop_notify::Config::parse_from(["notify"]),
        };
        configs.ingest.database = database.clone();
        configs.categorise.database = database.clone();
        configs.trends.database = database.clone();
        configs.notify.database = database.clone();
        configs
    }

    /// Every service listens on an ephemeral port (tests, several stacks at once).
    pub fn with_ephemeral_ports(mut self) -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        self.ingest.http_addr = any;
        self.categorise.http_addr = any;
        self.trends.http_addr = any;
        self.notify.http_addr = any;
        self
    }

    /// One ops token for the stack: a token given to trends (`TRENDS_OPS_TOKEN`) or to
    /// notify (`NOTIFY_OPS_TOKEN`) guards both APIs, so setting one never leaves the other
    /// open. Tokens set for both are kept as they are.
    pub fn share_ops_token(&mut self) {
        match (&self.trends.ops_token, &self.notify.ops_token) {
            (Some(token), None) => self.notify.ops_token = Some(token.clone()),
            (None, Some(token)) => self.trends.ops_token = Some(token.clone()),
            _ => {}
        }
    }

    /// Every service on the cluster at `brokers` (topics already there).
    pub fn set_brokers(&mut self, brokers: &str) {
        self.set_kafka(KafkaArgs::new(brokers));
    }

    fn set_kafka(&mut self, kafka: KafkaArgs) {
        self.ingest.kafka = kafka.clone();
        self.categorise.kafka = kafka.clone();
        self.trends.kafka = kafka.clone();
        self.notify.kafka = kafka;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("embedded broker: {0}")]
    Broker(#[from] closeloop_bus::BusError),
    #[error("{service}: {source}")]
    Service {
        service: &'static str,
        source: closeloop_runtime::Error,
    },
}

/// Names the service a start-up error came from.
fn of(service: &'static str) -> impl FnOnce(closeloop_runtime::Error) -> StackError {
    move |source| StackError::Service { service, source }
}

/// The services' tasks, each known by its service's name — also when it panicked, which
/// leaves nothing but the task's id behind.
#[derive(Default)]
struct ServiceTasks {
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl ServiceTasks {
    /// Runs one service's `run_until_stopped` future as a task named after the service.
    fn spawn<E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let task = self
            .tasks
            .spawn(async move { run.await.map_err(|error| error.to_string()) });
        self.names.insert(task.id(), name);
    }

    /// The next service whose task ended, and how: `Ok` when it stopped, its error, or its
    /// panic as an error. `None` when no task is left.
    async fn next_ended(&mut self) -> Option<(&'static str, Result<(), String>)> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok((id, result)) => (id, result),
            // tokio's words, as the service runtime reports its own tasks' panics.
            Err(error) => (error.id(), Err(error.to_string())),
        };
        Some((self.names.remove(&id).unwrap_or("a service"), result))
    }
}

/// Why a service's task ended on its own: its error, or "stopped" (no service stops
/// without being asked).
fn stop_reason(result: Result<(), String>) -> String {
    result.err().unwrap_or_else(|| "stopped".into())
}

/// Why [`Stack::wait_ready`] gave up.
#[derive(Debug)]
pub enum NotReady {
    /// The limit passed; these services were not ready yet.
    Waiting(Vec<&'static str>),
    /// The service stopped during start-up, with this error.
    Stopped(&'static str, String),
}

/// A running stack. Dropping it without `stop` aborts the services.
pub struct Stack {
    broker: Option<EmbeddedBroker>,
    pub bootstrap_servers: String,
    pub ingest: SocketAddr,
    pub categorise: SocketAddr,
    pub trends: SocketAddr,
    pub notify: SocketAddr,
    shutdown: CancellationToken,
    tasks: ServiceTasks,
}

impl Stack {
    /// Starts an embedded broker (`brokers` mock brokers, `partitions` per topic) and the
    /// four services on it.
    pub async fn start_embedded(
        configs: ServiceConfigs,
        brokers: i32,
        partitions: i32,
    ) -> Result<Self, StackError> {
        let broker = EmbeddedBroker::start(brokers, &TopicSpec::all(partitions))?;
        Self::start_on(configs, broker).await
    }

    /// [`Stack::start_embedded`] with the broker's journal in `journal_dir`: what the
    /// previous run accepted and had not processed yet is restored first (`closeloop up`).
    pub async fn start_durable(
        configs: ServiceConfigs,
        brokers: i32,
        partitions: i32,
        journal_dir: &Path,
    ) -> Result<(Self, Restored), StackError> {
        let (broker, restored) =
            EmbeddedBroker::start_durable(brokers, &TopicSpec::all(partitions), journal_dir)
                .await?;
        Ok((Self::start_on(configs, broker).await?, restored))
    }

    async fn start_on(
        mut configs: ServiceConfigs,
        broker: EmbeddedBroker,
    ) -> Result<Self, StackError> {
        configs.set_kafka(KafkaArgs {
            journal: broker.journal(),
            ..KafkaArgs::new(broker.bootstrap_servers())
        });
        let mut stack = Self::start(configs).await?;
        stack.bootstrap_servers = broker.bootstrap_servers().to_owned();
        stack.broker = Some(broker);
        Ok(stack)
    }

    /// Starts the four services with the brokers their configs name.
    pub async fn start(mut configs: ServiceConfigs) -> Result<Self, StackError> {
        configs.share_ops_token();
        let shutdown = CancellationToken::new();
        let mut tasks = ServiceTasks::default();
        let ingest = closeloop_ingest::Service::build(configs.ingest.clone())
            .await
            .map_err(of("ingest"))?;
        let categorise = closeloop_categorise::Service::build(configs.categorise)
            .await
            .map_err(of("categorise"))?;
        let trends = closeloop_trends::Service::build(configs.trends)
            .await
            .map_err(of("trends"))?;
        let notify = closeloop_notify::Service::build(configs.notify)
            .await
            .map_err(of("notify"))?;
        let addrs = (
            ingest.http_addr(),
            categorise.http_addr(),
            trends.http_addr(),
            notify.http_addr(),
        );
        tasks.spawn("ingest", ingest.run_until_stopped(shutdown.clone()));
        tasks.spawn("categorise", categorise.run_until_stopped(shutdown.clone()));
        tasks.spawn("trends", trends.run_until_stopped(shutdown.clone()));
        tasks.spawn("notify", notify.run_until_stopped(shutdown.clone()));
        Ok(Self {
            broker: None,
            bootstrap_servers: configs.ingest.kafka.brokers,
            ingest: addrs.0,
            categorise: addrs.1,
            trends: addrs.2,
            notify: addrs.3,
            shutdown,
            tasks,
        })
    }

    /// Waits until every service answers `/readyz` with 200 — its consumers have joined
    /// their groups, so what is accepted from now on is handled at once. Gives up when
    /// `limit` passes (naming the services still waiting) or as soon as a service stops
    /// during start-up (with its error, instead of waiting the limit out for it).
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), NotReady> {
        let client = reqwest::Client::new();
        let services = [
            ("ingest", self.ingest),
            ("categorise", self.categorise),
            ("trends", self.trends),
            ("notify", self.notify),
        ];
        let deadline = Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for (service, addr) in services {
                let ready = client
                    .get(format!("http://{addr}/readyz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if !ready {
                    waiting.push(service);
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Waiting(waiting));
            }
            tokio::select! {
                Some((service, result)) = self.tasks.next_ended() => {
                    return Err(NotReady::Stopped(service, stop_reason(result)));
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// The token that stops the stack when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until a service stops on its own (an error or a panic) or `until` is
    /// cancelled.
    pub async fn wait(&mut self, until: CancellationToken) -> Option<(&'static str, String)> {
        tokio::select! {
            _ = until.cancelled() => None,
            Some((service, result)) = self.tasks.next_ended() => {
                Some((service, stop_reason(result)))
            }
        }
    }

    /// Graceful stop: every service finishes its in-flight work and commits.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some((service, result)) = self.tasks.next_ended().await {
            if let Err(error) = result {
                tracing::warn!(service, %error, "service stopped with an error");
            }
        }
        drop(self.broker.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that panics is reported by its name, with the panic, not lost: `up`
    /// would otherwise keep running without it.
    #[tokio::test]
    async fn a_service_that_panics_or_fails_is_named_with_its_reason() {
        let mut tasks = ServiceTasks::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("trends", async move {
            let _ = released.await;
            panic!("index out of bounds");
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        });
        tasks.spawn("notify", async { Err::<(), _>("database is locked") });
        let (service, result) = tasks.next_ended().await.expect("a task ended");
        assert_eq!(
            (service, result),
            ("notify", Err("database is locked".into()))
        );
        release.send(()).expect("trends waits");
        let (service, result) = tasks.next_ended().await.expect("a task ended");
        assert_eq!(service, "trends");
        let error = result.expect_err("a panic is an error");
        assert!(
            error.contains("panicked") && error.contains("index out of bounds"),
            "{error}"
        );
        assert!(tasks.next_ended().await.is_none());
    }

    #[test]
    fn one_ops_token_guards_both_apis() {
        let token =
            |t: &Option<closeloop_http::OpsToken>| t.as_ref().map(|t| t.expose().to_owned());
        let fresh = || {
            let mut configs = ServiceConfigs::from_env(&DatabaseArgs::new("sqlite::memory:"));
            configs.trends.ops_token = None;
            configs.notify.ops_token = None;
            configs
        };
        let mut configs = fresh();
        configs.trends.ops_token = "t".parse().ok();
        configs.share_ops_token();
        assert_eq!(token(&configs.notify.ops_token).as_deref(), Some("t"));

        let mut configs = fresh();
        configs.notify.ops_token = "n".parse().ok();
        configs.share_ops_token();
        assert_eq!(token(&configs.trends.ops_token).as_deref(), Some("n"));

        let mut configs = fresh();
        configs.share_ops_token();
        assert!(configs.trends.ops_token.is_none() && configs.notify.ops_token.is_none());

        let mut configs = fresh();
        configs.trends.ops_token = "t".parse().ok();
        configs.notify.ops_token = "n".parse().ok();
        configs.share_ops_token();
        assert_eq!(
            token(&configs.notify.ops_token).as_deref(),
            Some("n"),
            "explicit wins"
        );
    }
}

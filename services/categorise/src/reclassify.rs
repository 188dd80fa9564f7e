//! Reclassification: when a taxonomy version is applied with a period, the feedback
//! received in it is classified again with that version, by ONE categorise instance, so
//! trends sees a new theme's history.
//!
//! Every instance that reads the event inserts the job (one per version) and tries to
//! claim it with a lease; the claimer runs it and renews the lease as it goes. An
//! instance that dies leaves its lease to expire, and another takes the job over on its
//! periodic check, rerunning it from the start: the job is idempotent (what it added is
//! stored, so a second run finds nothing to add).
//!
//! Only themes are ADDED: a theme the new version no longer finds for a feedback stays in
//! its stored row, and its mention already published is not retracted — history is
//! history (trends keeps counting what was said then).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use closeloop_bus::{Progress, Publisher, TopicReader};
use closeloop_classify::{LexiconClassifier, Taxonomy};
use closeloop_events::{Envelope, Feedback, Period};
use closeloop_runtime::Pseudonyms;
use closeloop_store::{sqlx, values, Database};
use futures::future::try_join_all;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::handler::{categorise, mentions_of};
use crate::metrics::CategoriseMetrics;

/// How long a claim holds without being renewed.
const LEASE: Duration = Duration::from_secs(60);
/// How often an instance looks for jobs whose owner stopped renewing.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Raw records read and handled together.
const BATCH: usize = 500;
/// A progress line at least every this many records read.
const LOG_EVERY: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] closeloop_bus::BusError),
    #[error("the job's taxonomy is not valid: {0}")]
    Taxonomy(#[from] closeloop_classify::TaxonomyError),
    #[error("the lease was lost (another instance took the job over)")]
    LeaseLost,
    #[error("stopped")]
    Stopped,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Submits jobs: what the `taxonomy.v1` handler holds.
#[derive(Clone)]
pub struct Jobs {
    db: Database,
    wake: mpsc::UnboundedSender<String>,
}

impl Jobs {
    /// Records the job of `version` (once, whoever is first) and asks this instance's
    /// runner to try to claim it.
    pub async fn submit(
        &self,
        version: &str,
        period: Period,
        taxonomy: &serde_json::Value,
    ) -> Result<(), closeloop_bus::HandlerError> {
        sqlx::query(
            "INSERT INTO categorise_reclassifications \
             (version, since_ms, until_ms, taxonomy, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(version)
        .bind(period.since.timestamp_millis())
        .bind(period.until.timestamp_millis())
        .bind(taxonomy.to_string())
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(crate::handler::db_error)?;
        // The runner is gone only when the service stops.
        let _ = self.wake.send(version.to_owned());
        Ok(())
    }
}

/// Claims and runs jobs in the background of one instance.
pub struct Runner {
    db: Database,
    publisher: Publisher,
    brokers: String,
    metrics: CategoriseMetrics,
    pseudonyms: Pseudonyms,
    /// Who claims: unique per instance.
    instance: String,
    wake: mpsc::UnboundedReceiver<String>,
}

pub fn jobs(
    db: Database,
    publisher: Publisher,
    brokers: String,
    metrics: CategoriseMetrics,
    pseudonyms: Pseudonyms,
) -> (Jobs, Runner) {
    let (wake, woken) = mpsc::unbounded_channel();
    let jobs = Jobs {
        db: db.clone(),
        wake,
    };
    let runner = Runner {
        db,
        publisher,
        brokers,
        metrics,
        pseudonyms,
        instance: uuid::Uuid::new_v4().to_string(),
        wake: woken,
    };
    (jobs, runner)
}

impl Runner {
    /// Until `stop`: claims jobs submitted here and, every [`CHECK_EVERY`], jobs whose
    /// lease expired; runs each claimed one in a task of its own.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), std::convert::Infallible> {
        let job = Arc::new(JobContext {
            db: self.db.clone(),
            publisher: self.publisher.clone(),
            brokers: self.brokers.clone(),
            metrics: self.metrics.clone(),
            pseudonyms: self.pseudonyms.clone(),
            instance: self.instance.clone(),
            stop: stop.clone(),
        });
        let mut running: JoinSet<String> = JoinSet::new();
        let mut active: HashSet<String> = HashSet::new();
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            let candidates: Vec<String> = tokio::select! {
                _ = stop.cancelled() => break,
                woken = self.wake.recv() => match woken {
                    Some(version) => vec![version],
                    None => break,
                },
                _ = check.tick() => match job.unowned().await {
                    Ok(versions) => versions,
                    Err(error) => {
                        tracing::warn!(%error, "could not look for reclassifications to take over");
                        Vec::new()
                    }
                },
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    if let Ok(version) = finished {
                        active.remove(&version);
                    }
                    Vec::new()
                }
            };
            for version in candidates {
                if active.contains(&version) {
                    continue;
                }
                match job.claim(&version).await {
                    Ok(true) => {
                        active.insert(version.clone());
                        let job = Arc::clone(&job);
                        running.spawn(async move {
                            job.run(&version).await;
                            version
                        });
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%version, %error, "could not claim the reclassification")
                    }
                }
            }
        }
        // Jobs stop between batches and release their lease: another instance (or the
        // next start) takes an unfinished one over.
        while running.join_next().await.is_some() {}
        Ok(())
    }
}

struct JobContext {
    db: Database,
    publisher: Publisher,
    brokers: String,
    metrics: CategoriseMetrics,
    pseudonyms: Pseudonyms,
    instance: String,
    stop: CancellationToken,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    changed: i64,
    unchanged: i64,
    skipped: i64,
}

/// A stored feedback, as the job compares with it.
struct StoredRow {
    customer_id: String,
    content_hash: Option<String>,
    themes: Vec<String>,
}

impl JobContext {
    /// Jobs not done whose lease is free or expired.
    async fn unowned(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT version FROM categorise_reclassifications \
             WHERE done_at_ms IS NULL AND (claimed_by IS NULL OR lease_until_ms < $1)",
        )
        .bind(now_ms())
        .fetch_all(self.db.pool())
        .await
    }

    /// Takes the job (or keeps it, when this instance holds it): one row updated, or
    /// none when it is done or another instance's lease still runs.
    async fn claim(&self, version: &str) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let claimed = sqlx::query(
            "UPDATE categorise_reclassifications SET claimed_by = $1, lease_until_ms = $2 \
             WHERE version = $3 AND done_at_ms IS NULL \
             AND (claimed_by IS NULL OR lease_until_ms < $4 OR claimed_by = $1)",
        )
        .bind(&self.instance)
        .bind(now + lease_ms())
        .bind(version)
        .bind(now)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Renews the lease and records the progress; fails when another instance took over.
    async fn renew(
        &self,
        version: &str,
        read: u64,
        total: u64,
        counts: Counts,
    ) -> Result<(), JobError> {
        let renewed = sqlx::query(
            "UPDATE categorise_reclassifications SET lease_until_ms = $1, read_count = $2, \
             total_count = $3, changed_count = $4, unchanged_count = $5, skipped_count = $6 \
             WHERE version = $7 AND claimed_by = $8 AND done_at_ms IS NULL",
        )
        .bind(now_ms() + lease_ms())
        .bind(i64::try_from(read).unwrap_or(i64::MAX))
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(counts.changed)
        .bind(counts.unchanged)
        .bind(counts.skipped)
        .bind(version)
        .bind(&self.instance)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if renewed == 1 {
            Ok(())
        } else {
            Err(JobError::LeaseLost)
        }
    }

    async fn run(&self, version: &str) {
        tracing::info!(%version, instance = %self.instance, "reclassification claimed");
        match self.execute(version).await {
            Ok(()) => {}
            Err(JobError::Stopped) => {
                // Released, so another instance takes it over at its next check rather
                // than when the lease would have ended.
                let released = sqlx::query(
                    "UPDATE categorise_reclassifications SET lease_until_ms = 0 \
                     WHERE version = $1 AND claimed_by = $2 AND done_at_ms IS NULL",
                )
                .bind(version)
                .bind(&self.instance)
                .execute(self.db.pool())
                .await;
                if let Err(error) = released {
                    tracing::warn!(%version, %error, "could not release the reclassification");
                }
                tracing::info!(%version, "reclassification stopped by the shutdown; another instance (or the next start) takes it over")
            }
            Err(error) => {
                tracing::error!(%version, %error, "reclassification failed; it is retried when its lease ends")
            }
        }
    }

    async fn execute(&self, version: &str) -> Result<(), JobError> {
        let (since_ms, until_ms, taxonomy): (i64, i64, String) = sqlx::query_as(
            "SELECT since_ms, until_ms, taxonomy FROM categorise_reclassifications \
             WHERE version = $1",
        )
        .bind(version)
        .fetch_one(self.db.pool())
        .await?;
        let period = Period {
            since: Utc
                .timestamp_millis_opt(since_ms)
                .single()
                .unwrap_or_default(),
            until: Utc
                .timestamp_millis_opt(until_ms)
                .single()
                .unwrap_or_default(),
        };
        let taxonomy = Taxonomy::from_json(
            serde_json::from_str(&taxonomy).map_err(closeloop_classify::TaxonomyError::Json)?,
        )?;
        // The job's own version, whatever is live by the time it runs.
        let classifier = LexiconClassifier::new(taxonomy);
        let mut reader = TopicReader::<Feedback>::open(&self.brokers, Some(period.since)).await?;
        let mut counts = Counts::default();
        let mut logged = 0;
        loop {
            let batch = tokio::select! {
                _ = self.stop.cancelled() => return Err(JobError::Stopped),
                batch = reader.next_batch(BATCH) => batch?,
            };
            let Some(batch) = batch else { break };
            let feedback: Vec<Feedback> = batch
                .into_iter()
                .map(|incoming| incoming.envelope.data)
                .filter(|feedback| period.contains(feedback.received_at))
                .collect();
            let batch_counts = self.reclassify(&classifier, feedback).await?;
            counts.changed += batch_counts.changed;
            counts.unchanged += batch_counts.unchanged;
            counts.skipped += batch_counts.skipped;
            let progress = reader.progress();
            self.renew(version, progress.read, progress.total, counts)
                .await?;
            if progress.read >= logged + LOG_EVERY {
                logged = progress.read;
                log_progress(version, progress, counts, "reclassification under way");
            }
        }
        let progress = reader.progress();
        self.renew(version, progress.read, progress.total, counts)
            .await?;
        sqlx::query(
            "UPDATE categorise_reclassifications SET done_at_ms = $1 \
             WHERE version = $2 AND claimed_by = $3",
        )
        .bind(now_ms())
        .bind(version)
        .bind(&self.instance)
        .execute(self.db.pool())
        .await?;
        log_progress(version, progress, counts, "reclassification done");
        Ok(())
    }

    /// One batch of feedback in the period: for each stored one whose themes grow,
    /// publishes the new classification and the added themes' mentions, then stores the
    /// themes (after the acks: a crash in between publishes again, which downstream
    /// dedupes by (feedback, theme)).
    async fn reclassify(
        &self,
        classifier: &LexiconClassifier,
        feedback: Vec<Feedback>,
    ) -> Result<Counts, JobError> {
        let mut counts = Counts::default();
        // A record that came twice is looked at once.
        let mut seen = HashSet::new();
        let feedback: Vec<Feedback> = feedback
            .into_iter()
            .filter(|feedback| seen.insert(feedback.feedback_id))
            .collect();
        let stored = self.stored(&feedback).await?;
        let erased = self.erased(&feedback).await?;
        let mut changes = Vec::new();
        for feedback in feedback {
            let id = feedback.feedback_id.to_string();
            let Some(row) = stored.get(&id) else {
                // Not stored yet: the normal path classifies it with the live version.
                counts.skipped += 1;
                continue;
            };
            // Stored under a pseudonym: its customer was erased. Stored with another
            // body: this record was never published.
            // (The ledger as well: an erasure may not have reached the rows yet.)
            let erased =
                row.customer_id != feedback.customer.id || erased.contains(&feedback.feedback_id);
            let other_body = row
                .content_hash
                .as_deref()
                .is_some_and(|hash| hash != feedback.content_hash());
            if erased || other_body {
                counts.skipped += 1;
                continue;
            }
            // Names the job's version (`classifier_version`) and keeps all its themes.
            let categorised = categorise(classifier, feedback);
            let added: Vec<String> = categorised
                .themes
                .iter()
                .map(|theme| theme.id.clone())
                .filter(|theme| !row.themes.contains(theme))
                .collect();
            if added.is_empty() {
                counts.unchanged += 1;
                continue;
            }
            let mut themes = row.themes.clone();
            themes.extend(added.iter().cloned());
            let mentions: Vec<_> = mentions_of(&categorised)
                .into_iter()
                .filter(|mention| added.contains(&mention.data.theme))
                .collect();
            changes.push((id, themes, Envelope::new(categorised), mentions));
        }
        let categorised = try_join_all(
            changes
                .iter()
                .map(|(_, _, categorised, _)| self.publisher.publish(categorised, None)),
        );
        let mentions = try_join_all(
            changes
                .iter()
                .flat_map(|(_, _, _, mentions)| mentions)
                .map(|mention| self.publisher.publish(mention, None)),
        );
        futures::future::try_join(categorised, mentions).await?;
        let version = classifier_version(classifier);
        let mut transaction = self.db.pool().begin().await?;
        for (id, themes, _, _) in &changes {
            sqlx::query(
                "UPDATE categorise_feedback SET themes = $1, classifier_version = $2 \
                 WHERE feedback_id = $3",
            )
            .bind(serde_json::to_string(themes).unwrap_or_default())
            .bind(&version)
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        counts.changed = i64::try_from(changes.len()).unwrap_or(i64::MAX);
        for (result, count) in [
            ("changed", counts.changed),
            ("unchanged", counts.unchanged),
            ("skipped", counts.skipped),
        ] {
            self.metrics
                .reclassified
                .with_label_values(&[result])
                .inc_by(u64::try_from(count).unwrap_or(0));
        }
        Ok(counts)
    }

    /// Those of `feedback` whose customer was erased (in their source's scope, or every
    /// source) after they gave it: never published again.
    async fn erased(&self, feedback: &[Feedback]) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
        let pseudonyms: Vec<String> = feedback
            .iter()
            .map(|f| self.pseudonyms.of(&f.customer.id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut ledger: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for chunk in pseudonyms.chunks(values::rows_per_statement(self.db.backend(), 1)) {
            let sql = format!(
                "SELECT customer_id, source, erased_at_ms FROM categorise_erasures \
                 WHERE customer_id IN {}",
                values::placeholders(self.db.backend(), 1, chunk.len())
            );
            let select = chunk
                .iter()
                .fold(sqlx::query_as(&sql), |select, id| select.bind(id));
            let rows: Vec<(String, String, i64)> = select.fetch_all(self.db.pool()).await?;
            for (pseudonym, source, erased_at_ms) in rows {
                ledger
                    .entry(pseudonym)
                    .or_default()
                    .push((source, erased_at_ms));
            }
        }
        Ok(feedback
            .iter()
            .filter(|f| {
                ledger
                    .get(&self.pseudonyms.of(&f.customer.id))
                    .is_some_and(|erasures| {
                        erasures.iter().any(|(source, at)| {
                            (source == "*" || *source == f.source)
                                && *at >= f.received_at.timestamp_millis()
                        })
                    })
            })
            .map(|f| f.feedback_id)
            .collect())
    }

    /// The stored rows of `feedback`, by id.
    async fn stored(
        &self,
        feedback: &[Feedback],
    ) -> Result<HashMap<String, StoredRow>, sqlx::Error> {
        let ids: Vec<String> = feedback.iter().map(|f| f.feedback_id.to_string()).collect();
        let mut stored = HashMap::with_capacity(ids.len());
        for ids in ids.chunks(values::rows_per_statement(self.db.backend(), 1)) {
            let sql = format!(
                "SELECT feedback_id, customer_id, content_hash, themes FROM categorise_feedback \
                 WHERE feedback_id IN {}",
                values::placeholders(self.db.backend(), 1, ids.len())
            );
            let select = ids
                .iter()
                .fold(sqlx::query_as(&sql), |select, id| select.bind(id));
            let rows: Vec<(String, String, Option<String>, String)> =
                select.fetch_all(self.db.pool()).await?;
            for (id, customer_id, content_hash, themes) in rows {
                let themes = serde_json::from_str(&themes).unwrap_or_default();
                stored.insert(
                    id,
                    StoredRow {
                        customer_id,
                        content_hash,
                        themes,
                    },
                );
            }
        }
        Ok(stored)
    }
}

fn classifier_version(classifier: &LexiconClassifier) -> String {
    use closeloop_classify::Classifier;
    classifier.version()
}

fn lease_ms() -> i64 {
    i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

fn log_progress(version: &str, progress: Progress, counts: Counts, message: &'static str) {
    tracing::info!(
        %version,
        read = progress.read,
        total = progress.total,
        changed = counts.changed,
        unchanged = counts.unchanged,
        skipped = counts.skipped,
        "{message}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_bus::{BusMetrics, PublisherConfig};

    async fn migrated_store() -> Database {
        let args = closeloop_store::testing::database_args("categorise");
        let db = Database::connect(&args.config("categorise"))
            .await
            .expect("a database");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("categorise's migrations");
        db
    }

    /// One instance's view of the jobs (never publishes here: nothing runs).
    fn instance(db: &Database, name: &str) -> JobContext {
        JobContext {
            db: db.clone(),
            publisher: Publisher::new(
                &PublisherConfig::new("127.0.0.1:1"),
                BusMetrics::unregistered(),
            )
            .expect("a publisher"),
            brokers: "127.0.0.1:1".into(),
            metrics: CategoriseMetrics::register(&prometheus::Registry::new()).expect("metrics"),
            pseudonyms: Pseudonyms::development(),
            instance: name.into(),
            stop: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn one_instance_holds_a_job_until_its_lease_expires_and_a_done_job_stays_done() {
        let db = migrated_store().await;
        let (wake, mut woken) = mpsc::unbounded_channel();
        let jobs = Jobs {
            db: db.clone(),
            wake,
        };
        let since = Utc::now();
        let period = Period {
            since,
            until: since + chrono::Duration::hours(1),
        };
        let taxonomy = Taxonomy::builtin().to_json();
        for _ in 0..2 {
            // Every instance submits the same version: one job.
            jobs.submit("v2", period, &taxonomy)
                .await
                .expect("submitted");
        }
        assert_eq!(woken.recv().await.as_deref(), Some("v2"));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM categorise_reclassifications")
            .fetch_one(db.pool())
            .await
            .expect("count");
        assert_eq!(rows, 1);

        let (a, b) = (instance(&db, "a"), instance(&db, "b"));
        assert_eq!(a.unowned().await.expect("unowned"), ["v2"]);
        assert!(a.claim("v2").await.expect("claim"));
        assert!(!b.claim("v2").await.expect("claim"), "a's lease holds");
        assert!(a.claim("v2").await.expect("claim"), "a keeps its own job");
        assert!(b.unowned().await.expect("unowned").is_empty());
        a.renew("v2", 1, 2, Counts::default())
            .await
            .expect("renewed");

        // a stopped renewing (it died): its lease runs out and b takes the job over.
        sqlx::query("UPDATE categorise_reclassifications SET lease_until_ms = 1")
            .execute(db.pool())
            .await
            .expect("lease expired");
        assert_eq!(b.unowned().await.expect("unowned"), ["v2"]);
        assert!(b.claim("v2").await.expect("claim"));
        assert!(matches!(
            a.renew("v2", 2, 2, Counts::default()).await,
            Err(JobError::LeaseLost)
        ));

        sqlx::query("UPDATE categorise_reclassifications SET done_at_ms = 1, lease_until_ms = 1")
            .execute(db.pool())
            .await
            .expect("done");
        assert!(!a.claim("v2").await.expect("claim"));
        assert!(!b.claim("v2").await.expect("claim"));
        assert!(a.unowned().await.expect("unowned").is_empty());
        db.close().await;
    }
}

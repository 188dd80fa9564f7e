//! The only crate that knows sqlx: one pool type for the embedded default (SQLite, a
//! file under `./data`) and production (PostgreSQL), and migrations per service.
//!
//! Services write the same SQL for both backends (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING`), through sqlx's `Any` driver. To keep that portable, tables use only
//! `TEXT`, `BIGINT` and `DOUBLE PRECISION` columns: ids are UUID text, times are Unix
//! milliseconds, flags are 0/1.

pub mod values;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use sqlx;

/// The default database of `closeloop up`: one SQLite file shared by the four services
/// (each owns differently named tables).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/closeloop.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("invalid schema name {0:?}: use lowercase letters, digits and _")]
    InvalidSchema(String),
    #[error("the SQLite write-ahead log could not be checkpointed (readers busy); retry")]
    CheckpointBusy,
    #[error("could not create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (connection trouble, busy database), as opposed
    /// to an error in the query or data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(error) => is_transient(error),
            StoreError::CheckpointBusy => true,
            _ => false,
        }
    }
}

/// Whether a sqlx error is worth retrying.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // SQLite: BUSY / LOCKED. PostgreSQL: connection exceptions (08…), operator
            // intervention such as shutdown (57…), insufficient resources (53…),
            // serialization failure / deadlock (40…).
            let code = db.code().unwrap_or_default();
            matches!(code.as_ref(), "5" | "6" | "261" | "517")
                || ["08", "57", "53", "40"]
                    .iter()
                    .any(|class| code.starts_with(class))
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if it is one closeloop supports.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// Where a service keeps its data.
#[derive(Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// PostgreSQL only: the schema the service's tables live in (created if missing), so
    /// services (and tests) sharing one database stay apart.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// SQLite only: each connection's page cache, where SQLite's default is 2 MiB. A write
    /// transaction that dirties more pages than its cache holds spills them into the
    /// write-ahead log before it commits, and rereads what it evicted.
    pub sqlite_cache_mib: Option<u32>,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 8,
            sqlite_cache_mib: None,
        }
    }

    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("sqlite_cache_mib", &self.sqlite_cache_mib)
            .finish()
    }
}

/// `scheme://user:password@host/…` with the password replaced, for logs and `Debug`:
/// a PostgreSQL URL usually carries one.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                ":[redacted]"
            } else {
                ""
            };
            format!("{scheme}://{user}{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Where a service keeps its data: flags and environment shared by every service.
#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite://path/file.db` (embedded default) or `postgres://user@host:5432/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// PostgreSQL schema for the service's tables [default: the service's name].
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_schema", &self.database_schema)
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

impl DatabaseArgs {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            database_schema: None,
            database_max_connections: 8,
        }
    }

    /// The store configuration, with `default_schema` where no schema was given.
    pub fn config(&self, default_schema: &str) -> StoreConfig {
        StoreConfig {
            url: self.database_url.clone(),
            schema: Some(
                self.database_schema
                    .clone()
                    .unwrap_or_else(|| default_schema.to_owned()),
            ),
            max_connections: self.database_max_connections,
            sqlite_cache_mib: None,
        }
    }
}

/// A connection pool with its backend.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Connects (creating the SQLite file or the PostgreSQL schema when missing).
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&config.url)
            .ok_or_else(|| StoreError::UnsupportedUrl(redact_url(&config.url)))?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_creating_dir(&config.url)?,
            Backend::Postgres => config.url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let schema = match (&config.schema, backend) {
            (Some(schema), Backend::Postgres) => {
                if schema.is_empty()
                    || !schema
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(StoreError::InvalidSchema(schema.clone()));
                }
                let bootstrap = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
                    .await?;
                // `CREATE SCHEMA IF NOT EXISTS` is not safe against a concurrent twin (two
                // replicas starting at once fail on pg_namespace's unique index), so the
                // creation is serialised by a transaction-scoped advisory lock.
                bootstrap
                    .execute(
                        format!(
                            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('closeloop.create_schema')); \
                             CREATE SCHEMA IF NOT EXISTS \"{schema}\"; COMMIT;"
                        )
                        .as_str(),
                    )
                    .await?;
                bootstrap.close().await;
                Some(schema.clone())
            }
            _ => None,
        };
        // secure_delete: deleted and overwritten content is zeroed in its page, so an
        // erased customer does not live on in free pages or free space of the file (see
        // `scrub_after_erasure` for the WAL). A negative cache_size is in KiB.
        let mut sqlite_pragmas = String::from(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
             PRAGMA secure_delete = ON;",
        );
        if let Some(mib) = config.sqlite_cache_mib {
            sqlite_pragmas.push_str(&format!(" PRAGMA cache_size = -{};", u64::from(mib) * 1024));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time anyway; more connections only wait on the lock.
                Backend::Sqlite => config.max_connections.min(4),
                Backend::Postgres => config.max_connections,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                let sqlite_pragmas = sqlite_pragmas.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute(sqlite_pragmas.as_str()).await?;
                        }
                        Backend::Postgres => {
                            if let Some(schema) = schema {
                                conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Applies a service's migrations. Each service's migration versions are distinct
    /// (ingest 1xxx, categorise 2xxx, trends 3xxx, notify 4xxx), and each migrator
    /// ignores the others' rows, so services can share one SQLite file.
    pub async fn migrate(&self, mut migrator: Migrator) -> Result<(), StoreError> {
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// After personal data was erased: makes sure no copy of it is left on disk.
    ///
    /// SQLite: the connection's `secure_delete` zeroes what was deleted in the database
    /// file, but the write-ahead log still holds the old page images until a checkpoint
    /// copies the log back and truncates it (`wal_checkpoint(TRUNCATE)`). A checkpoint
    /// that readers kept from finishing is [`StoreError::CheckpointBusy`] (transient:
    /// retry). PostgreSQL: nothing to do here; the old row versions are dead tuples
    /// until (auto)vacuum reclaims them (see the README, "Privacy and erasure").
    pub async fn scrub_after_erasure(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        // (busy, frames in the log, frames checkpointed)
        let (busy, _, _): (i32, i32, i32) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await?;
        if busy != 0 {
            return Err(StoreError::CheckpointBusy);
        }
        Ok(())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns `sqlite://data/x.db` into a URL that creates the file, creating `data/` too.
fn sqlite_url_creating_dir(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Milliseconds since the Unix epoch, the portable time column type.
pub fn millis(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Test helpers: a fresh database per test, on PostgreSQL when `DATABASE_URL` says so.
pub mod testing {
    use super::*;

    /// The PostgreSQL URL tests should use, if any.
    pub fn postgres_url() -> Option<String> {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| Backend::of_url(url) == Some(Backend::Postgres))
    }

    /// A fresh SQLite file in the temp dir (unique per call).
    pub fn sqlite_config() -> StoreConfig {
        StoreConfig::new(sqlite_url())
    }

    /// The URL of a fresh SQLite file in the temp dir (unique per call).
    pub fn sqlite_url() -> String {
        let path = std::env::temp_dir().join(format!("closeloop-test-{}.db", uuid::Uuid::now_v7()));
        format!("sqlite://{}", path.display())
    }

    /// Database arguments for one test: a fresh PostgreSQL schema prefix when
    /// `DATABASE_URL` is a PostgreSQL URL, else a fresh SQLite file.
    pub fn database_args(service: &str) -> DatabaseArgs {
        match postgres_url() {
            Some(url) => DatabaseArgs {
                database_schema: Some(format!("t_{}_{service}", uuid::Uuid::now_v7().simple())),
                ..DatabaseArgs::new(url)
            },
            None => DatabaseArgs::new(sqlite_url()),
        }
    }

    /// A fresh schema on the PostgreSQL of `DATABASE_URL`, or `None` (after saying so on
    /// stderr) when it is not set.
    pub fn postgres_config(test: &str) -> Option<StoreConfig> {
        match postgres_url() {
            Some(url) => Some(
                StoreConfig::new(url).with_schema(format!("t_{}", uuid::Uuid::now_v7().simple())),
            ),
            None => {
                eprintln!("SKIPPED {test}: DATABASE_URL is not set to a PostgreSQL URL");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_never_reach_debug_output() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/closeloop?sslmode=require"),
            "postgres://app:[redacted]@db:5432/closeloop?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
        let args = DatabaseArgs::new("postgres://app:hunter2@db/closeloop");
        let printed = format!("{args:?} {:?}", args.config("ingest"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("app:[redacted]@db"), "{printed}");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("cl-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/x.db", dir.display());
        let got = sqlite_url_creating_dir(&url).unwrap();
        assert!(got.ends_with("x.db?mode=rwc"), "{got}");
        assert!(dir.is_dir());
        assert_eq!(
            sqlite_url_creating_dir("sqlite::memory:?cache=shared").unwrap(),
            "sqlite://:memory:?cache=shared&mode=rwc"
        );
    }

    #[tokio::test]
    async fn rejects_unknown_url_schemes() {
        let err = Database::connect(&StoreConfig::new("mysql://localhost/x"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)));
    }

    async fn round_trip(config: StoreConfig) {
        let db = Database::connect(&config).await.unwrap();
        db.ping().await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS probe (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        for _ in 0..2 {
            sqlx::query("INSERT INTO probe (id, n) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind("a")
                .bind(7_i64)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM probe")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(count, 1, "ON CONFLICT DO NOTHING keeps one row");
    }

    #[tokio::test]
    async fn every_sqlite_connection_gets_the_page_cache_asked_for() {
        let cache_of = |db: Database| async move {
            let mut conn = db.pool().acquire().await.unwrap();
            let (kib,): (i64,) = sqlx::query_as("PRAGMA cache_size")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            kib
        };
        let asked = StoreConfig {
            sqlite_cache_mib: Some(16),
            ..testing::sqlite_config()
        };
        let db = Database::connect(&asked).await.unwrap();
        assert_eq!(cache_of(db).await, -16 * 1024);
        // Without a wish, SQLite's own default (2,000 KiB).
        let db = Database::connect(&testing::sqlite_config()).await.unwrap();
        assert_eq!(cache_of(db).await, -2000);
    }

    #[tokio::test]
    async fn sqlite_round_trip_is_idempotent() {
        round_trip(testing::sqlite_config()).await;
    }

    #[tokio::test]
    async fn postgres_round_trip_is_idempotent() {
        if let Some(config) = testing::postgres_config("store::postgres_round_trip_is_idempotent") {
            round_trip(config).await;
        }
    }

    /// Which of the SQLite files of `url` (the database, its `-wal` and `-shm`) hold
    /// `needle`.
    fn files_holding(url: &str, needle: &str) -> Vec<String> {
        let path = url.trim_start_matches("sqlite://");
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| format!("{path}{suffix}"))
            .filter(|file| {
                std::fs::read(file).is_ok_and(|bytes| {
                    bytes
                        .windows(needle.len())
                        .any(|window| window == needle.as_bytes())
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn erased_rows_leave_no_trace_in_the_sqlite_files() {
        let url = testing::sqlite_url();
        let db = Database::connect(&StoreConfig::new(&url)).await.unwrap();
        let needle = "needle-zq-erased-4711";
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, who TEXT NOT NULL, note TEXT)")
            .execute(db.pool())
            .await
            .unwrap();
        for i in 0..200 {
            sqlx::query("INSERT INTO t (id, who, note) VALUES ($1, $2, $3)")
                .bind(format!("row-{i}"))
                .bind(if i % 10 == 0 { needle } else { "someone" })
                .bind(format!("{needle} said something {}", "x".repeat(i)))
                .execute(db.pool())
                .await
                .unwrap();
        }
        // Rows rewritten in place and rows deleted: both must leave nothing behind.
        sqlx::query("UPDATE t SET who = 'erased:1', note = '' WHERE who = $1")
            .bind(needle)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM t WHERE note LIKE $1")
            .bind(format!("%{needle}%"))
            .execute(db.pool())
            .await
            .unwrap();
        assert!(
            !files_holding(&url, needle).is_empty(),
            "the WAL holds it before"
        );
        db.scrub_after_erasure().await.unwrap();
        assert_eq!(files_holding(&url, needle), Vec::<String>::new());
        db.close().await;
        assert_eq!(files_holding(&url, needle), Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_share_one_new_schema() {
        let Some(config) =
            testing::postgres_config("store::replicas_starting_together_share_one_new_schema")
        else {
            return;
        };
        let connects = (0..8).map(|_| {
            let config = config.clone();
            tokio::spawn(async move { Database::connect(&config).await.map(|_| ()) })
        });
        for connected in futures::future::join_all(connects).await {
            connected.unwrap().expect("every replica connects");
        }
    }
}

//! Every query the trends service runs, one file per concern, all methods of the one
//! [`TrendsStore`] handle. The SQL is the same for SQLite and PostgreSQL (sqlx `Any`
//! driver): `$n` placeholders, TEXT / BIGINT columns only, ids as UUID text, times as Unix
//! milliseconds, flags as 0/1. Sums are cast to BIGINT because PostgreSQL sums BIGINT into
//! NUMERIC, which the `Any` driver cannot decode.
//!
//! - [`mentions`]: storing mentions and reading them back for the detector;
//! - [`evidence`]: what a span of mentions adds up to, for evidence and statistics;
//! - [`actions`]: the action rows and their state changes;
//! - [`effects`]: the measured effect of resolved actions;
//! - [`findings`]: what a detector found in the past, reported but not raised;
//! - [`history`]: who did what to an action, when;
//! - [`erasure`]: forgetting a customer;
//! - [`sessions`]: `/ops` sign-ins;
//! - [`topics`]: the feedback emerging topics are found in;
//! - [`scores`]: scored feedback, for the themes' impact on NPS and rating;
//! - [`taxonomy`]: the taxonomy versions, proposed and applied;
//! - [`preview`]: what a replay preview of a proposed version reads besides.

mod actions;
mod effects;
mod erasure;
mod evidence;
mod findings;
mod history;
mod mentions;
mod preview;
mod scores;
mod sessions;
mod taxonomy;
mod topics;

use closeloop_runtime::Pseudonyms;
use closeloop_store::sqlx;
use closeloop_store::Database;

pub use actions::{ActionFilter, ActionRow, StatusFilter};
pub use effects::{DueRow, EffectRow, WindowRow};
pub use evidence::{ExcerptRow, SeriesRow, SliceRow, Span};
pub use findings::FindingRow;
pub use history::LogRow;
pub use mentions::MentionRow;
pub use scores::ScoreRow;
pub use taxonomy::{Applied, TaxonomyVersionRow};
pub use topics::{TopicFeedbackRow, TopicScanRow};

/// Whether `error` is the unique index refusing a second unresolved action of a theme.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The trends tables behind a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct TrendsStore {
    db: Database,
    /// Erased customers' pseudonyms (the ledger, pseudonymised mentions).
    pseudonyms: Pseudonyms,
}

impl TrendsStore {
    pub fn new(db: Database, pseudonyms: Pseudonyms) -> Self {
        Self { db, pseudonyms }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A freshly migrated store: SQLite, or a new PostgreSQL schema with `DATABASE_URL`.
    pub async fn store() -> TrendsStore {
        let db =
            Database::connect(&closeloop_store::testing::database_args("trends").config("trends"))
                .await
                .expect("connect");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        TrendsStore::new(db, Pseudonyms::development())
    }

    pub fn mention(feedback: &str, customer: &str, at_ms: i64) -> MentionRow {
        MentionRow {
            feedback_id: feedback.into(),
            theme: "delivery_time".into(),
            customer_id: customer.into(),
            source: "shopdesk".into(),
            negative: true,
            excerpt: format!("late again ({feedback})"),
            channel: "review".into(),
            touchpoint: None,
            rating: Some(1),
            nps: None,
            given_at_ms: at_ms,
        }
    }

    pub fn span(from_ms: i64, to_ms: i64, after_ms: i64) -> Span<'static> {
        Span {
            theme: "delivery_time",
            from_ms,
            to_ms,
            after_ms,
        }
    }
}

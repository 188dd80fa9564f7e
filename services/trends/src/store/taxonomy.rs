//! Taxonomy versions: proposed, applied (in one line), published.

use closeloop_store::sqlx;

use super::TrendsStore;

/// One stored taxonomy version.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TaxonomyVersionRow {
    pub version: String,
    pub seq: i64,
    pub based_on: Option<String>,
    /// `closeloop_classify::Taxonomy` as JSON.
    pub taxonomy_json: String,
    pub change: String,
    pub created_at_ms: i64,
    /// Position in the line of applied versions; `None` while proposed.
    pub applied_seq: Option<i64>,
    pub applied_at_ms: Option<i64>,
    pub reclassify_since_ms: Option<i64>,
    pub reclassify_until_ms: Option<i64>,
    pub published_at_ms: Option<i64>,
}

/// What applying a proposal found.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Applied now: the row as stored.
    Now(TaxonomyVersionRow),
    /// No such version.
    Unknown,
    /// It was applied before.
    Already(TaxonomyVersionRow),
    /// Another version became current after the one this proposal is based on.
    Stale { current: String },
}

const COLUMNS: &str = "version, seq, based_on, taxonomy_json, change, created_at_ms, \
    applied_seq, applied_at_ms, reclassify_since_ms, reclassify_until_ms, published_at_ms";

impl TrendsStore {
    /// Stores the file's taxonomy as the first applied version, unless some version is
    /// stored already (then the stored line stays what it is). True when stored now.
    pub async fn seed_taxonomy(
        &self,
        version: &str,
        taxonomy_json: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO trends_taxonomy_versions (version, seq, based_on, taxonomy_json, \
             change, created_at_ms, applied_seq, applied_at_ms) \
             SELECT $1, 1, NULL, $2, 'the taxonomy file', $3, 1, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM trends_taxonomy_versions) \
             ON CONFLICT DO NOTHING",
        )
        .bind(version)
        .bind(taxonomy_json)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The current version: the last applied.
    pub async fn current_taxonomy(&self) -> Result<Option<TaxonomyVersionRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM trends_taxonomy_versions \
             WHERE applied_seq IS NOT NULL ORDER BY applied_seq DESC LIMIT 1"
        ))
        .fetch_optional(self.db.pool())
        .await
    }

    pub async fn taxonomy_version(
        &self,
        version: &str,
    ) -> Result<Option<TaxonomyVersionRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM trends_taxonomy_versions WHERE version = $1"
        ))
        .bind(version)
        .fetch_optional(self.db.pool())
        .await
    }

    /// Every version, newest first.
    pub async fn taxonomy_versions(&self) -> Result<Vec<TaxonomyVersionRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM trends_taxonomy_versions ORDER BY seq DESC"
        ))
        .fetch_all(self.db.pool())
        .await
    }

    /// Stores a proposal as `<root>-r<seq>` with the next sequence number; `make` gets the
    /// name and returns the taxonomy JSON (so the JSON carries its own name). Returns the
    /// stored row, or `make`'s error. Retries when another instance took the number.
    pub async fn propose_taxonomy<E>(
        &self,
        root: &str,
        based_on: &str,
        change: &str,
        now_ms: i64,
        make: impl Fn(&str) -> Result<String, E>,
    ) -> Result<Result<TaxonomyVersionRow, E>, sqlx::Error> {
        for _ in 0..5 {
            let (last,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(seq) FROM trends_taxonomy_versions")
                    .fetch_one(self.db.pool())
                    .await?;
            let seq = last.unwrap_or(0) + 1;
            let version = format!("{root}-r{seq}");
            let taxonomy_json = match make(&version) {
                Ok(json) => json,
                Err(error) => return Ok(Err(error)),
            };
            let inserted = sqlx::query(
                "INSERT INTO trends_taxonomy_versions (version, seq, based_on, taxonomy_json, \
                 change, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&version)
            .bind(seq)
            .bind(based_on)
            .bind(&taxonomy_json)
            .bind(change)
            .bind(now_ms)
            .execute(self.db.pool())
            .await?;
            if inserted.rows_affected() == 1 {
                if let Some(row) = self.taxonomy_version(&version).await? {
                    return Ok(Ok(row));
                }
            }
        }
        Err(sqlx::Error::Protocol(
            "could not number a taxonomy version: other instances kept taking the numbers".into(),
        ))
    }

    /// Applies a proposal when its base is still the current version. The unique
    /// `applied_seq` settles a race between two instances: one of them gets `Stale`.
    pub async fn apply_taxonomy(
        &self,
        version: &str,
        now_ms: i64,
        reclassify: Option<(i64, i64)>,
    ) -> Result<Applied, sqlx::Error> {
        let Some(row) = self.taxonomy_version(version).await? else {
            return Ok(Applied::Unknown);
        };
        if row.applied_seq.is_some() {
            return Ok(Applied::Already(row));
        }
        let current = self.current_taxonomy().await?;
        let (current_version, current_seq) = current
            .map(|c| (c.version, c.applied_seq.unwrap_or(0)))
            .unwrap_or_default();
        if row.based_on.as_deref() != Some(current_version.as_str()) {
            return Ok(Applied::Stale {
                current: current_version,
            });
        }
        let done = sqlx::query(
            "UPDATE trends_taxonomy_versions SET applied_seq = $2, applied_at_ms = $3, \
             reclassify_since_ms = $4, reclassify_until_ms = $5 \
             WHERE version = $1 AND applied_seq IS NULL",
        )
        .bind(version)
        .bind(current_seq + 1)
        .bind(now_ms)
        .bind(reclassify.map(|(since, _)| since))
        .bind(reclassify.map(|(_, until)| until))
        .execute(self.db.pool())
        .await;
        match done {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                return Ok(match self.taxonomy_version(version).await? {
                    Some(row) => Applied::Already(row),
                    None => Applied::Unknown,
                })
            }
            Err(error) if super::is_unique_violation(&error) => {
                let current = self.current_taxonomy().await?;
                return Ok(Applied::Stale {
                    current: current.map(|c| c.version).unwrap_or_default(),
                });
            }
            Err(error) => return Err(error),
        }
        Ok(match self.taxonomy_version(version).await? {
            Some(row) => Applied::Now(row),
            None => Applied::Unknown,
        })
    }

    /// Applied versions `taxonomy.v1` has not acknowledged yet, oldest first.
    pub async fn unpublished_taxonomies(&self) -> Result<Vec<TaxonomyVersionRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM trends_taxonomy_versions \
             WHERE applied_seq IS NOT NULL AND published_at_ms IS NULL ORDER BY applied_seq"
        ))
        .fetch_all(self.db.pool())
        .await
    }

    pub async fn mark_taxonomy_published(
        &self,
        version: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE trends_taxonomy_versions SET published_at_ms = $2 \
             WHERE version = $1 AND published_at_ms IS NULL",
        )
        .bind(version)
        .bind(now_ms)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    fn json(version: &str) -> Result<String, std::convert::Infallible> {
        Ok(format!("{{\"version\":\"{version}\"}}"))
    }

    #[tokio::test]
    async fn versions_are_seeded_once_proposed_and_applied_in_one_line() {
        let store = testing::store().await;
        assert!(store.current_taxonomy().await.expect("read").is_none());
        assert!(store.seed_taxonomy("2026.12", "{}", 1).await.expect("seed"));
        assert!(!store.seed_taxonomy("2027.01", "{}", 2).await.expect("seed"));
        let current = store.current_taxonomy().await.expect("read").expect("one");
        assert_eq!(
            (current.version.as_str(), current.applied_seq),
            ("2026.12", Some(1))
        );

        let a = store
            .propose_taxonomy("2026.12", "2026.12", "added a", 3, json)
            .await
            .expect("stored")
            .expect("made");
        let b = store
            .propose_taxonomy("2026.12", "2026.12", "added b", 4, json)
            .await
            .expect("stored")
            .expect("made");
        assert_eq!(
            (a.version.as_str(), b.version.as_str()),
            ("2026.12-r2", "2026.12-r3")
        );
        assert_eq!(a.taxonomy_json, "{\"version\":\"2026.12-r2\"}");
        assert_eq!(a.applied_seq, None);

        let Applied::Now(applied) = store
            .apply_taxonomy(&a.version, 5, Some((1, 2)))
            .await
            .expect("apply")
        else {
            panic!("a applies");
        };
        assert_eq!(applied.applied_seq, Some(2));
        assert_eq!(
            (applied.reclassify_since_ms, applied.reclassify_until_ms),
            (Some(1), Some(2))
        );
        assert!(matches!(
            store
                .apply_taxonomy(&a.version, 6, None)
                .await
                .expect("apply"),
            Applied::Already(_)
        ));
        // b was based on what is no longer current.
        assert_eq!(
            store
                .apply_taxonomy(&b.version, 6, None)
                .await
                .expect("apply"),
            Applied::Stale {
                current: a.version.clone()
            }
        );
        assert_eq!(
            store.apply_taxonomy("nope", 6, None).await.expect("apply"),
            Applied::Unknown
        );

        let unpublished: Vec<String> = store
            .unpublished_taxonomies()
            .await
            .expect("read")
            .into_iter()
            .map(|row| row.version)
            .collect();
        assert_eq!(unpublished, ["2026.12", "2026.12-r2"]);
        store
            .mark_taxonomy_published("2026.12", 7)
            .await
            .expect("mark");
        assert_eq!(store.unpublished_taxonomies().await.expect("read").len(), 1);
        assert_eq!(store.taxonomy_versions().await.expect("read").len(), 3);
    }
}

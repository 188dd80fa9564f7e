//! Historical findings: what a detector found in the past that is not raised as work
//! (see `crate::detection`). One row per (theme, episode); a late mention that moves the
//! episode's trigger earlier replaces the row instead of adding a second one.

use closeloop_store::sqlx;

use super::TrendsStore;

/// One row of `trends_findings`; the evidence stays JSON text, as for actions.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FindingRow {
    pub theme: String,
    /// Event time of the episode's trigger: the finding's identity within its theme.
    pub triggered_at_ms: i64,
    /// Event time the evidence ends (the detector's last firing).
    pub evidence_end_ms: i64,
    pub found_at_ms: i64,
    pub updated_at_ms: i64,
    pub evidence_json: String,
}

impl TrendsStore {
    /// Records the finding of an episode (`finding.triggered_at_ms` to
    /// `finding.evidence_end_ms`), replacing the row of the same episode stored under a
    /// later trigger time; keeps the time it was first found. Returns whether the episode
    /// is new.
    pub async fn record_finding(&self, finding: &FindingRow) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let (earlier,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(found_at_ms) FROM trends_findings \
             WHERE theme = $1 AND triggered_at_ms >= $2 AND triggered_at_ms <= $3",
        )
        .bind(&finding.theme)
        .bind(finding.triggered_at_ms)
        .bind(finding.evidence_end_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM trends_findings \
             WHERE theme = $1 AND triggered_at_ms >= $2 AND triggered_at_ms <= $3",
        )
        .bind(&finding.theme)
        .bind(finding.triggered_at_ms)
        .bind(finding.evidence_end_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO trends_findings (theme, triggered_at_ms, evidence_end_ms, \
             found_at_ms, updated_at_ms, evidence_json) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&finding.theme)
        .bind(finding.triggered_at_ms)
        .bind(finding.evidence_end_ms)
        .bind(earlier.unwrap_or(finding.found_at_ms))
        .bind(finding.updated_at_ms)
        .bind(&finding.evidence_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(earlier.is_none())
    }

    /// Forgets the findings of the theme's episode that starts at `triggered_at_ms`: it
    /// reached the present and became an action.
    pub async fn forget_findings_since(
        &self,
        theme: &str,
        triggered_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM trends_findings WHERE theme = $1 AND triggered_at_ms >= $2")
            .bind(theme)
            .bind(triggered_at_ms)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Findings, the most recent trigger first; of one theme when given.
    pub async fn findings(
        &self,
        theme: Option<&str>,
        limit: i64,
    ) -> Result<Vec<FindingRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT theme, triggered_at_ms, evidence_end_ms, found_at_ms, updated_at_ms, \
             evidence_json FROM trends_findings WHERE ($1 IS NULL OR theme = $1) \
             ORDER BY triggered_at_ms DESC, theme LIMIT $2",
        )
        .bind(theme)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::store;
    use super::FindingRow;

    fn finding(triggered_at_ms: i64, end_ms: i64, found_at_ms: i64, evidence: &str) -> FindingRow {
        FindingRow {
            theme: "delivery_time".into(),
            triggered_at_ms,
            evidence_end_ms: end_ms,
            found_at_ms,
            updated_at_ms: found_at_ms,
            evidence_json: evidence.into(),
        }
    }

    #[tokio::test]
    async fn one_row_per_episode_even_when_late_mentions_move_its_trigger() {
        let store = store().await;
        assert!(store
            .record_finding(&finding(100, 200, 1, "a"))
            .await
            .unwrap());
        assert!(!store
            .record_finding(&finding(100, 300, 2, "b"))
            .await
            .unwrap());
        // Late mentions made the same episode fire earlier.
        assert!(!store
            .record_finding(&finding(50, 300, 3, "c"))
            .await
            .unwrap());
        // Another episode, days later.
        assert!(store
            .record_finding(&finding(900, 950, 4, "d"))
            .await
            .unwrap());
        let rows = store.findings(None, 10).await.unwrap();
        let got: Vec<(i64, i64, i64, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.triggered_at_ms,
                    r.evidence_end_ms,
                    r.found_at_ms,
                    r.evidence_json.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(900, 950, 4, "d"), (50, 300, 1, "c")],
            "first found at 1"
        );
        assert!(store.findings(Some("price"), 10).await.unwrap().is_empty());

        // An erasure finds the finding's quotes and rewrites them.
        let quoting = finding(2000, 2100, 5, r#"{"excerpts":[{"customer_id":"anna"}]}"#);
        store.record_finding(&quoting).await.unwrap();
        let found = store.evidence_mentioning("anna").await.unwrap();
        let of = super::super::erasure::EvidenceOf::Finding("delivery_time".into(), 2000);
        assert_eq!(found, [(of.clone(), quoting.evidence_json.clone())]);
        store
            .replace_evidence(&of, r#"{"excerpts":[]}"#)
            .await
            .unwrap();
        assert!(store.evidence_mentioning("anna").await.unwrap().is_empty());
        store
            .forget_findings_since("delivery_time", 2000)
            .await
            .unwrap();

        store
            .forget_findings_since("delivery_time", 900)
            .await
            .unwrap();
        assert_eq!(
            store
                .findings(Some("delivery_time"), 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

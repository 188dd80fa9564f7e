//! What a span of a theme's counted mentions adds up to: slices, series, complainers and
//! quotable excerpts, for an action's evidence and the statistics endpoint.

use closeloop_store::sqlx::{self, Row};

use super::TrendsStore;

/// A negative mention's quotable part, a candidate for an action's evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct ExcerptRow {
    pub feedback_id: String,
    pub customer_id: String,
    pub excerpt: String,
    pub given_at_ms: i64,
}

/// Which mentions of a theme an evidence or statistics query covers: given in
/// `[from_ms, to_ms]` and strictly after `after_ms` (the last resolution), counted by
/// the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span<'a> {
    pub theme: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub after_ms: i64,
}

/// Mentions of one (channel, touchpoint, negative) slice of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceRow {
    pub channel: String,
    pub touchpoint: Option<String>,
    pub negative: bool,
    pub mentions: i64,
    pub distinct_customers: i64,
    pub rating_sum: i64,
    pub rating_count: i64,
    pub nps_sum: i64,
    pub nps_count: i64,
}

/// The counts of one time bucket of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub bucket: i64,
    pub mentions: i64,
    pub negative_mentions: i64,
    pub distinct_customers: i64,
}

impl TrendsStore {
    /// The newest negative mentions of a span, newest first.
    pub async fn recent_negative_excerpts(
        &self,
        span: Span<'_>,
        limit: i64,
    ) -> Result<Vec<ExcerptRow>, sqlx::Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT feedback_id, customer_id, excerpt, given_at_ms FROM trends_mentions \
             WHERE theme = $1 AND negative = 1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             ORDER BY given_at_ms DESC, feedback_id DESC LIMIT $5",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(feedback_id, customer_id, excerpt, given_at_ms)| ExcerptRow {
                    feedback_id,
                    customer_id,
                    excerpt,
                    given_at_ms,
                },
            )
            .collect())
    }

    /// The span's mentions by channel, touchpoint and sentiment, with rating and NPS sums.
    pub async fn slices(&self, span: Span<'_>) -> Result<Vec<SliceRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT channel, touchpoint, negative, COUNT(*) AS mentions, \
             COUNT(DISTINCT customer_id) AS customers, \
             CAST(COALESCE(SUM(rating), 0) AS BIGINT) AS rating_sum, COUNT(rating) AS rating_count, \
             CAST(COALESCE(SUM(nps), 0) AS BIGINT) AS nps_sum, COUNT(nps) AS nps_count \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             GROUP BY channel, touchpoint, negative ORDER BY channel, touchpoint, negative",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SliceRow {
                    channel: row.try_get("channel")?,
                    touchpoint: row.try_get("touchpoint")?,
                    negative: row.try_get::<i64, _>("negative")? != 0,
                    mentions: row.try_get("mentions")?,
                    distinct_customers: row.try_get("customers")?,
                    rating_sum: row.try_get("rating_sum")?,
                    rating_count: row.try_get("rating_count")?,
                    nps_sum: row.try_get("nps_sum")?,
                    nps_count: row.try_get("nps_count")?,
                })
            })
            .collect()
    }

    /// Distinct customers with a negative mention in the span.
    pub async fn distinct_complainers(&self, span: Span<'_>) -> Result<i64, sqlx::Error> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(DISTINCT customer_id) FROM trends_mentions WHERE theme = $1 \
             AND negative = 1 AND counted = 1 AND given_at_ms >= $2 AND given_at_ms <= $3 \
             AND given_at_ms > $4",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .fetch_one(self.db.pool())
        .await?;
        Ok(count)
    }

    /// The ids of the span's negative mentions, newest first.
    pub async fn negative_ids(
        &self,
        span: Span<'_>,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT feedback_id FROM trends_mentions WHERE theme = $1 AND negative = 1 \
             AND counted = 1 AND given_at_ms >= $2 AND given_at_ms <= $3 AND given_at_ms > $4 \
             ORDER BY given_at_ms DESC, feedback_id DESC LIMIT $5",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The span's counts per bucket of `bucket_ms` (epoch-aligned), oldest first; buckets
    /// without mentions are absent.
    pub async fn series(
        &self,
        span: Span<'_>,
        bucket_ms: i64,
    ) -> Result<Vec<SeriesRow>, sqlx::Error> {
        // Shifting by a whole number of buckets keeps the division on non-negative
        // numbers, where SQLite and PostgreSQL both truncate the same way.
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT (given_at_ms - $5) / $6 AS bucket, COUNT(*), \
             CAST(COALESCE(SUM(negative), 0) AS BIGINT), \
             COUNT(DISTINCT CASE WHEN negative = 1 THEN customer_id END) \
             FROM trends_mentions WHERE theme = $1 AND counted = 1 AND given_at_ms >= $2 \
             AND given_at_ms <= $3 AND given_at_ms > $4 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(span.theme)
        .bind(span.from_ms)
        .bind(span.to_ms)
        .bind(span.after_ms)
        .bind(span.from_ms.div_euclid(bucket_ms) * bucket_ms)
        .bind(bucket_ms)
        .fetch_all(self.db.pool())
        .await?;
        let origin = span.from_ms.div_euclid(bucket_ms);
        Ok(rows
            .into_iter()
            .map(|(bucket, mentions, negative, distinct)| SeriesRow {
                bucket: origin + bucket,
                mentions,
                negative_mentions: negative,
                distinct_customers: distinct,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mention, span, store};
    use super::super::MentionRow;
    use super::*;

    #[tokio::test]
    async fn evidence_aggregates_by_slice_and_bucket() {
        let store = store().await;
        let minute = 60_000;
        let rows = [
            (
                "f1",
                "a",
                true,
                "review",
                Some("delivery"),
                Some(1),
                None,
                minute,
            ),
            (
                "f2",
                "a",
                true,
                "review",
                Some("delivery"),
                Some(2),
                None,
                2 * minute,
            ),
            ("f3", "b", true, "ticket", None, None, Some(3), 11 * minute),
            (
                "f4",
                "c",
                false,
                "ticket",
                None,
                Some(5),
                Some(9),
                12 * minute,
            ),
            ("f5", "d", true, "ticket", None, None, None, 30 * minute),
        ];
        for (id, customer, negative, channel, touchpoint, rating, nps, at) in rows {
            let row = MentionRow {
                negative,
                channel: channel.into(),
                touchpoint: touchpoint.map(str::to_owned),
                rating,
                nps,
                ..mention(id, customer, at)
            };
            store.insert_mention(&row).await.unwrap();
        }
        // f5 is outside the span.
        let span = span(0, 20 * minute, i64::MIN);
        let slices = store.slices(span).await.unwrap();
        let review = slices
            .iter()
            .find(|s| s.channel == "review")
            .expect("review slice");
        assert_eq!(review.mentions, 2);
        assert_eq!(review.distinct_customers, 1);
        assert_eq!((review.rating_sum, review.rating_count), (3, 2));
        let ticket_negative = slices
            .iter()
            .find(|s| s.channel == "ticket" && s.negative)
            .expect("negative ticket slice");
        assert_eq!((ticket_negative.nps_sum, ticket_negative.nps_count), (3, 1));
        assert_eq!(store.distinct_complainers(span).await.unwrap(), 2);
        assert_eq!(
            store.negative_ids(span, 2).await.unwrap(),
            ["f3", "f2"],
            "newest first, capped"
        );
        let series = store.series(span, 10 * minute).await.unwrap();
        assert_eq!(
            series,
            [
                SeriesRow {
                    bucket: 0,
                    mentions: 2,
                    negative_mentions: 2,
                    distinct_customers: 1
                },
                SeriesRow {
                    bucket: 1,
                    mentions: 2,
                    negative_mentions: 1,
                    distinct_customers: 1
                },
            ]
        );
        // After a resolution at minute 5 only the later mentions count.
        let after = Span {
            after_ms: 5 * minute,
            ..span
        };
        assert_eq!(store.distinct_complainers(after).await.unwrap(), 1);
    }
}

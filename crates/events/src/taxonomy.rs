//! Taxonomy versions: the themes change at run time, and every service that classifies
//! or names themes follows the version that is current.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{topics, Event};

/// The one key of `taxonomy.v1`. The topic is compacted with a single partition, so a
/// consumer that reads it from its start ends with the current version, and versions
/// arrive in the order they were applied.
pub const TAXONOMY_KEY: &str = "taxonomy";

/// A taxonomy version that became the current one (trends applies versions and
/// publishes them; categorise classifies with the newest it has read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxonomyApplied {
    /// E.g. `"2026.12-r3"`; names the version in every categorised event it classifies
    /// (`classifier_version` = `lexicon-2+taxonomy-<version>`).
    pub version: String,
    /// The version this one was derived from (`None` for the built-in file's).
    #[serde(default)]
    pub based_on: Option<String>,
    /// The whole taxonomy as `closeloop_classify::Taxonomy` serialises it. Consumers
    /// validate it again before they use it.
    pub taxonomy: serde_json::Value,
    /// What changed, for people ("added theme app_release").
    #[serde(default)]
    pub change: String,
    pub applied_at: DateTime<Utc>,
    /// Feedback received in this period is classified again with this version, once,
    /// by one categorise instance, so trends sees a new theme's history.
    #[serde(default)]
    pub reclassify: Option<Period>,
}

/// A half-open period of time, `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.since <= at && at < self.until
    }
}

impl Event for TaxonomyApplied {
    const SCHEMA: &'static str = "taxonomy.applied.v1";
    const TOPIC: &'static str = topics::TAXONOMY;
    fn key(&self) -> &str {
        TAXONOMY_KEY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn round_trips_and_keeps_one_key() {
        let since = Utc::now();
        let applied = TaxonomyApplied {
            version: "2026.12-r2".into(),
            based_on: Some("2026.12".into()),
            taxonomy: serde_json::json!({"version": "2026.12-r2", "themes": []}),
            change: "added theme app_release".into(),
            applied_at: since,
            reclassify: Some(Period {
                since,
                until: since + chrono::Duration::hours(1),
            }),
        };
        assert_eq!(applied.key(), TAXONOMY_KEY);
        let json = round_trip(applied);
        assert_eq!(json["version"], "2026.12-r2");
        let period = Period {
            since,
            until: since + chrono::Duration::seconds(1),
        };
        assert!(period.contains(since));
        assert!(!period.contains(period.until));
    }
}

//! The theme taxonomy: which themes exist, what they are called in each
//! language, and which keywords and phrases point at them.
//!
//! The taxonomy is data, not code: it ships as `taxonomy.toml` (compiled in
//! via [`Taxonomy::builtin`]) and can be replaced at start-up with
//! [`Taxonomy::load`]. It is validated once when parsed, so the classifier
//! never sees a theme without names or with a malformed id.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Language;

const BUILTIN: &str = include_str!("../taxonomy.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taxonomy {
    pub version: String,
    pub themes: Vec<ThemeDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThemeDef {
    /// Stable id, `[a-z0-9_]+`.
    pub id: String,
    /// Display name per language code (`"en"`, `"de"`).
    pub names: BTreeMap<String, String>,
    /// Single words per language code. Multi-word entries act as phrases.
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
    /// Multi-word phrases per language code; `*` matches any one word.
    #[serde(default)]
    pub phrases: BTreeMap<String, Vec<String>>,
    /// Words that point at the theme only when nothing more specific is
    /// mentioned ("friendly" is staff, unless the text is about support).
    /// A theme found by weak words alone is dropped when another theme was
    /// found by a keyword or phrase.
    #[serde(default)]
    pub weak: BTreeMap<String, Vec<String>>,
    /// A broader theme this one refines (delivery time refines delivery):
    /// the parent's weak-only hits in a sentence that names this theme are
    /// dropped, so "the delivery took three weeks" is about delivery time.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("taxonomy is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("taxonomy version must not be empty")]
    EmptyVersion,
    #[error("taxonomy has no themes")]
    Empty,
    #[error("invalid theme id {0:?}: ids must match [a-z0-9_]+")]
    InvalidId(String),
    #[error("duplicate theme id {0:?}")]
    DuplicateId(String),
    #[error("theme {id:?} names parent {parent:?}, which is not another theme")]
    UnknownParent { id: String, parent: String },
    #[error("theme {0:?} is its own ancestor: the parents form a cycle")]
    ParentCycle(String),
    #[error("theme {id:?} has no {lang:?} name")]
    MissingName { id: String, lang: &'static str },
    #[error("taxonomy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("theme {id:?} has cues for language {lang:?}: only \"en\" and \"de\" are classified")]
    UnknownLanguage { id: String, lang: String },
    #[error("theme {id:?} has an empty cue in {field}.{lang}")]
    EmptyCue {
        id: String,
        field: &'static str,
        lang: String,
    },
    #[error("theme {0:?} has no keyword or phrase in any language, so it could never match")]
    NoCues(String),
    #[error("there is no theme {0:?}")]
    UnknownTheme(String),
    #[error("theme {id:?} is the parent of {child:?}: retire or re-parent that one first")]
    HasChildren { id: String, child: String },
}

impl Taxonomy {
    /// The taxonomy compiled into the binary (`crates/classify/taxonomy.toml`).
    pub fn builtin() -> Taxonomy {
        Taxonomy::from_toml_str(BUILTIN).expect("built-in taxonomy.toml is valid (tested)")
    }

    pub fn from_toml_str(s: &str) -> Result<Taxonomy, TaxonomyError> {
        let taxonomy: Taxonomy = toml::from_str(s)?;
        taxonomy.validate()?;
        Ok(taxonomy)
    }

    /// A taxonomy as it travels in a `taxonomy.v1` event, validated like a file.
    pub fn from_json(value: serde_json::Value) -> Result<Taxonomy, TaxonomyError> {
        let taxonomy: Taxonomy = serde_json::from_value(value)?;
        taxonomy.validate()?;
        Ok(taxonomy)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// This taxonomy as `version`, with `theme` added. A theme added at run time must
    /// have cues (a file's may not, for a theme found by a parent's words only).
    pub fn with_theme_added(
        &self,
        version: &str,
        theme: ThemeDef,
    ) -> Result<Taxonomy, TaxonomyError> {
        theme.check_cues()?;
        let mut next = self.renamed(version);
        next.themes.push(theme);
        next.validate()?;
        Ok(next)
    }

    /// This taxonomy as `version`, with the theme of `theme.id` replaced by `theme`.
    pub fn with_theme_replaced(
        &self,
        version: &str,
        theme: ThemeDef,
    ) -> Result<Taxonomy, TaxonomyError> {
        theme.check_cues()?;
        let mut next = self.renamed(version);
        let slot = next
            .themes
            .iter_mut()
            .find(|t| t.id == theme.id)
            .ok_or_else(|| TaxonomyError::UnknownTheme(theme.id.clone()))?;
        *slot = theme;
        next.validate()?;
        Ok(next)
    }

    /// This taxonomy as `version`, without theme `id`. Its mentions so far stay what
    /// they were; no feedback is classified as it any more.
    pub fn with_theme_retired(&self, version: &str, id: &str) -> Result<Taxonomy, TaxonomyError> {
        if self.theme(id).is_none() {
            return Err(TaxonomyError::UnknownTheme(id.to_owned()));
        }
        if let Some(child) = self.themes.iter().find(|t| t.parent.as_deref() == Some(id)) {
            return Err(TaxonomyError::HasChildren {
                id: id.to_owned(),
                child: child.id.clone(),
            });
        }
        let mut next = self.renamed(version);
        next.themes.retain(|t| t.id != id);
        next.validate()?;
        Ok(next)
    }

    fn renamed(&self, version: &str) -> Taxonomy {
        Taxonomy {
            version: version.to_owned(),
            themes: self.themes.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<Taxonomy, TaxonomyError> {
        let s = std::fs::read_to_string(path).map_err(|source| TaxonomyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Taxonomy::from_toml_str(&s)
    }

    pub fn theme(&self, id: &str) -> Option<&ThemeDef> {
        self.themes.iter().find(|t| t.id == id)
    }

    /// Display name in `lang`, falling back to English, then to the id.
    pub fn theme_name(&self, id: &str, lang: Language) -> String {
        let Some(theme) = self.theme(id) else {
            return id.to_string();
        };
        theme
            .names
            .get(lang.as_str())
            .or_else(|| theme.names.get("en"))
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// The themes on `id`'s line of the hierarchy: its ancestors and its descendants,
    /// not its siblings (a late parcel and a damaged one are different problems, a late
    /// parcel and "delivery" are the same one). Empty for an unknown theme.
    pub fn lineage(&self, id: &str) -> Vec<&str> {
        let mut lineage = self.ancestors(id);
        for theme in &self.themes {
            let mut above = theme.parent.as_deref();
            for _ in 0..self.themes.len() {
                match above {
                    Some(parent) if parent == id => {
                        lineage.push(theme.id.as_str());
                        break;
                    }
                    Some(parent) => above = self.theme(parent).and_then(|t| t.parent.as_deref()),
                    None => break,
                }
            }
        }
        lineage
    }

    /// `id`'s parent, its parent, and so on up to the root.
    pub fn ancestors(&self, id: &str) -> Vec<&str> {
        let parent_of = |theme: &str| self.theme(theme).and_then(|t| t.parent.as_deref());
        let mut ancestors = Vec::new();
        // Validation rejects cycles; the bound keeps a hand-built value from looping.
        let mut ancestor = parent_of(id);
        while let Some(parent) = ancestor.filter(|_| ancestors.len() < self.themes.len()) {
            ancestors.push(parent);
            ancestor = parent_of(parent);
        }
        ancestors
    }

    /// The checks every taxonomy passes, file or run-time version.
    pub fn validate(&self) -> Result<(), TaxonomyError> {
        if self.version.trim().is_empty() {
            return Err(TaxonomyError::EmptyVersion);
        }
        if self.themes.is_empty() {
            return Err(TaxonomyError::Empty);
        }
        let mut seen = HashSet::new();
        for theme in &self.themes {
            let valid = !theme.id.is_empty()
                && theme
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(TaxonomyError::InvalidId(theme.id.clone()));
            }
            if !seen.insert(theme.id.as_str()) {
                return Err(TaxonomyError::DuplicateId(theme.id.clone()));
            }
            if let Some(parent) = &theme.parent {
                if parent == &theme.id || !self.themes.iter().any(|t| &t.id == parent) {
                    return Err(TaxonomyError::UnknownParent {
                        id: theme.id.clone(),
                        parent: parent.clone(),
                    });
                }
            }
            // A cycle would make a theme its own ancestor.
            let mut ancestor = theme.parent.as_deref();
            for _ in 0..self.themes.len() {
                match ancestor {
                    Some(parent) if parent == theme.id => {
                        return Err(TaxonomyError::ParentCycle(theme.id.clone()))
                    }
                    Some(parent) => ancestor = self.theme(parent).and_then(|t| t.parent.as_deref()),
                    None => break,
                }
            }
            theme.check_cue_languages()?;
            for lang in ["en", "de"] {
                let named = theme.names.get(lang).is_some_and(|n| !n.trim().is_empty());
                if !named {
                    return Err(TaxonomyError::MissingName {
                        id: theme.id.clone(),
                        lang,
                    });
                }
            }
        }
        Ok(())
    }
}

impl ThemeDef {
    /// Cues only for the languages the classifier knows, none empty.
    fn check_cue_languages(&self) -> Result<(), TaxonomyError> {
        for (field, cues) in [
            ("keywords", &self.keywords),
            ("phrases", &self.phrases),
            ("weak", &self.weak),
        ] {
            for (lang, terms) in cues {
                if !matches!(lang.as_str(), "en" | "de") {
                    return Err(TaxonomyError::UnknownLanguage {
                        id: self.id.clone(),
                        lang: lang.clone(),
                    });
                }
                if terms.iter().any(|term| term.trim().is_empty()) {
                    return Err(TaxonomyError::EmptyCue {
                        id: self.id.clone(),
                        field,
                        lang: lang.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// At least one keyword or phrase: a theme with none could never be found.
    fn check_cues(&self) -> Result<(), TaxonomyError> {
        let cues = self.keywords.values().chain(self.phrases.values());
        if cues.flatten().all(|term| term.trim().is_empty()) {
            return Err(TaxonomyError::NoCues(self.id.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [&str; 15] = [
        "delivery",
        "delivery_time",
        "price",
        "billing",
        "returns",
        "support",
        "staff",
        "product_quality",
        "availability",
        "usability",
        "performance",
        "account",
        "communication",
        "privacy",
        "packaging",
    ];

    #[test]
    fn builtin_has_the_fifteen_themes_with_names_and_keywords() {
        let t = Taxonomy::builtin();
        assert_eq!(t.version, "2026.12");
        assert_eq!(t.themes.len(), 15);
        for id in IDS {
            let theme = t.theme(id).unwrap_or_else(|| panic!("missing theme {id}"));
            for lang in ["en", "de"] {
                assert!(theme.names.contains_key(lang), "{id} lacks {lang} name");
                let strong = theme.keywords.get(lang).map_or(0, Vec::len);
                let weak = theme.weak.get(lang).map_or(0, Vec::len);
                assert!(strong >= 3, "{id}/{lang} has {strong} keywords");
                assert!(
                    (8..=40).contains(&(strong + weak)),
                    "{id}/{lang} has {strong} + {weak} keywords"
                );
                let p = theme.phrases.get(lang).map_or(0, Vec::len);
                assert!(p >= 2, "{id}/{lang} has {p} phrases");
            }
        }
    }

    #[test]
    fn theme_names_fall_back() {
        let t = Taxonomy::builtin();
        assert_eq!(t.theme_name("delivery_time", Language::De), "Lieferzeit");
        assert_eq!(t.theme_name("delivery_time", Language::En), "Delivery time");
        assert_eq!(
            t.theme_name("delivery_time", Language::Other),
            "Delivery time"
        );
        assert_eq!(t.theme_name("nope", Language::De), "nope");
    }

    fn theme(id: &str) -> String {
        format!("[[themes]]\nid = \"{id}\"\nnames = {{ en = \"A\", de = \"B\" }}\n")
    }

    #[test]
    fn validation_rejects_bad_taxonomies() {
        let ok = format!("version = \"1\"\n{}", theme("a_1"));
        assert!(Taxonomy::from_toml_str(&ok).is_ok());

        let empty = "version = \"1\"\nthemes = []\n";
        assert!(matches!(
            Taxonomy::from_toml_str(empty),
            Err(TaxonomyError::Empty)
        ));

        let dup = format!("version = \"1\"\n{}{}", theme("a"), theme("a"));
        assert!(matches!(
            Taxonomy::from_toml_str(&dup),
            Err(TaxonomyError::DuplicateId(_))
        ));

        let bad = format!("version = \"1\"\n{}", theme("Bad-Id"));
        assert!(matches!(
            Taxonomy::from_toml_str(&bad),
            Err(TaxonomyError::InvalidId(_))
        ));

        let no_de = "version = \"1\"\n[[themes]]\nid = \"a\"\nnames = { en = \"A\" }\n";
        assert!(matches!(
            Taxonomy::from_toml_str(no_de),
            Err(TaxonomyError::MissingName { lang: "de", .. })
        ));

        assert!(matches!(
            Taxonomy::from_toml_str("version = "),
            Err(TaxonomyError::Parse(_))
        ));

        let orphan = format!("version = \"1\"\n{}parent = \"nope\"\n", theme("a"));
        assert!(matches!(
            Taxonomy::from_toml_str(&orphan),
            Err(TaxonomyError::UnknownParent { .. })
        ));

        let cycle = format!(
            "version = \"1\"\n{}parent = \"b\"\n{}parent = \"a\"\n",
            theme("a"),
            theme("b")
        );
        assert!(matches!(
            Taxonomy::from_toml_str(&cycle),
            Err(TaxonomyError::ParentCycle(_))
        ));

        let err = Taxonomy::load(Path::new("/nonexistent/taxonomy.toml")).unwrap_err();
        assert!(matches!(err, TaxonomyError::Io { .. }));
    }

    #[test]
    fn run_time_changes_make_validated_versions() {
        let base = Taxonomy::builtin();
        let mut theme = ThemeDef {
            id: "app_release".into(),
            names: [("en", "App release"), ("de", "App-Version")]
                .map(|(l, n)| (l.to_owned(), n.to_owned()))
                .into(),
            keywords: BTreeMap::new(),
            phrases: BTreeMap::new(),
            weak: BTreeMap::new(),
            parent: Some("usability".into()),
        };
        assert!(matches!(
            base.with_theme_added("r2", theme.clone()),
            Err(TaxonomyError::NoCues(_))
        ));
        theme.keywords.insert("en".into(), vec!["release".into()]);
        let added = base.with_theme_added("r2", theme.clone()).expect("added");
        assert_eq!(added.version, "r2");
        assert_eq!(added.themes.len(), 16);
        assert_eq!(base.themes.len(), 15, "the base is unchanged");
        assert!(matches!(
            added.with_theme_added("r3", theme.clone()),
            Err(TaxonomyError::DuplicateId(_))
        ));

        let mut edited = theme.clone();
        edited.keywords.insert("fr".into(), vec!["version".into()]);
        assert!(matches!(
            added.with_theme_replaced("r3", edited.clone()),
            Err(TaxonomyError::UnknownLanguage { .. })
        ));
        edited.keywords.remove("fr");
        edited
            .phrases
            .insert("de".into(), vec!["neue version".into(), " ".into()]);
        assert!(matches!(
            added.with_theme_replaced("r3", edited.clone()),
            Err(TaxonomyError::EmptyCue {
                field: "phrases",
                ..
            })
        ));
        edited
            .phrases
            .insert("de".into(), vec!["neue version".into()]);
        let replaced = added.with_theme_replaced("r3", edited).expect("replaced");
        assert!(replaced
            .theme("app_release")
            .expect("kept")
            .phrases
            .contains_key("de"));

        assert!(matches!(
            replaced.with_theme_retired("r4", "delivery"),
            Err(TaxonomyError::HasChildren { .. })
        ));
        assert!(matches!(
            replaced.with_theme_retired("r4", "nope"),
            Err(TaxonomyError::UnknownTheme(_))
        ));
        let retired = replaced
            .with_theme_retired("r4", "app_release")
            .expect("retired");
        assert!(retired.theme("app_release").is_none());

        let back = Taxonomy::from_json(retired.to_json()).expect("round trip");
        assert_eq!(back.themes.len(), 15);
        assert!(matches!(
            Taxonomy::from_json(serde_json::json!({"version": "x", "themes": []})),
            Err(TaxonomyError::Empty)
        ));
    }

    #[test]
    fn lineage_is_ancestors_and_descendants_not_siblings() {
        let toml = format!(
            "version = \"1\"\n{}{}parent = \"root\"\n{}parent = \"child\"\n{}parent = \"root\"\n{}",
            theme("root"),
            theme("child"),
            theme("grandchild"),
            theme("sibling"),
            theme("other")
        );
        let taxonomy = Taxonomy::from_toml_str(&toml).expect("valid");
        assert_eq!(taxonomy.lineage("child"), ["root", "grandchild"]);
        assert_eq!(taxonomy.lineage("grandchild"), ["child", "root"]);
        assert_eq!(taxonomy.ancestors("grandchild"), ["child", "root"]);
        assert!(taxonomy.ancestors("root").is_empty());
        assert_eq!(taxonomy.lineage("root"), ["child", "grandchild", "sibling"]);
        assert!(taxonomy.lineage("other").is_empty());
        assert!(taxonomy.lineage("unknown").is_empty());
        let builtin = Taxonomy::builtin();
        assert_eq!(builtin.lineage("delivery_time"), ["delivery"]);
        assert_eq!(builtin.lineage("delivery"), ["delivery_time"]);
    }
}

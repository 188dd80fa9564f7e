//! Rough single-thread throughput of the lexicon classifier, and of cutting texts into
//! emerging-topic phrases (what trends does with every unmatched or negative feedback).
//!
//! ```text
//! cargo run --release -p closeloop-classify --example throughput
//! ```
//!
//! Classifies 200k short EN/DE texts (a rotating set of realistic feedback,
//! some with ratings and locale hints), full results with explanations, and
//! prints texts per second of wall time and per second of this thread's CPU
//! time. On a shared machine the CPU figure is the one-core throughput; the
//! wall figure includes time the thread waited for a core.
//!
//! Then cuts the same texts into phrases ([`PhraseExtractor`]) and prints texts per
//! CPU-second and phrases per text.

use std::hint::black_box;
use std::time::Instant;

use closeloop_classify::{Classifier, Input, Language, LexiconClassifier, PhraseExtractor};

const TEXTS: &[&str] = &[
    "The parcel arrived two days late and the box was damaged.",
    "Great product, but the delivery took three weeks",
    "Kundenservice war super freundlich",
    "Die Lieferzeit war eine Katastrophe",
    "I was charged twice for the same order.",
    "Die App stürzt ständig ab und lädt nicht.",
    "Very happy!!",
    "nicht gut",
    "Still waiting for my refund 😡",
    "Preis-Leistung stimmt, absolut empfehlenswert.",
    "The checkout is confusing and the website is hard to navigate.",
    "Mein Paket ist nie angekommen und der Kundenservice antwortet nicht.",
    "ok",
    "Der Paketzusteller war unfreundlich.",
    "Would not recommend, the invoice was wrong.",
    "Alles bestens, gerne wieder :)",
    "Rücksendung vor 5 Tagen abgeschickt, Erstattung immer noch nicht da.",
    "Customer service never answered my emails.",
    "Die Versandkosten sind viel zu hoch, aber die Qualität stimmt.",
    "Love this jacket ❤️ but the zipper broke after a week",
];

fn main() {
    let started = Instant::now();
    let classifier = LexiconClassifier::default();
    println!("built classifier in {:?}", started.elapsed());

    let hints = [None, Some("de-DE"), Some("en-GB"), None];
    let n = 200_000usize;
    // Warm-up.
    for (i, text) in TEXTS.iter().enumerate() {
        black_box(classifier.classify(&Input {
            text,
            language_hint: hints[i % 4],
            rating: None,
            nps: None,
        }));
    }
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut negative = 0usize;
    for i in 0..n {
        let input = Input {
            text: TEXTS[i % TEXTS.len()],
            language_hint: hints[i % hints.len()],
            rating: if i % 5 == 0 {
                Some((i % 5 + 1) as u8)
            } else {
                None
            },
            nps: None,
        };
        let c = black_box(classifier.classify(&input));
        if c.sentiment.label == closeloop_classify::SentimentLabel::Negative {
            negative += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - cpu_started;
    println!(
        "classified {n} texts in {secs:.3}s wall, {cpu:.3}s CPU: {:.0} texts/s wall, {:.0} texts/s per CPU-second on one core ({negative} negative)",
        n as f64 / secs,
        n as f64 / cpu
    );

    let extractor = PhraseExtractor::new(classifier.taxonomy());
    let languages = [Language::En, Language::De, Language::Other];
    let cpu_started = thread_cpu_seconds();
    let mut phrases = 0usize;
    for i in 0..n {
        let text = TEXTS[i % TEXTS.len()];
        phrases += black_box(extractor.phrases(text, languages[i % languages.len()])).len();
    }
    let cpu = thread_cpu_seconds() - cpu_started;
    println!(
        "cut {n} texts into {:.1} phrases each in {cpu:.3}s CPU: {:.0} texts/s per CPU-second ({:.1} µs a text)",
        phrases as f64 / n as f64,
        n as f64 / cpu,
        cpu / n as f64 * 1e6
    );
}

/// CPU time this thread has used, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

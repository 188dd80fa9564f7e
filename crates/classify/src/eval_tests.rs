//! Behaviour tests for the whole classifier, and a small labelled set of
//! realistic feedback (English and German) that must stay >= 90% right.

use std::sync::OnceLock;

use crate::{Classification, Classifier, Input, Language, LexiconClassifier, SentimentLabel};

use SentimentLabel::{Negative as Neg, Neutral as Neu, Positive as Pos};

fn classifier() -> &'static LexiconClassifier {
    static C: OnceLock<LexiconClassifier> = OnceLock::new();
    C.get_or_init(LexiconClassifier::default)
}

fn run(text: &str) -> Classification {
    classifier().classify(&Input {
        text,
        ..Input::default()
    })
}

fn run_hint(text: &str, hint: &str) -> Classification {
    classifier().classify(&Input {
        text,
        language_hint: Some(hint),
        ..Input::default()
    })
}

fn theme<'c>(c: &'c Classification, id: &str) -> &'c crate::ThemeHit {
    c.themes
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no theme {id} in {c:#?}"))
}

#[test]
fn detects_clear_english_and_german() {
    let c = run("The parcel arrived two days late and the box was damaged.");
    assert_eq!(c.language, Language::En, "{c:#?}");
    assert!(c.language_confidence > 0.6);
    let c = run("Das Paket kam zwei Tage zu spät und der Karton war beschädigt.");
    assert_eq!(c.language, Language::De, "{c:#?}");
    assert!(c.language_confidence > 0.6);
    let c = run("Ich bin mit der Bestellung sehr zufrieden");
    assert_eq!(c.language, Language::De);
}

#[test]
fn short_texts_follow_the_hint() {
    assert_eq!(run_hint("Super!", "de-DE").language, Language::De);
    assert_eq!(run_hint("Super!", "en_GB").language, Language::En);
    assert_eq!(run_hint("Top", "de").language, Language::De);
    let c = run_hint("Merci beaucoup", "fr-FR");
    assert_eq!(c.language, Language::Other);
}

#[test]
fn other_languages_are_flagged() {
    let c = run("Le colis est arrivé en retard et le service client ne répond pas.");
    assert_eq!(c.language, Language::Other, "{c:#?}");
    let c = run("Посылка пришла поздно");
    assert_eq!(c.language, Language::Other, "{c:#?}");
    let c = run("😡");
    assert_eq!(c.language, Language::Other);
}

#[test]
fn negation() {
    assert_eq!(run("not good").sentiment.label, Neg);
    assert_eq!(run("The service was not good").sentiment.label, Neg);
    assert_eq!(run("nicht gut").sentiment.label, Neg);
    assert_eq!(run_hint("nicht gut", "de").sentiment.label, Neg);
    assert_eq!(run("I don't like the new app").sentiment.label, Neg);
    let c = run("Leider ist der Artikel nicht mehr verfügbar");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    assert_eq!(theme(&c, "availability").sentiment, Neg);
    let c = run("Das gefällt mir überhaupt nicht");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    assert!(
        c.explanation.iter().any(|e| e.starts_with("negation")),
        "{c:#?}"
    );
}

#[test]
fn kein_problem_is_not_negative() {
    assert_ne!(run("kein Problem").sentiment.label, Neg);
    assert_ne!(run_hint("Kein Problem, danke", "de").sentiment.label, Neg);
    assert_ne!(run("No problem at all").sentiment.label, Neg);
    assert_ne!(run("Ohne Probleme geliefert").sentiment.label, Neg);
}

#[test]
fn intensifiers_and_exclamations() {
    let plain = run("happy").sentiment.score;
    let c = run("Very happy!!");
    assert_eq!(c.sentiment.label, Pos);
    assert!(
        c.sentiment.score > plain,
        "{} vs {plain}",
        c.sentiment.score
    );
    assert!(
        c.explanation.iter().any(|e| e.contains("intensifier")),
        "{c:#?}"
    );
    assert!(
        c.explanation.iter().any(|e| e.contains("exclamation")),
        "{c:#?}"
    );
    let damped = run("slightly slow").sentiment.score;
    let slow = run("slow").sentiment.score;
    assert!(damped > slow && damped < 0.0);
}

#[test]
fn contrast_makes_the_second_clause_count() {
    let c = run("The app is nice but delivery was terribly late");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    assert_eq!(theme(&c, "delivery_time").sentiment, Neg);
    assert_eq!(theme(&c, "usability").sentiment, Pos);
    assert!(
        c.explanation.iter().any(|e| e.starts_with("contrast")),
        "{c:#?}"
    );

    let c = run("Great product, but the delivery took three weeks");
    assert_eq!(theme(&c, "product_quality").sentiment, Pos, "{c:#?}");
    assert_eq!(theme(&c, "delivery_time").sentiment, Neg, "{c:#?}");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
}

#[test]
fn german_compounds() {
    let c = run("Die Lieferzeit war eine Katastrophe");
    assert_eq!(c.language, Language::De);
    assert_eq!(c.sentiment.label, Neg);
    assert_eq!(theme(&c, "delivery_time").sentiment, Neg);

    let c = run("Der Paketzusteller hat das Paket einfach vor die Tür geworfen");
    assert!(
        theme(&c, "delivery")
            .matched_terms
            .contains(&"paketzusteller".to_string()),
        "{c:#?}"
    );
    let c = run("Die Versandkosten sind viel zu hoch");
    let d = theme(&c, "delivery");
    assert!(d.matched_terms.contains(&"versandkosten".to_string()));
    assert!(c.themes.iter().any(|t| t.id == "price"), "{c:#?}");
    // "war" must not match the stem of the keyword "Ware".
    let c = run("Lieferung war ok, aber die Verpackung war beschädigt");
    assert!(
        c.themes
            .iter()
            .all(|t| !t.matched_terms.contains(&"war".to_string())),
        "{c:#?}"
    );
    let c = run("Kundendienstmitarbeiter war unfreundlich");
    assert_eq!(theme(&c, "support").sentiment, Neg, "{c:#?}");
    assert_eq!(theme(&c, "staff").sentiment, Neg, "{c:#?}");
}

#[test]
fn support_praise() {
    let c = run("Kundenservice war super freundlich");
    assert_eq!(c.sentiment.label, Pos, "{c:#?}");
    assert_eq!(theme(&c, "support").sentiment, Pos, "{c:#?}");
}

#[test]
fn folded_spelling_still_matches() {
    let c = run("ueberhaupt nicht zufrieden");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    let c = run("Überhaupt nicht zufrieden mit der Rücksendung");
    assert_eq!(c.sentiment.label, Neg);
    assert!(c.themes.iter().any(|t| t.id == "returns"));
    let c = run("Ruecksendung ging schnell");
    assert!(c.themes.iter().any(|t| t.id == "returns"), "{c:#?}");
}

#[test]
fn rating_is_fused() {
    let text = "I ordered a jacket last week.";
    let plain = run(text);
    assert_eq!(plain.sentiment.label, Neu, "{plain:#?}");
    let c = classifier().classify(&Input {
        text,
        rating: Some(1),
        ..Input::default()
    });
    assert_eq!(c.sentiment.label, Neg);
    assert!(c.sentiment.score < -0.5);
    assert!(
        c.explanation.iter().any(|e| e.contains("rating 1/5 fused")),
        "{c:#?}"
    );
    let c = classifier().classify(&Input {
        text,
        nps: Some(10),
        ..Input::default()
    });
    assert_eq!(c.sentiment.label, Pos);
    let c = classifier().classify(&Input {
        text,
        rating: Some(9),
        ..Input::default()
    });
    assert_eq!(c.sentiment.label, Neu);
    assert!(c.explanation.iter().any(|e| e.contains("ignored")));
}

#[test]
fn emoji_and_emoticons() {
    assert_eq!(run("😡").sentiment.label, Neg);
    assert_eq!(run("Lieferung 😡😡").sentiment.label, Neg);
    assert_eq!(run("thanks :)").sentiment.label, Pos);
    assert_eq!(run("👍🏻").sentiment.label, Pos);
    assert_eq!(run("meh :(").sentiment.label, Neg);
}

#[test]
fn scores_stay_in_range_and_empty_text_is_neutral() {
    let c = run("");
    assert_eq!(c.sentiment.label, Neu);
    assert!(c.themes.is_empty());
    let c = run("TERRIBLE TERRIBLE TERRIBLE!!!!!!!!! worst worst worst awful scam 😡😡😡😡");
    assert!((-1.0..=1.0).contains(&c.sentiment.score));
    assert!((0.0..=1.0).contains(&c.sentiment.confidence));
    for t in &c.themes {
        assert!((0.0..=1.0).contains(&t.score));
    }
}

#[test]
fn explanation_names_the_deciding_terms() {
    let c = run("Die Lieferung war nicht gut");
    let joined = c.explanation.join("\n");
    assert!(joined.contains("negation: 'nicht gut'"), "{joined}");
    assert!(joined.contains("theme delivery"), "{joined}");
    assert!(joined.starts_with("language: de"), "{joined}");
}

/// (text, expected sentiment, a theme that must be found)
const LABELLED: &[(&str, SentimentLabel, &str)] = &[
    // English
    (
        "My parcel never arrived and nobody answers my emails.",
        Neg,
        "delivery",
    ),
    (
        "Delivery was super fast, arrived the next day. Thanks!",
        Pos,
        "delivery_time",
    ),
    ("I was charged twice for the same order.", Neg, "billing"),
    (
        "Still waiting for my refund after three weeks.",
        Neg,
        "returns",
    ),
    (
        "The customer service agent was very helpful and friendly.",
        Pos,
        "support",
    ),
    (
        "The staff in the store were rude and unhelpful.",
        Neg,
        "staff",
    ),
    (
        "The product broke after two days, really poor quality.",
        Neg,
        "product_quality",
    ),
    (
        "Everything I want is always out of stock.",
        Neg,
        "availability",
    ),
    (
        "The checkout is confusing and the website is hard to navigate.",
        Neg,
        "usability",
    ),
    (
        "The app keeps crashing since the last update.",
        Neg,
        "performance",
    ),
    (
        "I can't log in, the password reset does not work.",
        Neg,
        "account",
    ),
    (
        "No updates on my order, nobody informed me about the delay.",
        Neg,
        "communication",
    ),
    (
        "Why did you share my personal data with third parties?",
        Neg,
        "privacy",
    ),
    (
        "Way too much plastic in the packaging for a tiny item.",
        Neg,
        "packaging",
    ),
    ("Great value for money, I would buy again.", Pos, "price"),
    ("Prices went up again, far too expensive now.", Neg, "price"),
    (
        "The courier was friendly and the package arrived on time.",
        Pos,
        "delivery",
    ),
    (
        "Returning the item was easy and the refund came quickly.",
        Pos,
        "returns",
    ),
    (
        "Would not recommend, the invoice was wrong and support ignored me.",
        Neg,
        "billing",
    ),
    (
        "The new app design is beautiful and intuitive.",
        Pos,
        "usability",
    ),
    // German
    (
        "Mein Paket ist nie angekommen und der Kundenservice antwortet nicht.",
        Neg,
        "delivery",
    ),
    (
        "Die Lieferung kam pünktlich, alles bestens!",
        Pos,
        "delivery",
    ),
    (
        "Mir wurde der Betrag doppelt abgebucht, bitte um Erstattung.",
        Neg,
        "billing",
    ),
    (
        "Die Rücksendung war problemlos und das Geld kam schnell zurück.",
        Pos,
        "returns",
    ),
    (
        "Die Hotline ist nie erreichbar, man hängt ewig in der Warteschleife.",
        Neg,
        "support",
    ),
    (
        "Die Mitarbeiterin war sehr freundlich und kompetent.",
        Pos,
        "staff",
    ),
    (
        "Das Produkt war schon nach einer Woche kaputt.",
        Neg,
        "product_quality",
    ),
    (
        "Der Artikel ist seit Wochen ausverkauft.",
        Neg,
        "availability",
    ),
    (
        "Die Webseite ist total unübersichtlich, die Bedienung umständlich.",
        Neg,
        "usability",
    ),
    (
        "Die App stürzt ständig ab und lädt nicht.",
        Neg,
        "performance",
    ),
    (
        "Ich kann mich nicht anmelden, mein Konto ist gesperrt.",
        Neg,
        "account",
    ),
    (
        "Ich wurde überhaupt nicht über die Verspätung informiert.",
        Neg,
        "communication",
    ),
    (
        "Was passiert mit meinen Daten? Der Datenschutz ist mir wichtig.",
        Neu,
        "privacy",
    ),
    (
        "Viel zu viel Plastik in der Verpackung, das muss nicht sein.",
        Neg,
        "packaging",
    ),
    (
        "Preis-Leistung stimmt, absolut empfehlenswert.",
        Pos,
        "price",
    ),
    (
        "Die Lieferzeit von drei Wochen ist eine Zumutung.",
        Neg,
        "delivery_time",
    ),
    (
        "Qualität ist gut, aber der Versand dauerte ewig.",
        Neg,
        "delivery",
    ),
    (
        "Tolles Produkt, sehr hochwertig verarbeitet.",
        Pos,
        "product_quality",
    ),
    (
        "Der Zusteller war unfreundlich und hat das Paket einfach abgestellt.",
        Neg,
        "delivery",
    ),
    (
        "Nie wieder bestelle ich hier, die Rechnung stimmt nicht.",
        Neg,
        "billing",
    ),
];

#[test]
fn labelled_feedback_is_at_least_90_percent_right() {
    let mut right = 0;
    let mut failures = Vec::new();
    for &(text, label, theme_id) in LABELLED {
        let c = run(text);
        let ok = c.sentiment.label == label && c.themes.iter().any(|t| t.id == theme_id);
        if ok {
            right += 1;
        } else {
            let themes: Vec<&str> = c.themes.iter().map(|t| t.id.as_str()).collect();
            failures.push(format!(
                "{text:?}: got {:?} {themes:?}, want {label:?} {theme_id}\n    {}",
                c.sentiment.label,
                c.explanation.join(" | ")
            ));
        }
    }
    let accuracy = right as f64 / LABELLED.len() as f64;
    eprintln!(
        "labelled accuracy {right}/{} = {accuracy:.3}",
        LABELLED.len()
    );
    for f in &failures {
        eprintln!("MISS {f}");
    }
    assert!(LABELLED.len() >= 40);
    assert!(
        accuracy >= 0.9,
        "accuracy {accuracy:.3}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn returns_complaint_is_returns_not_delivery_time() {
    // A misclassification seen in the demo: the refund is what is late.
    let c = run("Rücksendung vor 5 Tagen abgeschickt, Erstattung immer noch nicht da.");
    assert_eq!(c.language, Language::De);
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    let ids: Vec<&str> = c.themes.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["returns"], "{c:#?}");
}

#[test]
fn negated_expectations_read_as_complaints() {
    let c = run("Customer service never answered my emails.");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    assert!(
        c.explanation.iter().any(|e| e.starts_with("complaint")),
        "{c:#?}"
    );
    let c = run("Ich komme nicht in mein Konto.");
    assert_eq!(c.sentiment.label, Neg, "{c:#?}");
    // A negation that is itself positive stays positive.
    assert_eq!(run("No complaints at all.").sentiment.label, Pos);
}

#[test]
fn weak_cues_give_way_to_specific_themes() {
    let c = run("The staff in the store were rude and unhelpful.");
    let ids: Vec<&str> = c.themes.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["staff"], "{c:#?}");
    assert!(
        c.explanation.iter().any(|e| e.contains("dropped")),
        "{c:#?}"
    );
    // Alone, a weak cue still names its theme.
    let c = run("Very happy with the shipping.");
    assert!(c.themes.iter().any(|t| t.id == "delivery"), "{c:#?}");
}

/// The committed labelled sets (written for this project) must stay at the
/// level measured when the rules were tuned on them; `closeloop-lab eval
/// classify` prints the full tables.
#[test]
fn own_labelled_sets_hold_their_level() {
    for lang in [Language::En, Language::De] {
        let rows = crate::labelled::builtin(lang).unwrap();
        assert!(rows.len() >= 300, "{lang:?}: only {} texts", rows.len());
        let (mut right, mut tp, mut fp, mut fn_) = (0, 0, 0, 0);
        for r in &rows {
            let c = classifier().classify(&Input {
                text: &r.text,
                language_hint: Some(lang.as_str()),
                rating: r.rating,
                nps: None,
            });
            if c.sentiment.label == r.sentiment {
                right += 1;
            }
            for t in &c.themes {
                if r.themes.contains(&t.id) {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
            fn_ += r
                .themes
                .iter()
                .filter(|g| !c.themes.iter().any(|t| &t.id == *g))
                .count();
        }
        let accuracy = f64::from(right) / rows.len() as f64;
        let precision = f64::from(tp) / f64::from(tp + fp);
        let recall = f64::from(tp) / (f64::from(tp) + fn_ as f64);
        eprintln!("{lang:?}: sentiment accuracy {accuracy:.3}, theme precision {precision:.3}, recall {recall:.3}");
        // Floors a little under the measured level (en 0.79 / 0.85 / 0.86,
        // de 0.78 / 0.84 / 0.83), so a regression fails the build.
        assert!(
            accuracy >= 0.77,
            "{lang:?} sentiment accuracy {accuracy:.3}"
        );
        assert!(precision >= 0.82, "{lang:?} theme precision {precision:.3}");
        assert!(recall >= 0.80, "{lang:?} theme recall {recall:.3}");
    }
}

#[test]
fn labelled_lines_parse_strictly() {
    let rows = crate::labelled::parse_jsonl(
        "// comment\n{\"text\": \"ok\", \"sentiment\": \"neutral\"}\n\n{\"text\": \"bad\", \"sentiment\": \"negative\", \"themes\": [\"support\"], \"rating\": 1}\n",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].rating, Some(1));
    let err =
        crate::labelled::parse_jsonl("{\"text\": \"x\", \"sentiment\": \"meh\"}").unwrap_err();
    assert_eq!(err.line, 1);
    assert!(crate::labelled::parse_jsonl(
        "{\"text\": \"x\", \"sentiment\": \"neutral\", \"typo\": 1}"
    )
    .is_err());
}

//! The "you said, we did" message templates: one TOML file per language, English and
//! German built in (`templates/*.toml`, embedded at compile time), each overridable —
//! and further languages addable — by files in a directory (`NOTIFY_TEMPLATES_DIR`).
//!
//! A template is plain text with `{placeholders}`, compiled once at start-up so a typo
//! (unknown placeholder, unclosed brace, missing field) stops notify with a clear error
//! instead of surfacing in a customer's inbox. Substitution is a single pass over the
//! compiled pieces, so customer text that happens to contain `{we_did}` stays text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::message::clean;

/// The language every customer falls back to; always present.
pub const FALLBACK_LANGUAGE: &str = "en";

const BUILTIN: &[(&str, &str)] = &[
    ("en", include_str!("../templates/en.toml")),
    ("de", include_str!("../templates/de.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("could not read the templates directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read template {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("template {file}: {message}")]
    Invalid { file: String, message: String },
}

/// A placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Day,
    Month,
    Year,
    Date,
    Theme,
    YouSaid,
    Quote,
    WeDid,
    Text,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "day" => Field::Day,
            "month" => Field::Month,
            "year" => Field::Year,
            "date" => Field::Date,
            "theme" => Field::Theme,
            "you_said" => Field::YouSaid,
            "quote" => Field::Quote,
            "we_did" => Field::WeDid,
            "text" => Field::Text,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Field(Field),
}

/// One compiled template string.
#[derive(Debug, Clone, PartialEq)]
struct Compiled(Vec<Piece>);

impl Compiled {
    /// Compiles `source`, accepting only the placeholders in `allowed`.
    fn parse(source: &str, allowed: &[Field]) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed placeholder {{{name}")),
                        }
                    }
                    let field = Field::parse(name.trim())
                        .filter(|field| allowed.contains(field))
                        .ok_or_else(|| {
                            format!(
                                "unknown placeholder {{{name}}} (allowed here: {})",
                                allowed
                                    .iter()
                                    .map(|f| format!("{{{}}}", field_name(*f)))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            )
                        })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '}' => return Err("a lone `}` (write `}}` for a literal brace)".to_owned()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Compiled(pieces))
    }

    /// Fills the placeholders with `value(field)`. A literal `.` right after a value
    /// that already ends a sentence is dropped: `"…arrive."` + `. We did` must read
    /// `"…arrive." We did`, not `"…arrive.". We did`.
    fn render(&self, value: impl Fn(Field) -> String) -> String {
        let mut out = String::new();
        let mut after_sentence_end = false;
        for piece in &self.0 {
            match piece {
                Piece::Field(field) => {
                    let text = value(*field);
                    after_sentence_end = ends_sentence(&text);
                    out.push_str(&text);
                }
                Piece::Literal(literal) => {
                    let literal = match literal.strip_prefix('.') {
                        Some(rest) if after_sentence_end && !rest.starts_with('.') => rest,
                        _ => literal.as_str(),
                    };
                    out.push_str(literal);
                    after_sentence_end = false;
                }
            }
        }
        out
    }
}

fn field_name(field: Field) -> &'static str {
    match field {
        Field::Day => "day",
        Field::Month => "month",
        Field::Year => "year",
        Field::Date => "date",
        Field::Theme => "theme",
        Field::YouSaid => "you_said",
        Field::Quote => "quote",
        Field::WeDid => "we_did",
        Field::Text => "text",
    }
}

/// Closing quotes and brackets that may follow a sentence mark (`."`, `.“`, `!)`).
const CLOSERS: &[char] = &['"', '\'', '“', '”', '‘', '’', '«', '»', '‹', '›', ')', ']'];

/// Whether `text` ends with a sentence mark, possibly inside closing quotes.
fn ends_sentence(text: &str) -> bool {
    // French quotes put a space before the closer: `« En retard. »`.
    let text = text.trim_end_matches(|c: char| c.is_whitespace() || CLOSERS.contains(&c));
    text.ends_with(['.', '!', '?', '…'])
}

/// Ends `text` with a sentence mark, so whatever the operator typed, the template's
/// next sentence reads right.
pub fn sentence(text: &str) -> String {
    let text = clean(text);
    if text.is_empty() || ends_sentence(&text) {
        text
    } else {
        format!("{text}.")
    }
}

/// A language's template file as written: every field optional, so an override file
/// may change just the subject; missing fields come from the built-in template.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    date: Option<String>,
    months: Option<Vec<String>>,
    quote: Option<String>,
    body: Option<String>,
    subject: Option<String>,
    email: Option<String>,
    combined_subject: Option<String>,
}

impl TemplateFile {
    fn parse(file: &str, text: &str) -> Result<Self, TemplateError> {
        toml::from_str(text).map_err(|error| TemplateError::Invalid {
            file: file.to_owned(),
            message: error.to_string(),
        })
    }

    /// Fields of `self`, else of `base`.
    fn over(self, base: &TemplateFile) -> TemplateFile {
        TemplateFile {
            date: self.date.or_else(|| base.date.clone()),
            months: self.months.or_else(|| base.months.clone()),
            quote: self.quote.or_else(|| base.quote.clone()),
            body: self.body.or_else(|| base.body.clone()),
            subject: self.subject.or_else(|| base.subject.clone()),
            email: self.email.or_else(|| base.email.clone()),
            combined_subject: self
                .combined_subject
                .or_else(|| base.combined_subject.clone()),
        }
    }
}

/// One language's compiled templates.
#[derive(Debug, Clone)]
struct Template {
    date: Compiled,
    months: Vec<String>,
    quote: Compiled,
    body: Compiled,
    subject: Compiled,
    email: Compiled,
    /// Optional, so language files written before combined messages existed still
    /// load; without it a combined message takes the English subject.
    combined_subject: Option<Compiled>,
}

impl Template {
    fn compile(file: &str, source: TemplateFile) -> Result<Self, TemplateError> {
        let invalid = |message: String| TemplateError::Invalid {
            file: file.to_owned(),
            message,
        };
        let field = |name: &str, value: Option<String>, allowed: &[Field]| {
            let value = value.ok_or_else(|| invalid(format!("`{name}` is missing")))?;
            Compiled::parse(&value, allowed)
                .map_err(|message| invalid(format!("`{name}`: {message}")))
        };
        use Field::*;
        let months = source
            .months
            .ok_or_else(|| invalid("`months` is missing".to_owned()))?;
        if months.len() != 12 {
            return Err(invalid(format!(
                "`months` must name 12 months, not {}",
                months.len()
            )));
        }
        Ok(Template {
            date: field("date", source.date, &[Day, Month, Year])?,
            months,
            quote: field("quote", source.quote, &[YouSaid])?,
            body: field("body", source.body, &[Date, Theme, YouSaid, Quote, WeDid])?,
            subject: field("subject", source.subject, &[Date, Theme])?,
            email: field("email", source.email, &[Text, Date, Theme])?,
            combined_subject: match source.combined_subject {
                Some(value) => Some(field("combined_subject", Some(value), &[])?),
                None => None,
            },
        })
    }
}

/// What goes into one message.
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    /// When the customer told us (the mention's event time).
    pub told_at: DateTime<Utc>,
    pub theme_name: &'a str,
    /// What they said (already an excerpt; cleaned again here).
    pub you_said: &'a str,
    /// What was done, in the message's language.
    pub we_did: &'a str,
}

/// A message, rendered for every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub language: String,
    /// One paragraph: the webhook's `text`.
    pub text: String,
    pub subject: String,
    /// The e-mail's plain-text part.
    pub email_text: String,
    /// The e-mail's HTML part: the plain text, HTML-escaped, in paragraphs.
    pub email_html: String,
}

/// Every language's templates; English is always there.
#[derive(Debug, Clone)]
pub struct Templates {
    by_language: BTreeMap<String, Template>,
    /// English, also kept apart so falling back needs no lookup that could miss.
    fallback: Template,
}

impl Templates {
    /// The built-in English and German templates.
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::load(None)
    }

    /// The built-in templates, with the `*.toml` files of `dir` (if given) overriding
    /// them field by field or adding languages.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut files: BTreeMap<String, (String, TemplateFile)> = BTreeMap::new();
        for (language, text) in BUILTIN {
            let name = format!("built-in {language}.toml");
            let file = TemplateFile::parse(&name, text)?;
            files.insert((*language).to_owned(), (name, file));
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Dir {
                dir: dir.to_owned(),
                source,
            })?;
            let mut paths = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| TemplateError::Dir {
                    dir: dir.to_owned(),
                    source,
                })?;
                paths.push(entry.path());
            }
            paths.sort();
            for path in paths {
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue; // READMEs, backups: not templates
                }
                let name = path.display().to_string();
                let language = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .filter(|stem| is_language_code(stem))
                    .ok_or_else(|| TemplateError::Invalid {
                        file: name.clone(),
                        message: "the file name must be a language code such as en.toml or de.toml"
                            .to_owned(),
                    })?
                    .to_owned();
                let text =
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        file: path.clone(),
                        source,
                    })?;
                let file = TemplateFile::parse(&name, &text)?;
                let merged = match files.get(&language) {
                    Some((_, builtin)) => file.over(builtin),
                    None => file,
                };
                files.insert(language, (name, merged));
            }
        }
        let mut by_language = BTreeMap::new();
        for (language, (name, file)) in files {
            by_language.insert(language, Template::compile(&name, file)?);
        }
        let fallback =
            by_language
                .get(FALLBACK_LANGUAGE)
                .cloned()
                .ok_or_else(|| TemplateError::Invalid {
                    file: format!("{FALLBACK_LANGUAGE}.toml"),
                    message: "the English template is missing".to_owned(),
                })?;
        Ok(Templates {
            by_language,
            fallback,
        })
    }

    /// The languages there are templates for.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.by_language.keys().map(String::as_str)
    }

    /// The first of `preferred` there is a template for, else English.
    pub fn pick<'a>(&'a self, preferred: &[&str]) -> &'a str {
        preferred
            .iter()
            .find_map(|language| self.by_language.get_key_value(*language))
            .map(|(language, _)| language.as_str())
            .unwrap_or(FALLBACK_LANGUAGE)
    }

    /// The message in `language` (English if there is no template for it).
    pub fn render(&self, language: &str, parts: &Parts<'_>) -> Rendered {
        let (language, template) = match self.by_language.get_key_value(language) {
            Some((language, template)) => (language.as_str(), template),
            None => (FALLBACK_LANGUAGE, &self.fallback),
        };
        let theme = clean(parts.theme_name);
        let you_said = clean(parts.you_said);
        let we_did = sentence(parts.we_did);
        let told_at = parts.told_at;
        let date = template.date.render(|field| match field {
            Field::Day => told_at.day().to_string(),
            Field::Year => told_at.year().to_string(),
            Field::Month => template
                .months
                .get(told_at.month0() as usize)
                .map(|month| clean(month))
                .unwrap_or_default(),
            _ => String::new(),
        });
        let quote = if you_said.is_empty() {
            String::new()
        } else {
            template.quote.render(|field| match field {
                Field::YouSaid => you_said.clone(),
                _ => String::new(),
            })
        };
        let value = |field: Field| match field {
            Field::Date => date.clone(),
            Field::Theme => theme.clone(),
            Field::YouSaid => you_said.clone(),
            Field::Quote => quote.clone(),
            Field::WeDid => we_did.clone(),
            _ => String::new(),
        };
        let text = template.body.render(value);
        let subject = template.subject.render(value);
        let email_text = template
            .email
            .render(|field| match field {
                Field::Text => text.clone(),
                other => value(other),
            })
            .trim()
            .to_owned();
        let email_html = html_paragraphs(&email_text);
        Rendered {
            language: language.to_owned(),
            text,
            subject,
            email_text,
            email_html,
        }
    }
}

impl Templates {
    /// One message standing for several (the frequency cap's combined message): their
    /// bodies, one paragraph each, under `combined_subject`, in `language`.
    pub fn render_combined(&self, language: &str, bodies: &[String]) -> Rendered {
        let (language, template) = match self.by_language.get_key_value(language) {
            Some((language, template)) => (language.as_str(), template),
            None => (FALLBACK_LANGUAGE, &self.fallback),
        };
        let text = bodies
            .iter()
            .map(|body| clean(body))
            .filter(|body| !body.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        let email_text = template
            .email
            .render(|field| match field {
                Field::Text => text.clone(),
                _ => String::new(),
            })
            .trim()
            .to_owned();
        Rendered {
            language: language.to_owned(),
            subject: template
                .combined_subject
                .as_ref()
                .or(self.fallback.combined_subject.as_ref())
                .map(|subject| subject.render(|_| String::new()))
                .unwrap_or_default(),
            email_html: html_paragraphs(&email_text),
            email_text,
            text,
        }
    }
}

fn is_language_code(text: &str) -> bool {
    (2..=3).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase())
}

pub use closeloop_http::html::escape as html_escape;

/// Plain text as a small HTML document: blank lines separate paragraphs, single
/// newlines become `<br>`, everything escaped.
fn html_paragraphs(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| {
            let lines: Vec<String> = paragraph.lines().map(html_escape).collect();
            format!("<p>{}</p>", lines.join("<br>\n"))
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{}\n</body></html>\n",
        paragraphs.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn told_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, 10, 30, 0).unwrap()
    }

    fn parts<'a>(you_said: &'a str, we_did: &'a str) -> Parts<'a> {
        Parts {
            told_at: told_at(),
            theme_name: "delivery time",
            you_said,
            we_did,
        }
    }

    #[test]
    fn renders_english() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render(
            "en",
            &parts("Parcel took two weeks", "We added a second carrier."),
        );
        assert_eq!(
            rendered.text,
            "On 3 November 2026 you told us about delivery time: \"Parcel took two weeks\". \
             We did: We added a second carrier. Thank you for telling us."
        );
        assert_eq!(
            rendered.subject,
            "You told us about delivery time: here is what we did"
        );
        assert!(rendered.email_text.starts_with("Hello,\n\nOn 3 November"));
        assert!(rendered.email_text.ends_with("Customer Care"));
    }

    #[test]
    fn renders_german_with_german_date_and_quotes() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render(
            "de",
            &Parts {
                told_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
                theme_name: "Lieferzeit",
                you_said: "Lieferung kam zu spät",
                we_did: "Wir haben einen zweiten Versender",
            },
        );
        assert_eq!(
            rendered.text,
            "Am 1. März 2026 haben Sie uns zum Thema Lieferzeit geschrieben: „Lieferung kam zu spät“. \
             Das haben wir getan: Wir haben einen zweiten Versender. Danke, dass Sie uns das gesagt haben."
        );
        assert_eq!(rendered.language, "de");
        assert!(rendered
            .subject
            .starts_with("Ihre Rückmeldung zum Thema Lieferzeit"));
        assert!(rendered.email_text.starts_with("Guten Tag,"));
    }

    #[test]
    fn a_quote_ending_a_sentence_gets_no_second_full_stop() {
        let templates = Templates::builtin().unwrap();
        let en = templates.render("en", &parts("It broke my phone case.", "Fixed"));
        assert!(
            en.text
                .contains("\"It broke my phone case.\" We did: Fixed. Thank"),
            "{}",
            en.text
        );
        let cut = templates.render("en", &parts("So slow that I gave up…", "Fixed!"));
        assert!(
            cut.text
                .contains("\"So slow that I gave up…\" We did: Fixed! Thank"),
            "{}",
            cut.text
        );
        let de = templates.render("de", &parts("Wo bleibt mein Paket?", "Erledigt"));
        assert!(
            de.text
                .contains("„Wo bleibt mein Paket?“ Das haben wir getan: Erledigt. Danke"),
            "{}",
            de.text
        );
        for text in [&en.text, &cut.text, &de.text] {
            assert!(!text.contains(".\"."), "{text}");
            assert!(!text.contains("“."), "{text}");
        }
    }

    #[test]
    fn unknown_languages_fall_back_to_english() {
        let templates = Templates::builtin().unwrap();
        let french = templates.render("fr", &parts("y", "z."));
        assert_eq!(french, templates.render("en", &parts("y", "z.")));
        assert_eq!(french.language, "en");
        assert_eq!(templates.pick(&["fr", "de"]), "de");
        assert_eq!(templates.pick(&["fr", "other"]), "en");
        assert_eq!(templates.pick(&[]), "en");
    }

    #[test]
    fn quoted_text_loses_control_characters() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render(
            "en",
            &Parts {
                told_at: told_at(),
                theme_name: "app\u{7}",
                you_said: "bad\u{1b}[31m\nreally\tbad",
                we_did: "Fixed\r\nit",
            },
        );
        for text in [&rendered.text, &rendered.subject] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert!(
            rendered.text.contains("about app: \"bad[31m really bad\""),
            "{}",
            rendered.text
        );
        assert!(
            rendered.text.contains("We did: Fixed it. Thank"),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn html_part_escapes_what_is_quoted() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render(
            "en",
            &parts("<script>alert('x')</script> & \"more\"", "Done"),
        );
        let html = &rendered.email_html;
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"),
            "{html}"
        );
        assert!(html.contains("<p>Hello,</p>"), "{html}");
        // The plain-text part quotes the words as they were (it is not markup).
        assert!(rendered.email_text.contains("<script>alert('x')</script>"));
    }

    #[test]
    fn customer_text_is_not_expanded_as_a_placeholder() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render("en", &parts("what is {we_did}?", "Secret"));
        assert!(
            rendered.text.contains("\"what is {we_did}?\""),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn no_quote_without_an_excerpt() {
        let templates = Templates::builtin().unwrap();
        let rendered = templates.render("en", &parts("  ", "Done!"));
        assert_eq!(
            rendered.text,
            "On 3 November 2026 you told us about delivery time. We did: Done! Thank you for telling us."
        );
    }

    #[test]
    fn directory_overrides_fields_and_adds_languages() {
        let dir = std::env::temp_dir().join(format!("notify-templates-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.toml"), "subject = \"Update on {theme}\"\n").unwrap();
        std::fs::write(
            dir.join("fr.toml"),
            r#"
date = "{day} {month} {year}"
months = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
          "septembre", "octobre", "novembre", "décembre"]
quote = " : « {you_said} »"
body = "Le {date}, vous nous avez parlé de {theme}{quote}. Ce que nous avons fait : {we_did}"
subject = "{theme}"
email = "Bonjour,\n\n{text}"
"#,
        )
        .unwrap();
        std::fs::write(dir.join("README.md"), "not a template").unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        assert_eq!(
            templates.languages().collect::<Vec<_>>(),
            ["de", "en", "fr"]
        );
        let en = templates.render("en", &parts("late", "Fixed"));
        assert_eq!(en.subject, "Update on delivery time");
        assert!(en.text.starts_with("On 3 November 2026"), "body kept");
        let fr = templates.render("fr", &parts("En retard.", "Corrigé"));
        assert_eq!(
            fr.text,
            "Le 3 novembre 2026, vous nous avez parlé de delivery time : « En retard. » Ce que nous avons fait : Corrigé."
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_template_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("notify-templates-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let error_for = |file: &str, text: &str| {
            for entry in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
            std::fs::write(dir.join(file), text).unwrap();
            Templates::load(Some(&dir)).unwrap_err().to_string()
        };
        let error = error_for("en.toml", "body = \"{when} we did {we_did}\"");
        assert!(error.contains("unknown placeholder {when}"), "{error}");
        let error = error_for("en.toml", "body = \"we did {we_did\"");
        assert!(error.contains("unclosed placeholder"), "{error}");
        let error = error_for("en.toml", "subject = \"{you_said}\"");
        assert!(error.contains("`subject`"), "{error}");
        let error = error_for("en.toml", "subjekt = \"typo\"");
        assert!(error.contains("subjekt"), "{error}");
        let error = error_for("fr.toml", "subject = \"{theme}\"");
        assert!(error.contains("is missing"), "{error}");
        let error = error_for("french.toml", "");
        assert!(error.contains("language code"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        let error = Templates::load(Some(&dir)).unwrap_err().to_string();
        assert!(error.contains("templates directory"), "{error}");
    }

    #[test]
    fn literal_braces_survive() {
        let compiled = Compiled::parse("{{x}} {theme}", &[Field::Theme]).unwrap();
        assert_eq!(compiled.render(|_| "t".to_owned()), "{x} t");
        assert!(Compiled::parse("a } b", &[]).is_err());
    }
}

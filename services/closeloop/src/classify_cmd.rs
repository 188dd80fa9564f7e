//! `closeloop classify`: JSON lines in on stdin, one JSON line out per input
//! line on stdout.
//!
//! Input: `{"id": <any JSON>, "text": "...", "lang": "de-DE"?, "rating": 1..5?, "nps": 0..10?}`
//! (other fields are ignored). Output: `id`, `language`, `sentiment`, `score`,
//! `confidence`, `themes` (ids), `theme_hits` (with per-theme sentiment and
//! matched terms) and the `explanation`. A line that is not such an object
//! gets `{"line": n, "id": ..., "error": "..."}` instead, and the stream goes on.
//!
//! It streams: one line is read, classified and written at a time, so memory
//! stays flat however long the input. Output is buffered while more input is
//! already waiting and flushed whenever the reader would block, so it is both
//! fast in a pipe and answers interactively.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use closeloop_classify::{
    Classification, Classifier, Input, LexiconClassifier, Taxonomy, ThemeHit,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Longest accepted input line; longer lines get an error line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// Taxonomy file (TOML) instead of the built-in one.
    #[arg(long, env = "CLASSIFY_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    /// Leave the explanation out of every output line.
    #[arg(long)]
    pub no_explanation: bool,
}

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    id: Value,
    text: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    rating: Option<u8>,
    #[serde(default)]
    nps: Option<u8>,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    id: &'a Value,
    language: &'static str,
    language_confidence: f32,
    sentiment: &'static str,
    score: f32,
    confidence: f32,
    themes: Vec<&'a str>,
    theme_hits: &'a [ThemeHit],
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a [String]>,
}

#[derive(Debug, Serialize)]
struct ErrorLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Value::is_null")]
    id: &'a Value,
    error: String,
}

/// Counts of what a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub classified: u64,
    pub errors: u64,
}

/// Runs until stdin ends; Ctrl-C or SIGTERM (`shutdown`) ends the process at
/// once, as it would for any filter in a pipe.
pub async fn run(args: ClassifyArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let work = tokio::task::spawn_blocking(move || classify_stdin(args));
    tokio::select! {
        done = work => {
            done??;
            Ok(())
        }
        // The blocking reader cannot be interrupted; the runtime would wait for it on drop.
        _ = shutdown.cancelled() => std::process::exit(130),
    }
}

fn classify_stdin(args: ClassifyArgs) -> anyhow::Result<Summary> {
    let taxonomy = match &args.taxonomy {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::builtin(),
    };
    let classifier = LexiconClassifier::new(taxonomy);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let summary = match classify_stream(
        &classifier,
        stdin.lock(),
        std::io::BufWriter::with_capacity(64 * 1024, stdout.lock()),
        !args.no_explanation,
    ) {
        Ok(summary) => summary,
        // The reader went away (`| head`): stop quietly, like any filter.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Summary::default()),
        Err(e) => return Err(e.into()),
    };
    if summary.errors > 0 {
        eprintln!(
            "classified {} lines, {} lines had errors",
            summary.classified, summary.errors
        );
    }
    Ok(summary)
}

/// Classifies every line of `input` into `output`. Only I/O errors on the
/// streams themselves end it; bad lines become error lines.
pub fn classify_stream<R: BufRead, W: Write>(
    classifier: &dyn Classifier,
    mut input: R,
    mut output: W,
    explain: bool,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        // Flush before a read that may block, so interactive use sees answers.
        if input.fill_buf()?.is_empty() {
            output.flush()?;
        }
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let too_long = buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n');
        if too_long {
            // Skip the rest of the line without holding it in memory.
            skip_line(&mut input)?;
            write_error(
                &mut output,
                line_no,
                &Value::Null,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            )?;
            summary.errors += 1;
            continue;
        }
        let line = trim_newline(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line) {
            Ok(parsed) => {
                let result = classifier.classify(&Input {
                    text: &parsed.text,
                    language_hint: parsed.lang.as_deref(),
                    rating: parsed.rating,
                    nps: parsed.nps,
                });
                write_result(&mut output, &parsed.id, &result, explain)?;
                summary.classified += 1;
            }
            Err((id, error)) => {
                write_error(&mut output, line_no, &id, error)?;
                summary.errors += 1;
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

fn trim_newline(buf: &[u8]) -> &[u8] {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

fn skip_line<R: BufRead>(input: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            input.consume(pos + 1);
            return Ok(());
        }
        let len = chunk.len();
        input.consume(len);
    }
}

/// Parses one line; on failure returns the id (when one could be read) and
/// a message that says what is wrong.
fn parse_line(line: &[u8]) -> Result<Line, (Value, String)> {
    let text =
        std::str::from_utf8(line).map_err(|e| (Value::Null, format!("invalid UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| (Value::Null, format!("invalid JSON: {e}")))?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if !value.is_object() {
        return Err((
            id,
            "expected a JSON object like {\"id\": 1, \"text\": \"...\"}".into(),
        ));
    }
    let parsed: Line = serde_json::from_value(value).map_err(|e| (id.clone(), e.to_string()))?;
    if let Some(r) = parsed.rating.filter(|r| !(1..=5).contains(r)) {
        return Err((id, format!("rating {r} is outside 1..=5")));
    }
    if let Some(n) = parsed.nps.filter(|n| *n > 10) {
        return Err((id, format!("nps {n} is outside 0..=10")));
    }
    Ok(parsed)
}

fn write_result<W: Write>(
    out: &mut W,
    id: &Value,
    c: &Classification,
    explain: bool,
) -> std::io::Result<()> {
    let line = Output {
        id,
        language: c.language.as_str(),
        language_confidence: round2(c.language_confidence),
        sentiment: c.sentiment.label.as_str(),
        score: round2(c.sentiment.score),
        confidence: round2(c.sentiment.confidence),
        themes: c.themes.iter().map(|t| t.id.as_str()).collect(),
        theme_hits: &c.themes,
        explanation: explain.then_some(c.explanation.as_slice()),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

fn write_error<W: Write>(out: &mut W, line: u64, id: &Value, error: String) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &ErrorLine { line, id, error })?;
    out.write_all(b"\n")
}

fn round2(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_lines(input: &[u8]) -> (Vec<Value>, Summary) {
        let classifier = LexiconClassifier::default();
        let mut out = Vec::new();
        let summary = classify_stream(&classifier, input, &mut out, true).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, summary)
    }

    #[test]
    fn classifies_each_line_and_keeps_the_id() {
        let input = concat!(
            r#"{"id": "a-1", "text": "Rücksendung vor 5 Tagen abgeschickt, Erstattung immer noch nicht da."}"#,
            "\n",
            r#"{"id": 2, "text": "Great product, fast delivery!", "lang": "en-GB", "rating": 5}"#,
            "\r\n",
            "\n",
            r#"{"id": 3, "text": "ok", "extra": {"ignored": true}}"#,
        );
        let (lines, summary) = run_lines(input.as_bytes());
        assert_eq!(
            summary,
            Summary {
                classified: 3,
                errors: 0
            }
        );
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["id"], "a-1");
        assert_eq!(lines[0]["language"], "de");
        assert_eq!(lines[0]["sentiment"], "negative");
        assert_eq!(lines[0]["themes"][0], "returns", "{}", lines[0]);
        assert!(lines[0]["explanation"]
            .as_array()
            .is_some_and(|e| !e.is_empty()));
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[1]["sentiment"], "positive");
        assert_eq!(lines[2]["id"], 3);
    }

    #[test]
    fn broken_lines_get_error_lines_and_the_stream_goes_on() {
        let mut input = Vec::new();
        input.extend_from_slice(b"not json\n");
        input.extend_from_slice(b"[1,2]\n");
        input.extend_from_slice(b"{\"id\": 7}\n");
        input.extend_from_slice(b"{\"id\": 8, \"text\": 42}\n");
        input.extend_from_slice(b"{\"id\": 9, \"text\": \"ok\", \"rating\": 9}\n");
        input.extend_from_slice(b"{\"id\": 10, \"text\": \"\xff\xfe\"}\n");
        input.extend_from_slice(b"{\"id\": 11, \"text\": \"thanks, all good\"}");
        let (lines, summary) = run_lines(&input);
        assert_eq!(
            summary,
            Summary {
                classified: 1,
                errors: 6
            }
        );
        assert_eq!(lines.len(), 7);
        let err = |i: usize| lines[i]["error"].as_str().unwrap_or_default().to_string();
        assert!(err(0).starts_with("invalid JSON"), "{}", err(0));
        assert_eq!(lines[0]["line"], 1);
        assert!(err(1).contains("expected a JSON object"), "{}", err(1));
        assert!(err(2).contains("missing field `text`"), "{}", err(2));
        assert_eq!(lines[2]["id"], 7);
        assert!(err(3).contains("invalid type"), "{}", err(3));
        assert!(err(4).contains("rating 9"), "{}", err(4));
        assert!(err(5).contains("invalid UTF-8"), "{}", err(5));
        assert_eq!(lines[6]["id"], 11);
        assert_eq!(lines[6]["sentiment"], "positive");
    }

    #[test]
    fn overlong_lines_are_rejected_without_losing_the_next_line() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"id\": 1, \"text\": \"");
        input.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\"}\n{\"id\": 2, \"text\": \"super\"}\n");
        let (lines, summary) = run_lines(&input);
        assert_eq!(
            summary,
            Summary {
                classified: 1,
                errors: 1
            }
        );
        assert!(lines[0]["error"].as_str().unwrap().contains("longer than"));
        assert_eq!(lines[1]["id"], 2);
    }
}

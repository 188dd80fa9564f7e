//! What an operator sends, checked. An API body (JSON) and an `/ops` form carry the same
//! fields for each [`Step`] and pass the same checks here, into the same
//! [`Command`]: names required and bounded, resolution messages in `en` (and `de`), notes
//! optional. Every problem is reported with a JSON pointer to its field; malformed JSON
//! is a 400, well-formed JSON of the wrong shape or content a 422.

use std::collections::{BTreeMap, HashMap};

use closeloop_http::FieldError;
use closeloop_http::{parse_json, JsonObject, Problem, ProblemType};
use serde::Deserialize;
use uuid::Uuid;

use crate::workflow::{Command, Step};

/// Longest accepted resolution message (per language) or note.
const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_NAME_CHARS: usize = 200;
/// Languages customers are told in; notify knows no others.
const LANGUAGES: [&str; 2] = ["en", "de"];

/// An action id from a path.
pub fn parse_action_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::new(ProblemType::InvalidParameter).detail(format!("{raw:?} is not a UUID"))
    })
}

/// The title of the problem a refused `step` request gets.
fn invalid_title(step: Step) -> &'static str {
    match step {
        Step::Acknowledge => "Invalid acknowledgement",
        Step::Assign => "Invalid assignment",
        Step::Resolve => "Invalid resolution",
        Step::Reopen => "Invalid reopen",
    }
}

// The bodies as sent, every field optional so that a missing one is reported with its
// own pointer rather than as a generic decoding error.

#[derive(Debug, Deserialize)]
struct AcknowledgeBody {
    acknowledged_by: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AssignBody {
    assignee: Option<String>,
    assigned_by: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResolveBody {
    message: Option<BTreeMap<String, String>>,
    resolved_by: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReopenBody {
    reopened_by: Option<String>,
    reason: Option<String>,
}

/// Parses and checks the JSON body of an API `step` request (an object: serde alone
/// would take a struct's fields as an array too).
pub fn from_json(step: Step, body: &[u8]) -> Result<Command, Problem> {
    match step {
        Step::Acknowledge => {
            let JsonObject(body): JsonObject<AcknowledgeBody> = parse_json(body)?;
            acknowledgement(body.acknowledged_by)
        }
        Step::Assign => {
            let JsonObject(body): JsonObject<AssignBody> = parse_json(body)?;
            assignment(body.assignee, body.assigned_by)
        }
        Step::Resolve => {
            let JsonObject(body): JsonObject<ResolveBody> = parse_json(body)?;
            resolution(body.message, body.resolved_by)
        }
        Step::Reopen => {
            let JsonObject(body): JsonObject<ReopenBody> = parse_json(body)?;
            reopening(body.reopened_by, body.reason)
        }
    }
}

/// Checks the fields of an `/ops` form for `step` (the CSRF field already taken out).
pub fn from_form(step: Step, mut form: HashMap<String, String>) -> Result<Command, Problem> {
    match step {
        Step::Acknowledge => acknowledgement(form.remove("acknowledged_by")),
        Step::Assign => assignment(form.remove("assignee"), form.remove("assigned_by")),
        Step::Resolve => {
            // The form always sends both text areas; an empty German one means "none".
            let message: BTreeMap<String, String> = LANGUAGES
                .iter()
                .filter_map(|language| {
                    let text = form.remove(&format!("message_{language}"))?;
                    (*language == "en" || !text.trim().is_empty())
                        .then(|| ((*language).to_owned(), text))
                })
                .collect();
            resolution(Some(message), form.remove("resolved_by"))
        }
        Step::Reopen => reopening(form.remove("reopened_by"), form.remove("reason")),
    }
}

fn acknowledgement(acknowledged_by: Option<String>) -> Result<Command, Problem> {
    let mut fields = Fields::default();
    let by = fields.name("/acknowledged_by", acknowledged_by);
    fields.finish(
        invalid_title(Step::Acknowledge),
        Command::Acknowledge { by },
    )
}

fn assignment(assignee: Option<String>, assigned_by: Option<String>) -> Result<Command, Problem> {
    let mut fields = Fields::default();
    let assignee = fields.name("/assignee", assignee);
    let by = fields.name("/assigned_by", assigned_by);
    fields.finish(
        invalid_title(Step::Assign),
        Command::Assign { assignee, by },
    )
}

/// A resolution: `message.en` present, only `en`/`de`, nothing blank or oversized, and
/// who resolved it.
fn resolution(
    message: Option<BTreeMap<String, String>>,
    resolved_by: Option<String>,
) -> Result<Command, Problem> {
    let mut fields = Fields::default();
    let mut checked = BTreeMap::new();
    match message {
        None => fields.add("/message", "is required"),
        Some(given) => {
            if !given.contains_key("en") {
                fields.add("/message/en", "is required");
            }
            for (language, text) in given {
                let pointer = format!(
                    "/message/{}",
                    closeloop_http::body::escape_pointer_token(&language)
                );
                if !LANGUAGES.contains(&language.as_str()) {
                    fields.add(pointer, "only `en` and `de` are supported");
                } else if text.trim().is_empty() {
                    fields.add(pointer, "must not be blank");
                } else if text.chars().count() > MAX_MESSAGE_CHARS {
                    fields.add(
                        pointer,
                        format!("must be at most {MAX_MESSAGE_CHARS} characters"),
                    );
                } else {
                    checked.insert(language, text.trim().to_owned());
                }
            }
        }
    }
    let resolved_by = fields.name("/resolved_by", resolved_by);
    fields.finish(
        invalid_title(Step::Resolve),
        Command::Resolve {
            message: checked,
            resolved_by,
        },
    )
}

fn reopening(reopened_by: Option<String>, reason: Option<String>) -> Result<Command, Problem> {
    let mut fields = Fields::default();
    let by = fields.name("/reopened_by", reopened_by);
    let reason = fields.note("/reason", reason);
    fields.finish(invalid_title(Step::Reopen), Command::Reopen { by, reason })
}

/// `what` names the request (e.g. "Invalid resolution"); the type is the one for every
/// invalid body.
fn invalid_body(what: &str, errors: Vec<FieldError>) -> Problem {
    Problem::new(ProblemType::InvalidBody)
        .detail(format!(
            "{what}: {} field(s) are invalid; nothing changed",
            errors.len()
        ))
        .errors(errors)
}

/// Collects field problems of a body.
#[derive(Default)]
struct Fields(Vec<FieldError>);

impl Fields {
    fn add(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    /// A required, non-blank name (who did it, who it is assigned to), trimmed.
    fn name(&mut self, pointer: &str, value: Option<String>) -> String {
        let value = value.unwrap_or_default().trim().to_owned();
        if value.is_empty() {
            self.add(pointer, "is required");
        } else if value.chars().count() > MAX_NAME_CHARS {
            self.add(
                pointer,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
        }
        value
    }

    /// An optional free text, trimmed; blank counts as absent.
    fn note(&mut self, pointer: &str, value: Option<String>) -> Option<String> {
        let value = value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())?;
        if value.chars().count() > MAX_MESSAGE_CHARS {
            self.add(
                pointer,
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            );
        }
        Some(value)
    }

    fn finish<T>(self, title: &str, value: T) -> Result<T, Problem> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(invalid_body(title, self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolve body's message and author, as checked.
    fn parse_resolve(body: &[u8]) -> Result<(BTreeMap<String, String>, String), Problem> {
        match from_json(Step::Resolve, body)? {
            Command::Resolve {
                message,
                resolved_by,
            } => Ok((message, resolved_by)),
            other => panic!("a resolve body became {other:?}"),
        }
    }

    fn pointers(problem: &Problem) -> Vec<&str> {
        problem.errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn a_valid_resolution_is_trimmed_and_kept() {
        let request = parse_resolve(
            br#"{"message": {"en": " Second carrier added. ", "de": "Zweiter Versender."},
                 "resolved_by": "ops@example.com", "ignored": true}"#,
        )
        .expect("valid");
        let (message, resolved_by) = request;
        assert_eq!(message["en"], "Second carrier added.");
        assert_eq!(message["de"], "Zweiter Versender.");
        assert_eq!(resolved_by, "ops@example.com");
        assert!(parse_resolve(br#"{"message": {"en": "x"}, "resolved_by": "me"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_400() {
        for body in [
            &b"{not json"[..],
            b"",
            b"{\"message\": {\"en\": \"x\"}} trailing",
            b"\xff",
        ] {
            let problem = parse_resolve(body).expect_err("malformed");
            assert_eq!(problem.status, 400, "{body:?}");
        }
    }

    #[test]
    fn an_array_is_not_a_body() {
        let problem =
            from_json(Step::Acknowledge, br#"["ana@example.com"]"#).expect_err("an array");
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn wrong_types_are_a_422_with_a_pointer() {
        let problem = parse_resolve(br#"{"message": {"en": 5}, "resolved_by": "me"}"#)
            .expect_err("wrong type");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/message/en"]);
        let problem = parse_resolve(br#"["not", "an", "object"]"#).expect_err("wrong type");
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn content_rules_are_a_422_listing_every_field() {
        let problem = parse_resolve(br#"{"message": {"de": "Nur Deutsch"}}"#).expect_err("no en");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/message/en", "/resolved_by"]);

        let problem =
            parse_resolve(br#"{"message": {"en": "  ", "fr": "Bonjour"}, "resolved_by": "me"}"#)
                .expect_err("blank en, unknown language");
        assert_eq!(pointers(&problem), ["/message/en", "/message/fr"]);

        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        let body = serde_json::json!({"message": {"en": "ok", "de": long}, "resolved_by": "me"});
        let problem = parse_resolve(body.to_string().as_bytes()).expect_err("too long");
        assert_eq!(pointers(&problem), ["/message/de"]);
        let exactly = "ü".repeat(MAX_MESSAGE_CHARS);
        let body = serde_json::json!({"message": {"en": exactly}, "resolved_by": "me"});
        assert!(
            parse_resolve(body.to_string().as_bytes()).is_ok(),
            "2000 characters, not bytes"
        );

        let problem = parse_resolve(br#"{"resolved_by": "me"}"#).expect_err("no message");
        assert_eq!(pointers(&problem), ["/message"]);
    }

    #[test]
    fn acknowledge_and_reopen_bodies_are_checked() {
        let mut fields = Fields::default();
        assert_eq!(fields.name("/by", Some("  ops ".into())), "ops");
        assert_eq!(fields.note("/reason", Some("   ".into())), None);
        assert!(fields.0.is_empty());
        fields.name("/by", None);
        fields.name("/assignee", Some("x".repeat(MAX_NAME_CHARS + 1)));
        let problem = fields.finish("Invalid", ()).expect_err("two problems");
        assert_eq!(problem.status, 422);
        assert_eq!(pointers(&problem), ["/by", "/assignee"]);
        let wrong: Result<AssignBody, _> = parse_json(br#"{"assignee": 3}"#);
        assert_eq!(pointers(&wrong.expect_err("wrong type")), ["/assignee"]);
    }

    #[test]
    fn a_form_and_a_body_become_the_same_command() {
        let form = HashMap::from([
            ("assignee".to_owned(), " logistics ".to_owned()),
            ("assigned_by".to_owned(), "ops".to_owned()),
        ]);
        let body = br#"{"assignee": "logistics", "assigned_by": " ops"}"#;
        assert_eq!(
            from_form(Step::Assign, form).expect("valid form"),
            from_json(Step::Assign, body).expect("valid body")
        );
        let form = HashMap::from([
            ("message_en".to_owned(), "Fixed.".to_owned()),
            ("message_de".to_owned(), "  ".to_owned()),
            ("resolved_by".to_owned(), "ops".to_owned()),
        ]);
        assert_eq!(
            from_form(Step::Resolve, form).expect("blank German is none"),
            Command::Resolve {
                message: BTreeMap::from([("en".to_owned(), "Fixed.".to_owned())]),
                resolved_by: "ops".into(),
            }
        );
        let problem = from_form(Step::Reopen, HashMap::new()).expect_err("no name");
        assert_eq!(
            problem.problem_type(),
            closeloop_http::ProblemType::InvalidBody
        );
        assert!(problem
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("Invalid reopen")));
        assert_eq!(pointers(&problem), ["/reopened_by"]);
    }
}

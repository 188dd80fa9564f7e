//! JSON request bodies: the content type checked, syntax errors told apart from content
//! errors, and content errors located by an RFC 6901 JSON pointer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::problem::{Problem, ProblemType};

/// The body of a request that must be JSON: 415 when it says it is something else (a
/// missing `Content-Type` is taken as JSON), 413 when too large, 400 when unreadable.
pub fn read_json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Problem> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .map(|value| {
                let essence = value.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Problem::new(ProblemType::UnsupportedMediaType)
                .detail("send the body as application/json"));
        }
    }
    body.map_err(|rejection| {
        let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ProblemType::BodyTooLarge
        } else {
            ProblemType::UnreadableBody
        };
        Problem::new(kind).detail(rejection.body_text())
    })
}

/// Decodes exactly one JSON value: malformed JSON (or anything after the value) is 400,
/// well-formed JSON of the wrong shape is 422 with a pointer to the offending part.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let malformed = |error: &dyn std::fmt::Display| {
        Problem::new(ProblemType::MalformedJson)
            .detail(format!("the body is not valid JSON: {error}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) if error.inner().is_data() => {
            let pointer = json_pointer(error.path());
            let message = without_position(&error.inner().to_string());
            return Err(Problem::new(ProblemType::InvalidBody)
                .detail(format!("nothing was done: {message}"))
                .errors(vec![Problem::field(pointer, message)]));
        }
        Err(error) => return Err(malformed(error.inner())),
    };
    // Without this, `{…} garbage` would pass: deserializing stops after the first value.
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(value)
}

/// The RFC 6901 pointer of a serde path: `items[3].customer.id` → `/items/3/customer/id`,
/// the root → ``.
pub fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(escape_pointer_token(key)),
            Segment::Enum { variant } => Some(escape_pointer_token(variant)),
            Segment::Unknown => None,
        })
        .fold(String::new(), |pointer, token| pointer + "/" + &token)
}

/// RFC 6901 escaping of one reference token (`~` → `~0`, `/` → `~1`).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// serde_json's "… at line 1 column 7": the pointer already says where.
fn without_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        rating: u8,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Batch {
        items: Vec<Item>,
        labels: Option<BTreeMap<String, u8>>,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_a_pointer() {
        let problem = parse_json::<Batch>(b"{\"items\": ").unwrap_err();
        assert_eq!(problem.status, 400);
        let problem =
            parse_json::<Batch>(br#"{"items":[{"rating":1},{"rating":"five"}]}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer, "/items/1/rating");
        assert!(!problem.errors[0].detail.contains("line"), "{problem:?}");
        let problem = parse_json::<serde_json::Value>(b"{} {}").unwrap_err();
        assert_eq!(problem.status, 400, "one JSON value, nothing after it");
        assert!(parse_json::<serde_json::Value>(b" {}\n").is_ok());
    }

    #[test]
    fn pointers_escape_slash_and_tilde_in_keys() {
        let problem = parse_json::<Batch>(br#"{"items":[],"labels":{"a/b~c":"x"}}"#).unwrap_err();
        assert_eq!(problem.errors[0].pointer, "/labels/a~1b~0c");
    }

    #[test]
    fn content_type_must_be_json_when_given() {
        let mut headers = HeaderMap::new();
        assert!(read_json_body(&headers, Ok(Bytes::from_static(b"{}"))).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(read_json_body(&headers, Ok(Bytes::from_static(b"{}"))).is_ok());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let problem = read_json_body(&headers, Ok(Bytes::from_static(b"{}"))).unwrap_err();
        assert_eq!(problem.status, 415);
    }
}

//! JSON request bodies: the content type (and encoding) checked, syntax errors told apart from content
//! errors, and content errors located by an RFC 6901 JSON pointer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer};

use crate::problem::{Problem, ProblemType};

/// The body of a request that must be JSON: 415 unless `Content-Type` says JSON (a missing
/// one too: a cross-site form or `text/plain` post must not pass as JSON) or when the body
/// is encoded (`Content-Encoding` other than `identity`), 413 when too large, 400 when
/// unreadable.
pub fn read_json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Problem> {
    check_json_content_type(headers)?;
    let body = read(body)?;
    match content_encoding(headers)? {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => Err(Problem::new(ProblemType::UnsupportedMediaType)
            .detail("this endpoint takes no Content-Encoding; send the body uncompressed")),
    }
}

/// [`read_json_body`] that also takes `Content-Encoding: gzip`, inflated to at most
/// `max_bytes` (the same limit as an uncompressed body, so a gzip bomb gets 413 after
/// inflating `max_bytes`, never more).
pub fn read_json_body_inflating(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_bytes: usize,
) -> Result<Bytes, Problem> {
    check_json_content_type(headers)?;
    let body = read(body)?;
    match content_encoding(headers)? {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => inflate_gzip(&body, max_bytes).map(Bytes::from),
    }
}

/// Inflates a gzip body (several members too, RFC 1952) to at most `max_bytes`: 413 beyond
/// that, 400 when it is not gzip. Pure, so the fuzzer runs it.
pub fn inflate_gzip(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, Problem> {
    use std::io::Read;
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut inflated)
        .map_err(|error| {
            Problem::new(ProblemType::UnreadableBody)
                .detail(format!("the body is not valid gzip: {error}"))
        })?;
    if inflated.len() > max_bytes {
        return Err(Problem::new(ProblemType::BodyTooLarge)
            .detail(format!("the body inflates to more than {max_bytes} bytes")));
    }
    Ok(inflated)
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
        });
    if is_json {
        Ok(())
    } else {
        Err(Problem::new(ProblemType::UnsupportedMediaType)
            .detail("send the body as Content-Type: application/json"))
    }
}

fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ProblemType::BodyTooLarge
        } else {
            ProblemType::UnreadableBody
        };
        Problem::new(kind).detail(rejection.body_text())
    })
}

enum Encoding {
    Identity,
    Gzip,
}

/// The one `Content-Encoding` a body may carry; anything else (brotli, a chain of
/// encodings, the header twice) is 415 rather than a body read as if it were plain.
fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Problem> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(value) = values.next() else {
        return Ok(Encoding::Identity);
    };
    let unsupported = || {
        Problem::new(ProblemType::UnsupportedMediaType)
            .detail("the only Content-Encoding taken is gzip (or identity)")
    };
    if values.next().is_some() {
        return Err(unsupported());
    }
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
        Ok(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => {
            Ok(Encoding::Gzip)
        }
        _ => Err(unsupported()),
    }
}

/// Decodes exactly one JSON value: malformed JSON (or anything after the value) is 400,
/// well-formed JSON of the wrong shape is 422 with a pointer to the offending part.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let malformed = |error: &dyn std::fmt::Display| {
        Problem::new(ProblemType::MalformedJson)
            .detail(format!("the body is not valid JSON: {error}"))
    };
    // A body that parses needs no path: tracking one costs an allocation per field, so
    // the path is worked out only for a body that failed.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
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

/// A JSON object, never an array. serde's derived structs also take their fields as a
/// sequence in declaration order (`["chat", ["c-1"], "text"]` would be a feedback), which
/// no client means and no documentation promises.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_object(deserializer).map(JsonObject)
    }
}

/// [`JsonObject`] for a field: `#[serde(deserialize_with = "closeloop_http::deserialize_object")]`.
pub fn deserialize_object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
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
    fn objects_only_never_arrays() {
        let problem = parse_json::<JsonObject<Item>>(b"[3]").unwrap_err();
        assert_eq!(problem.status, 422, "{problem:?}");
        assert!(parse_json::<Item>(b"[3]").is_ok(), "what serde alone takes");
        let item = parse_json::<JsonObject<Item>>(br#"{"rating":3}"#).unwrap();
        assert_eq!(item.0.rating, 3);
        let problem = parse_json::<JsonObject<Item>>(br#"{"rating":"x"}"#).unwrap_err();
        assert_eq!(problem.errors[0].pointer, "/rating", "pointers still work");
        let problem = parse_json::<Vec<JsonObject<Item>>>(br#"[{"rating":1},[2]]"#).unwrap_err();
        assert_eq!(problem.errors[0].pointer, "/1");
    }

    #[test]
    fn pointers_escape_slash_and_tilde_in_keys() {
        let problem = parse_json::<Batch>(br#"{"items":[],"labels":{"a/b~c":"x"}}"#).unwrap_err();
        assert_eq!(problem.errors[0].pointer, "/labels/a~1b~0c");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    }

    #[test]
    fn content_type_must_be_json() {
        let mut headers = HeaderMap::new();
        let problem = read_json_body(&headers, Ok(Bytes::from_static(b"{}"))).unwrap_err();
        assert_eq!(problem.status, 415, "a missing Content-Type is not JSON");
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

    #[test]
    fn gzip_is_inflated_within_the_limit_and_other_encodings_refused() {
        let mut headers = json_headers();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let body = || Ok(Bytes::from(gzip(b"{\"a\":1}")));
        assert_eq!(
            read_json_body_inflating(&headers, body(), 1024).unwrap(),
            &b"{\"a\":1}"[..]
        );
        assert_eq!(
            read_json_body(&headers, body()).unwrap_err().status,
            415,
            "an endpoint that does not inflate refuses the encoding"
        );
        // A bomb: 10 MB of zeros in a few KB; stops at the limit.
        let bomb = Bytes::from(gzip(&vec![b'0'; 10 * 1024 * 1024]));
        assert!(bomb.len() < 64 * 1024);
        let problem = read_json_body_inflating(&headers, Ok(bomb), 64 * 1024).unwrap_err();
        assert_eq!(problem.status, 413);
        // A plain body labelled gzip is not read as plain.
        let problem =
            read_json_body_inflating(&headers, Ok(Bytes::from_static(b"{}")), 1024).unwrap_err();
        assert_eq!(problem.status, 400);
        for encoding in ["br", "deflate", "gzip, gzip", "compress"] {
            headers.insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
            let problem = read_json_body_inflating(&headers, body(), 1024).unwrap_err();
            assert_eq!(problem.status, 415, "{encoding}");
        }
        headers.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(read_json_body(&headers, Ok(Bytes::from_static(b"{}"))).is_ok());
    }
}

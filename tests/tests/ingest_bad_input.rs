//! ingest against hostile and broken requests: each gets a clear 4xx problem+json and
//! nothing reaches Kafka; good requests (hostile-looking text included), idempotent
//! retries, the per-source rate limit and customers' preferences behave.

use std::time::Duration;

use clap::Parser;
use closeloop_bus::{EmbeddedBroker, Fault, KafkaArgs, TopicSpec};
use closeloop_events::{decode, topics, CustomerPreferences, DeliveryChannel};
use closeloop_ingest::{Config, Service, SourceKey};
use closeloop_store::testing::database_args;
use closeloop_tests::{init_logs, read_topic};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-key-shopdesk";
const OTHER_KEY: &str = "test-key-surveyhub";
/// The admin key of [`with_admin_key`].
const ADMIN_KEY: &str = "test-admin-key-privacy";
/// Where the corpus PUTs preferences.
const PREFERENCES: &str = "/v1/customers/c-1/preferences";

struct Ingest {
    url: String,
    brokers: String,
    shutdown: CancellationToken,
    broker: EmbeddedBroker,
}

async fn spawn_ingest(configure: impl FnOnce(&mut Config)) -> Ingest {
    spawn_ingest_on(1, configure).await
}

/// ingest on an embedded cluster of `brokers` brokers.
async fn spawn_ingest_on(brokers: i32, configure: impl FnOnce(&mut Config)) -> Ingest {
    init_logs();
    let broker = EmbeddedBroker::start(brokers, &TopicSpec::all(2)).unwrap();
    let mut config = Config::parse_from(["ingest"]);
    config.kafka = KafkaArgs::new(broker.bootstrap_servers());
    config.database = database_args("ingest");
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.api_keys = vec![
        SourceKey {
            source: "shopdesk".into(),
            key: KEY.into(),
        },
        SourceKey {
            source: "surveyhub".into(),
            key: OTHER_KEY.into(),
        },
    ];
    config.max_batch = 10;
    config.max_body_bytes = 64 * 1024;
    configure(&mut config);
    let service = Service::build(config).await.unwrap();
    let url = format!("http://{}", service.http_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(service.run_until_stopped(shutdown.clone()));
    Ingest {
        url,
        brokers: broker.bootstrap_servers().to_owned(),
        shutdown,
        broker,
    }
}

/// Configures an admin key named `privacy`.
fn with_admin_key(config: &mut Config) {
    config.admin_keys = vec![SourceKey {
        source: "privacy".into(),
        key: ADMIN_KEY.into(),
    }];
}

fn valid_preferences() -> Value {
    json!({ "consent": true, "channels": ["email"], "language": "de-CH" })
}

/// `valid_preferences()` with `field` set (`null` removes it).
fn preferences_with(field: &str, value: Value) -> Vec<u8> {
    let mut body = valid_preferences();
    let object = body.as_object_mut().expect("an object");
    if value.is_null() {
        object.remove(field);
    } else {
        object.insert(field.to_owned(), value);
    }
    body.to_string().into_bytes()
}

fn valid() -> Value {
    json!({
        "channel": "ticket",
        "customer": { "id": "c-1", "locale": "en-GB", "consent": true },
        "text": "The parcel came late.",
        "rating": 2
    })
}

/// `valid()` with one field (a JSON pointer) set.
fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut body = valid();
    let (parent, field) = pointer.rsplit_once('/').expect("a JSON pointer");
    body.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("an object of valid()")
        .insert(field.to_owned(), value);
    body.to_string().into_bytes()
}

fn without(field: &str) -> Vec<u8> {
    let mut body = valid();
    body.as_object_mut().unwrap().remove(field);
    body.to_string().into_bytes()
}

fn batch_of(items: Vec<Value>) -> Vec<u8> {
    json!({ "items": items }).to_string().into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// The event id of the feedback `bad_requests_…` accepts before running the corpus.
const KNOWN_EVENT_ID: &str = "0190f0a0-0000-7000-8000-0000000000aa";

fn known_event() -> Value {
    let mut body = valid();
    body["event_id"] = json!(KNOWN_EVENT_ID);
    body
}

/// Valid until its metadata nests 10,000 arrays deep (past serde_json's recursion limit).
fn deeply_nested() -> Vec<u8> {
    format!(
        r#"{{"channel":"ticket","customer":{{"id":"c"}},"text":"x","metadata":{{"a":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
    .into_bytes()
}

/// One hostile or broken request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// The `Authorization` header; `None` sends none.
    authorization: Option<String>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// Field errors the problem must point at.
    pointers: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str, path: &'static str, body: Vec<u8>) -> Self {
        Self {
            name,
            method: Method::POST,
            path,
            authorization: Some(format!("Bearer {KEY}")),
            content_type: Some("application/json"),
            headers: Vec::new(),
            body,
            status: 0,
            pointers: Vec::new(),
        }
    }
    fn single(name: &'static str, body: Vec<u8>) -> Self {
        Self::new(name, "/v1/feedback", body)
    }
    fn batch(name: &'static str, body: Vec<u8>) -> Self {
        Self::new(name, "/v1/feedback/batch", body)
    }
    /// A `PUT` of a customer's preferences to `path`.
    fn preferences(name: &'static str, path: &'static str, body: Vec<u8>) -> Self {
        Self::new(name, path, body).method(Method::PUT)
    }
    fn expect(mut self, status: u16, pointers: &[&'static str]) -> Self {
        self.status = status;
        self.pointers = pointers.to_vec();
        self
    }
    fn authorization(mut self, value: Option<&str>) -> Self {
        self.authorization = value.map(str::to_owned);
        self
    }
    fn content_type(mut self, value: Option<&'static str>) -> Self {
        self.content_type = value;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

fn corpus() -> Vec<Case> {
    let mut batch_with_bad_items = vec![valid(); 5];
    batch_with_bad_items[0]["text"] = json!("   ");
    batch_with_bad_items[3]["nps"] = json!(11);
    let mut batch_with_one_bad_item = vec![valid(); 3];
    batch_with_one_bad_item[2]["rating"] = json!(0);
    let mut repeated_ids = vec![valid(); 2];
    let id = "0190f0a0-0000-7000-8000-000000000001";
    repeated_ids[0]["event_id"] = json!(id);
    repeated_ids[1]["event_id"] = json!(id);
    let mut spoofed_source = valid();
    spoofed_source["source"] = json!("surveyhub");
    let mut unknown_nested = valid();
    unknown_nested["customer"]["is_admin"] = json!(true);
    let mut known_id_other_text = known_event();
    known_id_other_text["text"] = json!("Another complaint under the same id.");
    let mut known_id_other_customer = known_event();
    known_id_other_customer["customer"]["id"] = json!("mallory");
    let mut batch_with_known_id = vec![valid(), known_id_other_text.clone()];
    batch_with_known_id[0]["event_id"] = json!("0190f0a0-0000-7000-8000-0000000000bb");

    vec![
        // Not JSON, or JSON no parser should have to finish.
        Case::single("malformed JSON", b"{\"channel\": ".to_vec()).expect(400, &[]),
        Case::single("not JSON at all", b"hello".to_vec()).expect(400, &[]),
        Case::single("empty body", Vec::new()).expect(400, &[]),
        Case::single("invalid UTF-8", b"{\"text\": \"\xff\xfe\"}".to_vec()).expect(400, &[]),
        Case::single(
            "raw NUL byte inside a JSON string",
            br#"{"channel":"ticket","customer":{"id":"c"},"text":"a"#
                .iter()
                .chain(b"\0\"}")
                .copied()
                .collect(),
        )
        .expect(400, &[]),
        Case::single("deeply nested", deeply_nested()).expect(400, &[]),
        Case::single("trailing garbage", {
            let mut body = valid().to_string().into_bytes();
            body.extend_from_slice(b" {\"more\": 1}");
            body
        })
        .expect(400, &[]),
        // Well-formed JSON of the wrong shape.
        Case::single("wrong top-level type", b"[1, 2]".to_vec()).expect(422, &[]),
        Case::single("missing field", without("text")).expect(422, &[]),
        // serde's derived structs take a struct's fields as an array, in order.
        Case::single(
            "array as a submission",
            json!([null, null, "ticket", null, ["c-1"], "The parcel came late."])
                .to_string()
                .into_bytes(),
        )
        .expect(422, &[]),
        Case::single("customer as an array", with("/customer", json!(["c-1"])))
            .expect(422, &["/customer"]),
        Case::batch(
            "array as a batch item",
            batch_of(vec![
                valid(),
                json!([null, null, "ticket", null, ["c-1"], "The parcel came late."]),
            ]),
        )
        .expect(422, &["/items/1"]),
        Case::batch(
            "array as a batch",
            json!([[valid()]]).to_string().into_bytes(),
        )
        .expect(422, &[]),
        Case::single("wrong type", with("/rating", json!("five"))).expect(422, &["/rating"]),
        Case::single("fractional rating", with("/rating", json!(4.5))).expect(422, &["/rating"]),
        Case::single("negative rating", with("/rating", json!(-1))).expect(422, &["/rating"]),
        Case::single("rating out of range", with("/rating", json!(6))).expect(422, &["/rating"]),
        Case::single("NPS out of range", with("/nps", json!(42))).expect(422, &["/nps"]),
        Case::single("unknown field", with("/sentiment", json!("positive"))).expect(422, &[]),
        // The source comes from the API key alone; a body cannot claim another one.
        Case::single(
            "body claims another source",
            spoofed_source.to_string().into_bytes(),
        )
        .expect(422, &[]),
        Case::single(
            "unknown nested field",
            unknown_nested.to_string().into_bytes(),
        )
        .expect(422, &[]),
        Case::single(
            "duplicate key",
            br#"{"channel":"ticket","customer":{"id":"c"},"text":"a","text":"b"}"#.to_vec(),
        )
        .expect(422, &[]),
        Case::single("unknown channel", with("/channel", json!("carrier-pigeon")))
            .expect(422, &["/channel"]),
        Case::single("event id not a UUID", with("/event_id", json!("42")))
            .expect(422, &["/event_id"]),
        Case::single(
            "timestamp not RFC 3339",
            with("/occurred_at", json!("yesterday")),
        )
        .expect(422, &["/occurred_at"]),
        Case::single(
            "timestamp far in the future",
            with("/occurred_at", json!("2999-01-01T00:00:00Z")),
        )
        .expect(422, &["/occurred_at"]),
        Case::single(
            "bad locale",
            with("/customer/locale", json!("en GB<script>")),
        )
        .expect(422, &["/customer/locale"]),
        Case::single(
            "bad e-mail",
            with("/customer/email", json!("not an address")),
        )
        .expect(422, &["/customer/email"]),
        Case::single("empty text", with("/text", json!(""))).expect(422, &["/text"]),
        Case::single("whitespace-only text", with("/text", json!(" \n\t ")))
            .expect(422, &["/text"]),
        Case::single(
            "text of control characters only",
            with("/text", json!("\u{0}\u{7}\u{1b}")),
        )
        .expect(422, &["/text"]),
        Case::single("NUL in customer id", with("/customer/id", json!("c\u{0}1")))
            .expect(422, &["/customer/id"]),
        Case::single(
            "zero-width text",
            with("/text", json!("\u{200B}\u{200D}\u{FEFF}\u{2060}")),
        )
        .expect(422, &["/text"]),
        Case::single(
            "text of NUL and spaces",
            with("/text", json!("\u{0} \u{0}\u{3164}")),
        )
        .expect(422, &["/text"]),
        Case::single(
            "occurred_at in year 1",
            with("/occurred_at", json!("0001-01-01T00:00:00Z")),
        )
        .expect(422, &["/occurred_at"]),
        Case::single(
            "occurred_at older than the maximum age",
            with(
                "/occurred_at",
                json!((chrono::Utc::now() - chrono::Duration::days(400)).to_rfc3339()),
            ),
        )
        .expect(422, &["/occurred_at"]),
        Case::single(
            "forged log line in customer id",
            with(
                "/customer/id",
                json!("c-1\nlevel=INFO msg=\"notification delivered\" customer_id=other"),
            ),
        )
        .expect(422, &["/customer/id"]),
        Case::single(
            "escape sequence in customer id",
            with("/customer/id", json!("c-1\u{1b}[2J")),
        )
        .expect(422, &["/customer/id"]),
        Case::single(
            "bidi override in customer id",
            with("/customer/id", json!("c-1\u{202E}1-c")),
        )
        .expect(422, &["/customer/id"]),
        Case::single(
            "line break in reference",
            with("/customer/reference", json!("T-1\r\nreason=delivered")),
        )
        .expect(422, &["/customer/reference"]),
        Case::single("oversize text", with("/text", json!("x".repeat(10_001))))
            .expect(422, &["/text"]),
        Case::single(
            "oversize metadata",
            with("/metadata", json!({ "blob": "x".repeat(9 * 1024) })),
        )
        .expect(422, &["/metadata"]),
        Case::single("oversize body", vec![b' '; 100 * 1024]).expect(413, &[]),
        // Authentication.
        Case::single("no Authorization", valid().to_string().into_bytes())
            .authorization(None)
            .expect(401, &[]),
        Case::single("unknown API key", valid().to_string().into_bytes())
            .authorization(Some("Bearer not-a-key-of-anyone"))
            .expect(401, &[]),
        Case::single("wrong scheme", valid().to_string().into_bytes())
            .authorization(Some(&format!("Basic {KEY}")))
            .expect(401, &[]),
        Case::single("empty bearer", valid().to_string().into_bytes())
            .authorization(Some("Bearer "))
            .expect(401, &[]),
        Case::single("key without scheme", valid().to_string().into_bytes())
            .authorization(Some(KEY))
            .expect(401, &[]),
        Case::single("key with a suffix", valid().to_string().into_bytes())
            .authorization(Some(&format!("Bearer {KEY}x")))
            .expect(401, &[]),
        // Headers.
        Case::single("wrong content type", valid().to_string().into_bytes())
            .content_type(Some("text/plain"))
            .expect(415, &[]),
        Case::single("form body", b"text=hello".to_vec())
            .content_type(Some("application/x-www-form-urlencoded"))
            .expect(415, &[]),
        Case::single("no Content-Type", valid().to_string().into_bytes())
            .content_type(None)
            .expect(415, &[]),
        Case::batch("batch without Content-Type", batch_of(vec![valid()]))
            .content_type(None)
            .expect(415, &[]),
        Case::single("plain body labelled gzip", valid().to_string().into_bytes())
            .header("content-encoding", "gzip")
            .expect(400, &[]),
        Case::single(
            "gzip body not labelled",
            gzip(valid().to_string().as_bytes()),
        )
        .expect(400, &[]),
        Case::single("gzip bomb", gzip(&vec![b' '; 10 * 1024 * 1024]))
            .header("content-encoding", "gzip")
            .expect(413, &[]),
        Case::single("brotli body", valid().to_string().into_bytes())
            .header("content-encoding", "br")
            .expect(415, &[]),
        Case::single("two encodings", gzip(&gzip(valid().to_string().as_bytes())))
            .header("content-encoding", "gzip, gzip")
            .expect(415, &[]),
        Case::single("tab in Idempotency-Key", valid().to_string().into_bytes())
            .header("idempotency-key", "key\twith-tab")
            .expect(400, &[]),
        Case::single(
            "over-long Idempotency-Key",
            valid().to_string().into_bytes(),
        )
        .header("idempotency-key", "k".repeat(256))
        .expect(400, &[]),
        Case::single("empty Idempotency-Key", valid().to_string().into_bytes())
            .header("idempotency-key", "")
            .expect(400, &[]),
        // The key of the request `bad_requests_…` accepts before running the corpus.
        Case::single(
            "Idempotency-Key replayed with another body",
            with("/text", json!("A different complaint.")),
        )
        .header("idempotency-key", "first-request")
        .expect(422, &[]),
        // Routing.
        Case::single("GET instead of POST", Vec::new())
            .method(Method::GET)
            .expect(405, &[]),
        Case::batch("PUT instead of POST", batch_of(vec![valid()]))
            .method(Method::PUT)
            .expect(405, &[]),
        Case::new(
            "unknown path",
            "/v1/feedbacks",
            valid().to_string().into_bytes(),
        )
        .expect(404, &[]),
        // Batches: all or nothing.
        Case::batch("over-long batch", batch_of(vec![valid(); 11])).expect(422, &[]),
        Case::batch("empty batch", batch_of(vec![])).expect(422, &[]),
        Case::batch("batch without items", b"{\"item\": []}".to_vec()).expect(422, &[]),
        Case::batch(
            "one bad item spoils the batch",
            batch_of(batch_with_one_bad_item),
        )
        .expect(422, &["/items/2/rating"]),
        Case::batch(
            "every bad item is pointed at",
            batch_of(batch_with_bad_items),
        )
        .expect(422, &["/items/0/text", "/items/3/nps"]),
        Case::batch("repeated event id in a batch", batch_of(repeated_ids))
            .expect(422, &["/items/1/event_id"]),
        // One event id names one event: the id `bad_requests_…` accepted first, with
        // other content, from the same or another source.
        Case::single(
            "known event id with other text",
            known_id_other_text.to_string().into_bytes(),
        )
        .expect(409, &["/event_id"]),
        Case::single(
            "known event id with another customer",
            known_id_other_customer.to_string().into_bytes(),
        )
        .expect(409, &["/event_id"]),
        Case::single(
            "known event id from another source",
            known_event().to_string().into_bytes(),
        )
        .authorization(Some(&format!("Bearer {OTHER_KEY}")))
        .expect(409, &["/event_id"]),
        Case::batch("known event id in a batch", batch_of(batch_with_known_id))
            .expect(409, &["/items/1/event_id"]),
        // Erasure requests are checked the same way.
        Case::new("erasure without customer", "/v1/erasure", b"{}".to_vec()).expect(422, &[]),
        Case::new(
            "erasure of a blank customer",
            "/v1/erasure",
            br#"{"customer_id": "  "}"#.to_vec(),
        )
        .expect(422, &["/customer_id"]),
        Case::new(
            "erasure of an id with a line break",
            "/v1/erasure",
            br#"{"customer_id": "c-1\nlevel=INFO msg=forged"}"#.to_vec(),
        )
        .expect(422, &["/customer_id"]),
        Case::new("erasure as an array", "/v1/erasure", br#"["c-1"]"#.to_vec()).expect(422, &[]),
        Case::new(
            "erasure without Content-Type",
            "/v1/erasure",
            br#"{"customer_id": "c-1"}"#.to_vec(),
        )
        .content_type(None)
        .expect(415, &[]),
        Case::new(
            "erasure without Authorization",
            "/v1/erasure",
            br#"{"customer_id": "c-1"}"#.to_vec(),
        )
        .authorization(None)
        .expect(401, &[]),
        // Preferences: every bad field pointed at, the path's customer id checked like
        // any other, the same answers to the same broken requests.
        Case::preferences(
            "preferences without consent",
            PREFERENCES,
            preferences_with("consent", Value::Null),
        )
        .expect(422, &["/consent"]),
        Case::preferences(
            "preferences with an unknown field",
            PREFERENCES,
            preferences_with("frequency", json!("weekly")),
        )
        .expect(422, &[]),
        Case::preferences(
            "preferences with no channel",
            PREFERENCES,
            preferences_with("channels", json!([])),
        )
        .expect(422, &["/channels"]),
        Case::preferences(
            "preferences with an unknown channel",
            PREFERENCES,
            preferences_with("channels", json!(["email", "sms"])),
        )
        .expect(422, &["/channels/1"]),
        Case::preferences(
            "preferences naming a channel twice",
            PREFERENCES,
            preferences_with("channels", json!(["webhook", "webhook"])),
        )
        .expect(422, &["/channels/1"]),
        Case::preferences(
            "preferences in a bad language",
            PREFERENCES,
            preferences_with("language", json!("de CH<script>")),
        )
        .expect(422, &["/language"]),
        Case::preferences(
            "preferences with consent as a string",
            PREFERENCES,
            preferences_with("consent", json!("yes")),
        )
        .expect(422, &["/consent"]),
        Case::preferences("preferences as an array", PREFERENCES, b"[true]".to_vec())
            .expect(422, &[]),
        Case::preferences(
            "preferences as malformed JSON",
            PREFERENCES,
            b"{\"consent\": tru".to_vec(),
        )
        .expect(400, &[]),
        Case::preferences(
            "preferences of a blank customer",
            "/v1/customers/%20%20/preferences",
            valid_preferences().to_string().into_bytes(),
        )
        .expect(400, &["customer_id"]),
        Case::preferences(
            "preferences of an id with a line break",
            "/v1/customers/c-1%0Alevel=INFO%20msg=forged/preferences",
            valid_preferences().to_string().into_bytes(),
        )
        .expect(400, &["customer_id"]),
        Case::preferences(
            "preferences of an id that is not UTF-8",
            "/v1/customers/%FF%FE/preferences",
            valid_preferences().to_string().into_bytes(),
        )
        .expect(400, &["customer_id"]),
        Case::preferences(
            "preferences without Authorization",
            PREFERENCES,
            valid_preferences().to_string().into_bytes(),
        )
        .authorization(None)
        .expect(401, &[]),
        Case::preferences(
            "preferences with an unknown key",
            PREFERENCES,
            valid_preferences().to_string().into_bytes(),
        )
        .authorization(Some("Bearer not-a-key-of-anyone"))
        .expect(401, &[]),
        Case::preferences(
            "preferences without Content-Type",
            PREFERENCES,
            valid_preferences().to_string().into_bytes(),
        )
        .content_type(None)
        .expect(415, &[]),
        Case::preferences(
            "preferences gzipped",
            PREFERENCES,
            gzip(valid_preferences().to_string().as_bytes()),
        )
        .header("content-encoding", "gzip")
        .expect(415, &[]),
        Case::preferences("oversize preferences", PREFERENCES, vec![b' '; 100 * 1024])
            .expect(413, &[]),
        Case::new(
            "POST instead of PUT",
            PREFERENCES,
            valid_preferences().to_string().into_bytes(),
        )
        .expect(405, &[]),
        Case::preferences("GET of preferences", PREFERENCES, Vec::new())
            .method(Method::GET)
            .expect(405, &[]),
    ]
}

async fn send(client: &reqwest::Client, base: &str, case: &Case) -> reqwest::Response {
    let mut request = client
        .request(case.method.clone(), format!("{base}{}", case.path))
        .body(case.body.clone());
    if let Some(content_type) = case.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(authorization) = &case.authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap()
}

/// Asserts an RFC 9457 problem with `status`, and returns it.
async fn assert_problem(response: reqwest::Response, status: u16, name: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{name}");
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/problem+json",
        "{name}"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status, "{name}: {problem}");
    for member in ["type", "title", "detail"] {
        assert!(
            problem[member].as_str().is_some_and(|v| !v.is_empty()),
            "{name}: `{member}` missing: {problem}"
        );
    }
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_and_publish_nothing() {
    let ingest = spawn_ingest(|_| {}).await;
    let client = reqwest::Client::new();
    let single = format!("{}/v1/feedback", ingest.url);

    // Accepted first, so the corpus can replay its Idempotency-Key with another body.
    let first = client
        .post(&single)
        .bearer_auth(KEY)
        .header("idempotency-key", "first-request")
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let known = client
        .post(&single)
        .bearer_auth(KEY)
        .json(&known_event())
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), 202);

    let corpus = corpus();
    assert!(corpus.len() >= 32, "a corpus of {} cases", corpus.len());
    let mut names = std::collections::HashSet::new();
    for case in &corpus {
        assert!(
            names.insert(case.name),
            "case names are distinct: {}",
            case.name
        );
        let response = send(&client, &ingest.url, case).await;
        let problem = assert_problem(response, case.status, case.name).await;
        for pointer in &case.pointers {
            assert!(
                problem["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["pointer"] == *pointer)),
                "{}: expected an error at {pointer}: {problem}",
                case.name
            );
        }
    }

    // 10 MB: ingest answers 413 after reading its 64 KB limit and closes the
    // connection, and the client, still uploading, may see the reset before the answer.
    // Either way nothing is accepted (checked below) and the next request is served.
    let mut huge = b"{\"text\": \"".to_vec();
    huge.resize(10 * 1024 * 1024, b'a');
    let response = client
        .post(&single)
        .bearer_auth(KEY)
        .header(CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await;
    match response {
        Ok(response) => {
            assert_problem(response, 413, "10 MB body").await;
        }
        Err(error) => assert!(error.is_request(), "10 MB body: {error:?}"),
    }

    // Markup in feedback is data, not a problem: accepted and kept byte for byte
    // (escaping is the renderers' job, /ops and notify's HTML e-mail).
    let markup = "<script>alert('x')</script> & \"quotes\" <b>bold</b> {{placeholder}} \u{202e}";
    let response = client
        .post(&single)
        .bearer_auth(KEY)
        .json(&json!({
            "channel": "chat",
            "customer": { "id": "c-<img src=x>" },
            "text": markup,
            "metadata": { "html": "<iframe>" }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // The service still serves; exactly the accepted events reach the topic.
    let response = client
        .post(&single)
        .bearer_auth(KEY)
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let mut texts: Vec<&str> = records.iter().filter_map(|r| r["text"].as_str()).collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            markup,
            valid()["text"].as_str().unwrap(),
            valid()["text"].as_str().unwrap(),
            valid()["text"].as_str().unwrap()
        ],
        "nothing from the bad requests: {records:?}"
    );
    let markup_record = records.iter().find(|r| r["text"] == markup).unwrap();
    assert_eq!(markup_record["customer"]["id"], "c-<img src=x>");
    assert_eq!(markup_record["metadata"]["html"], "<iframe>");
    assert!(records.iter().all(|r| r["source"] == "shopdesk"));
    let erasures = read_topic(
        &ingest.brokers,
        topics::PRIVACY_ERASURE,
        0,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert!(erasures.is_empty(), "no erasure was accepted: {erasures:?}");
    let preferences = read_topic(
        &ingest.brokers,
        topics::CUSTOMER_PREFERENCES,
        0,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        preferences.is_empty(),
        "no preferences were accepted: {preferences:?}"
    );
    ingest.shutdown.cancel();
}

/// A valid PUT publishes exactly the record asked for, keyed by the customer id as
/// feedback is keyed (percent-decoded, trimmed, NFC) and named after the key that set it
/// (a source's or an admin's), and answers 202 with its event id once the broker has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_are_published_exactly_as_set() {
    let ingest = spawn_ingest(with_admin_key).await;
    let client = reqwest::Client::new();
    let put = |path: &str, key: &str, body: Value| {
        client
            .put(format!("{}{path}", ingest.url))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let before = chrono::Utc::now();
    let mut answers = Vec::new();
    for (path, key, body) in [
        (
            // "shop/José" with a slash and a decomposed é.
            "/v1/customers/shop%2FJose%CC%81/preferences",
            KEY,
            json!({ "consent": true, "channels": ["webhook", "email"],
                    "language": " de-CH ", "unsubscribed": false }),
        ),
        (
            "/v1/customers/c-2/preferences",
            ADMIN_KEY,
            json!({ "consent": false }),
        ),
        (
            "/v1/customers/c-3/preferences",
            OTHER_KEY,
            json!({ "consent": true, "channels": null, "language": null, "unsubscribed": true }),
        ),
    ] {
        let response = put(path, key, body).await.unwrap();
        assert_eq!(response.status(), 202, "{path}");
        answers.push(response.json::<Value>().await.unwrap());
    }
    let after = chrono::Utc::now();
    let customers: Vec<&str> = answers
        .iter()
        .map(|a| a["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["shop/Jos\u{e9}", "c-2", "c-3"]);

    let expected = [
        CustomerPreferences {
            customer_id: "shop/Jos\u{e9}".into(),
            source: "shopdesk".into(),
            updated_at: before,
            consent: true,
            channels: Some(vec![DeliveryChannel::Webhook, DeliveryChannel::Email]),
            language: Some("de-CH".into()),
            unsubscribed: false,
        },
        CustomerPreferences {
            customer_id: "c-2".into(),
            source: "privacy".into(),
            updated_at: before,
            consent: false,
            channels: None,
            language: None,
            unsubscribed: false,
        },
        CustomerPreferences {
            customer_id: "c-3".into(),
            source: "surveyhub".into(),
            updated_at: before,
            consent: true,
            channels: None,
            language: None,
            unsubscribed: true,
        },
    ];
    let records = closeloop_testkit::read_records(
        &ingest.brokers,
        topics::CUSTOMER_PREFERENCES,
        3,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 3, "one record per request: {records:?}");
    for (answer, expected) in answers.iter().zip(expected) {
        let record = records
            .iter()
            .find(|r| r.value["event_id"] == answer["event_id"])
            .unwrap_or_else(|| panic!("the record of {answer}: {records:?}"));
        assert_eq!(record.key.as_deref(), Some(expected.customer_id.as_str()));
        let bytes = serde_json::to_vec(&record.value).unwrap();
        let envelope = decode::<CustomerPreferences>(&bytes).expect("notify can decode it");
        assert_eq!(envelope.schema, "customers.preferences.v1");
        let updated_at = envelope.data.updated_at;
        assert!(before <= updated_at && updated_at <= after, "{updated_at}");
        assert_eq!(
            envelope.data,
            CustomerPreferences {
                updated_at,
                ..expected
            }
        );
        // Absent stays absent on the wire: notify reads any channel, the feedback's locale.
        let on_the_wire = |field: &str| record.value.get(field).is_some();
        assert_eq!(on_the_wire("channels"), envelope.data.channels.is_some());
        assert_eq!(on_the_wire("language"), envelope.data.language.is_some());
    }

    // Other methods: 405 naming the one it takes; the route has its own metrics label.
    let get = client
        .get(format!("{}/v1/customers/c-2/preferences", ingest.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers()["allow"], "PUT");
    assert_problem(get, 405, "GET of preferences").await;
    let metrics = closeloop_testkit::get_text(&format!("{}/metrics", ingest.url)).await;
    let route = r#"route="/v1/customers/{customer_id}/preferences""#;
    for status in ["202", "405"] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("closeloop_http_requests_total")
                    && line.contains(route)
                    && line.contains(&format!("status=\"{status}\""))),
            "{status} on {route}: {metrics}"
        );
    }
    ingest.shutdown.cancel();
}

/// Preferences the broker does not acknowledge are not accepted: 503 with `Retry-After`,
/// and the same request again succeeds once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_the_broker_does_not_acknowledge_get_503() {
    let ingest = spawn_ingest(|config| config.delivery_timeout_ms = 1_000).await;
    let client = reqwest::Client::new();
    let url = format!("{}{PREFERENCES}", ingest.url);
    let put = || {
        client
            .put(&url)
            .bearer_auth(KEY)
            .json(&valid_preferences())
            .send()
    };
    // Warm up the producer's metadata while the broker is up (the first request may
    // outlast the short delivery timeout on a busy machine: wait for one to pass).
    closeloop_testkit::eventually(
        Duration::from_secs(30),
        "preferences accepted while the broker is up",
        || async { (put().await.ok()?.status() == 202).then_some(()) },
    )
    .await;

    ingest.broker.inject(Fault::BrokerDown(1)).unwrap();
    let failed = put().await.unwrap();
    assert!(failed.headers().contains_key(RETRY_AFTER));
    let problem = assert_problem(failed, 503, "broker down").await;
    assert_eq!(
        problem["type"],
        "https://closeloop.dev/problems/broker-unavailable"
    );
    ingest.broker.inject(Fault::BrokerUp(1)).unwrap();

    closeloop_testkit::eventually(
        Duration::from_secs(30),
        "preferences accepted again",
        || async { (put().await.ok()?.status() == 202).then_some(()) },
    )
    .await;
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer() {
    let ingest = spawn_ingest(|_| {}).await;
    let client = reqwest::Client::new();
    let batch = format!("{}/v1/feedback/batch", ingest.url);
    let body = json!({ "items": [valid(), valid()] });
    let post = |body: Value| {
        client
            .post(&batch)
            .bearer_auth(KEY)
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["accepted"], 2);

    let again = post(body.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["event_ids"], first["event_ids"], "the first answer");

    let other_body = post(json!({ "items": [valid()] })).await.unwrap();
    assert_problem(other_body, 422, "same key, different body").await;

    // Keys are per source: another source's same key is a new request.
    let other_source = client
        .post(&batch)
        .bearer_auth(OTHER_KEY)
        .header("Idempotency-Key", "order-42")
        .json(&json!({ "items": [valid()] }))
        .send()
        .await
        .unwrap();
    assert_eq!(other_source.status(), 202);

    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        3,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 3, "the replay published nothing new");
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    // 10 events at once, then one per 1000 s: the bucket cannot refill during the test.
    let ingest = spawn_ingest(|config| {
        config.rate_limit_per_source = 0.001;
        config.rate_limit_burst = 10;
    })
    .await;
    let client = reqwest::Client::new();
    let batch = format!("{}/v1/feedback/batch", ingest.url);
    let post = |key: &'static str, items: usize, idempotency_key: &'static str| {
        client
            .post(&batch)
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "items": vec![valid(); items] }))
            .send()
    };
    assert_eq!(post(KEY, 6, "a").await.unwrap().status(), 202);
    // 6 + 6 > 10: the whole batch is refused, not its first 4 events.
    let limited = post(KEY, 6, "b").await.unwrap();
    let retry_after: u64 = limited.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After in whole seconds");
    assert_problem(limited, 429, "over the limit").await;
    // What is left still passes, and the refused batch's key was not used up.
    assert_eq!(post(KEY, 4, "c").await.unwrap().status(), 202);
    assert_eq!(post(KEY, 1, "b").await.unwrap().status(), 429);
    // Another source has its own bucket.
    assert_eq!(post(OTHER_KEY, 10, "a").await.unwrap().status(), 202);

    let metrics = closeloop_testkit::get_text(&format!("{}/metrics", ingest.url)).await;
    let rate_limited = metrics
        .lines()
        .find(|line| {
            line.starts_with("closeloop_feedback_rejected_total")
                && line.contains("reason=\"rate_limited\"")
        })
        .unwrap_or_else(|| panic!("a rate_limited rejection count: {metrics}"));
    assert!(rate_limited.ends_with(" 2"), "{rate_limited}");

    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        20,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 20, "6 + 4 from shopdesk, 10 from surveyhub");
    ingest.shutdown.cancel();
}

/// What the input rules let through: a gzip body (inflated), a customer id in NFD
/// (published in NFC, so both spellings are one customer), and a retry of a known event
/// id with the same content (accepted again, published with the same id, downstream
/// dedupes it) even without `occurred_at`, whose default differs on every try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_nfc_and_event_id_retries_are_accepted() {
    let ingest = spawn_ingest(|_| {}).await;
    let client = reqwest::Client::new();
    let single = format!("{}/v1/feedback", ingest.url);
    let post = |body: Vec<u8>, encoding: Option<&'static str>| {
        let mut request = client
            .post(&single)
            .bearer_auth(KEY)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        request.send()
    };

    let mut gzipped = valid();
    gzipped["text"] = json!("Sent compressed, the parcel was late.");
    let response = post(gzip(gzipped.to_string().as_bytes()), Some("gzip"))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let mut decomposed = valid();
    decomposed["customer"]["id"] = json!("Jose\u{301}");
    decomposed["text"] = json!("Spelled in NFD.");
    let response = post(decomposed.to_string().into_bytes(), Some("identity"))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let mut retried = valid();
    retried["event_id"] = json!("0190f0a0-0000-7000-8000-0000000000cc");
    retried["text"] = json!("Sent twice.");
    for _ in 0..2 {
        let response = post(retried.to_string().into_bytes(), None).await.unwrap();
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["event_ids"], json!([retried["event_id"]]));
    }

    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(records
        .iter()
        .any(|r| r["text"] == "Sent compressed, the parcel was late."));
    let nfd = records
        .iter()
        .find(|r| r["text"] == "Spelled in NFD.")
        .unwrap();
    assert_eq!(nfd["customer"]["id"], "Jos\u{e9}");
    let twice: Vec<_> = records
        .iter()
        .filter(|r| r["text"] == "Sent twice.")
        .collect();
    assert_eq!(twice.len(), 2);
    assert!(twice.iter().all(|r| r["event_id"] == retried["event_id"]));
    ingest.shutdown.cancel();
}

/// A batch whose publish fails part-way (one broker down: the items on its partition time
/// out, the others are acknowledged) answers 503, and the retry with the same
/// Idempotency-Key publishes the same event ids, so what already got through is deduped
/// downstream instead of doubled under new ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_partial_publish_reuses_the_event_ids() {
    let ingest = spawn_ingest_on(2, |config| config.delivery_timeout_ms = 1_000).await;
    // Partition 0 on broker 1, partition 1 on broker 2, which then goes away.
    for partition in 0..2 {
        ingest
            .broker
            .inject(Fault::PartitionLeader {
                topic: topics::FEEDBACK_RAW.into(),
                partition,
                broker: partition + 1,
            })
            .unwrap();
    }
    let client = reqwest::Client::new();
    let batch = format!("{}/v1/feedback/batch", ingest.url);
    // Many customers, so both partitions get some of the items.
    let items: Vec<Value> = (0..10)
        .map(|n| {
            let mut item = valid();
            item["customer"]["id"] = json!(format!("c-{n}"));
            item
        })
        .collect();
    let post = || {
        client
            .post(&batch)
            .bearer_auth(KEY)
            .header("Idempotency-Key", "partial-1")
            .json(&json!({ "items": items }))
            .send()
    };
    // Warm up the producer's metadata while both brokers are up.
    let warm = client
        .post(format!("{}/v1/feedback", ingest.url))
        .bearer_auth(KEY)
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 202);
    let warm: Value = warm.json().await.unwrap();
    let warm_id = warm["event_ids"][0].as_str().unwrap().to_owned();

    ingest.broker.inject(Fault::BrokerDown(2)).unwrap();
    let failed = post().await.unwrap();
    assert_problem(failed, 503, "partial publish").await;
    ingest.broker.inject(Fault::BrokerUp(2)).unwrap();

    let answer: Value =
        closeloop_testkit::eventually(Duration::from_secs(30), "the retry is accepted", || async {
            let response = post().await.ok()?;
            (response.status() == 202).then_some(response.json::<Value>().await.ok()?)
        })
        .await;
    let accepted: std::collections::BTreeSet<String> = answer["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accepted.len(), 10);

    let records = read_topic(
        &ingest.brokers,
        topics::FEEDBACK_RAW,
        11,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let mut published: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect();
    assert!(published.remove(&warm_id));
    assert_eq!(
        published, accepted,
        "every published id is one the retry answered with: nothing doubled under a new id"
    );
    ingest.shutdown.cancel();
}

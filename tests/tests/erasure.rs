//! GDPR erasure across the whole loop: a customer's feedback raises an action, the action
//! is resolved and the customer told; then the customer asks to be forgotten. A source's
//! erasure reaches only what came through that source; an admin key's, every source.
//! Afterwards no table of any service — enumerated generically, every column of every
//! table, so a table added later is covered too — holds their id, e-mail, reference or
//! words, neither do the SQLite files on disk (write-ahead log included), the trends API
//! no longer quotes them (in actions nor in emerging topics), and the theme's counts are
//! what they were.

use std::time::{Duration, Instant};

use closeloop::up::{dev_admin_key, dev_key};
use closeloop_runtime::Pseudonyms;
use closeloop_store::{sqlx, Backend, Database, DatabaseArgs};
use closeloop_telemetry::Secret;
use closeloop_tests::{eventually, loop_configs, start_loop_with};
use serde_json::{json, Value};

/// What must be gone after the erasure. No LIKE wildcards (`%`, `_`) in them.
const CUSTOMER: &str = "zq-erasure-subject-4711";
const EMAIL: &str = "zelda.quokka@example.org";
const REFERENCE: &str = "ZQREF-90817";
const WORD: &str = "Quokkaparcel";
/// What the customer told the other source (surveyhub) only.
const SURVEY_WORD: &str = "Wombatcrate";
/// The services' pseudonym key in this test.
const PSEUDONYM_KEY: &str = "erasure-test-pseudonym-key";

fn feedback(customer: &str, email: Option<&str>, text: &str) -> Value {
    json!({
        "channel": "review",
        "touchpoint": "delivery",
        "customer": {
            "id": customer, "locale": "en-GB", "consent": true, "email": email,
            "reference": email.map(|_| REFERENCE)
        },
        "text": text,
        "rating": 1
    })
}

/// Where a needle was found: (service, table, column, rows).
type Finding = (String, String, String, i64);

/// Every table of a service's store with all its columns (read as text).
async fn tables(db: &Database, schema: Option<&str>) -> Vec<(String, Vec<String>)> {
    let names: Vec<(String, String)> = match db.backend() {
        Backend::Sqlite => {
            sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' ORDER BY m.name, p.cid",
            )
            .fetch_all(db.pool())
            .await
        }
        Backend::Postgres => {
            sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            )
            .bind(schema.expect("a PostgreSQL store has a schema"))
            .fetch_all(db.pool())
            .await
        }
    }
    .expect("list tables");
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for (table, column) in names {
        match tables.last_mut() {
            Some((last, columns)) if *last == table => columns.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    tables
}

/// Every (table, column) of every service store that contains one of `needles`.
async fn scan(stores: &[(&str, DatabaseArgs)], needles: &[&str]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut scanned_tables = 0;
    for (service, args) in stores {
        let config = args.config(service);
        let db = Database::connect(&config).await.expect("connect");
        for (table, columns) in tables(&db, config.schema.as_deref()).await {
            scanned_tables += 1;
            for column in columns {
                for needle in needles {
                    // Every column, whatever its type, cast to text: personal data in a
                    // JSON or numeric-looking column counts as much as in a TEXT one.
                    let rows: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM \"{table}\" \
                         WHERE LOWER(CAST(\"{column}\" AS TEXT)) LIKE $1"
                    ))
                    .bind(format!("%{}%", needle.to_lowercase()))
                    .fetch_one(db.pool())
                    .await
                    .unwrap_or_else(|e| panic!("scan {service}.{table}.{column}: {e}"));
                    if rows > 0 {
                        findings.push((service.to_string(), table.clone(), column.clone(), rows));
                    }
                }
            }
        }
        db.close().await;
    }
    assert!(scanned_tables >= 8, "only {scanned_tables} tables found");
    findings
}

/// The first column of `sql`'s rows in a service's store.
async fn strings(args: &DatabaseArgs, service: &str, sql: &str) -> Vec<String> {
    let db = Database::connect(&args.config(service))
        .await
        .expect("connect");
    let rows = sqlx::query_scalar(sql)
        .fetch_all(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{service}: {sql}: {e}"));
    db.close().await;
    rows
}

/// The SQLite files of the stores (database, `-wal`, `-shm`) holding one of `needles`
/// byte for byte, as (file, needle); none on PostgreSQL.
fn files_holding(stores: &[(&str, DatabaseArgs)], needles: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (_, args) in stores {
        let Some(path) = args.database_url.strip_prefix("sqlite://") else {
            continue;
        };
        let path = path.split('?').next().unwrap_or(path);
        for file in ["", "-wal", "-shm"].map(|suffix| format!("{path}{suffix}")) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue; // no WAL (yet, or any more)
            };
            for needle in needles {
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push((file.clone(), needle.to_string()));
                }
            }
        }
    }
    found
}

/// The theme's counts as the trends API reports them from its store: total mentions
/// and distinct customers, over a fixed span.
async fn theme_counts(
    client: &reqwest::Client,
    trends: std::net::SocketAddr,
    since: &str,
) -> (u64, u64) {
    let stats: Value = client
        .get(format!("http://{trends}/v1/themes/delivery_time/stats"))
        .query(&[("window_minutes", "44640"), ("since", since)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows = stats["windows"]
        .as_array()
        .unwrap_or_else(|| panic!("{stats}"));
    windows.iter().fold((0, 0), |(m, c), w| {
        (
            m + w["mentions"].as_u64().unwrap(),
            c + w["distinct_customers"].as_u64().unwrap(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_customer_is_nowhere_in_any_store_nor_on_disk() {
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut configs = loop_configs();
    for pseudonym in [
        &mut configs.categorise.pseudonym,
        &mut configs.trends.pseudonym,
        &mut configs.notify.pseudonym,
    ] {
        pseudonym.pseudonym_key = Some(Secret::new(PSEUDONYM_KEY));
    }
    let stores = [
        ("ingest", configs.ingest.database.clone()),
        ("categorise", configs.categorise.database.clone()),
        ("trends", configs.trends.database.clone()),
        ("notify", configs.notify.database.clone()),
    ];
    let (stack, sink) = start_loop_with(configs).await;
    let client = reqwest::Client::new();

    let posts = [
        (
            "shopdesk",
            feedback(
                CUSTOMER,
                Some(EMAIL),
                &format!("My {WORD} delivery arrived two weeks late. Really disappointing."),
            ),
        ),
        (
            "shopdesk",
            feedback(
                CUSTOMER,
                Some(EMAIL),
                &format!("Still waiting for the {WORD} order, the delivery is late again!"),
            ),
        ),
        (
            "shopdesk",
            feedback(
                "other-1",
                None,
                "Delivery was delayed by ten days, terrible.",
            ),
        ),
        (
            "shopdesk",
            feedback(
                "other-2",
                None,
                "The parcel arrived far too late, awful experience.",
            ),
        ),
        (
            "shopdesk",
            feedback("other-3", None, "Delivery took three weeks, far too late."),
        ),
    ];
    for (i, (source, body)) in posts.iter().enumerate() {
        let response = client
            .post(format!("http://{}/v1/feedback", stack.ingest))
            .bearer_auth(dev_key(source))
            .header("Idempotency-Key", format!("erasure-test-{i}"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }

    let action: Value = eventually(
        Duration::from_secs(60),
        "an open delivery_time action quoting the customer",
        || {
            let client = client.clone();
            let url = format!("http://{}/v1/actions?status=open", stack.trends);
            async move {
                let actions: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                actions
                    .as_array()?
                    .iter()
                    .find(|a| a["theme"] == "delivery_time" && a.to_string().contains(WORD))
                    .cloned()
            }
        },
    )
    .await;
    let action_id = action["action_id"].as_str().unwrap().to_owned();
    // The same customer tells another source too (after the action quotes them, so which
    // of their words the evidence picks stays deterministic).
    let response = client
        .post(format!("http://{}/v1/feedback", stack.ingest))
        .bearer_auth(dev_key("surveyhub"))
        .json(&feedback(
            CUSTOMER,
            None,
            &format!("The {SURVEY_WORD} delivery was late as well, terrible."),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    eventually(
        Duration::from_secs(30),
        "the surveyhub feedback in trends and notify",
        || async {
            let found = scan(&stores, &[SURVEY_WORD]).await;
            let holds = |service: &str| found.iter().any(|(s, ..)| s == service);
            (holds("trends") && holds("notify")).then_some(())
        },
    )
    .await;
    let response = client
        .post(format!(
            "http://{}/v1/actions/{action_id}/resolve",
            stack.trends
        ))
        .json(&json!({
            "message": { "en": "We added a second carrier.", "de": "Zweiter Versanddienst." },
            "resolved_by": "ops@example.com"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    // Notify has stored (and sent) the customer's delivery: its tables hold them too.
    eventually(Duration::from_secs(30), "the customer was told", || {
        let sink = sink.clone();
        async move {
            sink.received()
                .iter()
                .any(|r| r.payload["customer"]["id"] == CUSTOMER)
                .then_some(())
        }
    })
    .await;

    // The feedback trends keeps for emerging topics holds the customer's words twice
    // (the excerpt, and the phrases cut from it): found by the scan like any column.
    eventually(
        Duration::from_secs(30),
        "the customer's words in the feedback kept for emerging topics",
        || async {
            let found = scan(&stores, &[WORD]).await;
            let holds = |column: &str| {
                found.iter().any(|(service, table, c, _)| {
                    service == "trends" && table == "trends_topic_feedback" && c == column
                })
            };
            (holds("excerpt") && holds("phrases")).then_some(())
        },
    )
    .await;
    // The scan finds what is there: otherwise a clean scan below would prove nothing.
    let needles = [CUSTOMER, EMAIL, REFERENCE, WORD, SURVEY_WORD];
    let before = scan(&stores, &needles).await;
    for needle_service in ["categorise", "trends", "notify"] {
        assert!(
            before.iter().any(|(service, ..)| service == needle_service),
            "{needle_service} holds nothing of the customer before the erasure: {before:?}"
        );
    }
    let counts_before = theme_counts(&client, stack.trends, &since).await;
    assert!(counts_before.0 >= 5, "{counts_before:?}");
    let erase = |key: String| {
        let client = client.clone();
        let url = format!("http://{}/v1/erasure", stack.ingest);
        async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({ "customer_id": CUSTOMER }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "{:?}", response.text().await);
        }
    };

    // surveyhub asks: only what came through surveyhub goes.
    erase(dev_key("surveyhub")).await;
    let pseudonym = Pseudonyms::new(PSEUDONYM_KEY).of(CUSTOMER);
    let categorise = &stores[1].1;
    eventually(
        Duration::from_secs(60),
        "surveyhub's feedback of the customer erased in every service",
        || async {
            let surveyhub = strings(
                categorise,
                "categorise",
                "SELECT customer_id FROM categorise_feedback WHERE source = 'surveyhub'",
            )
            .await;
            let left = scan(&stores, &[SURVEY_WORD]).await;
            (surveyhub == [pseudonym.clone()] && left.is_empty()).then_some(())
        },
    )
    .await;
    // Keyed: neither the development key's pseudonym nor anything without the key.
    assert_ne!(pseudonym, Pseudonyms::development().of(CUSTOMER));
    let kept = scan(&stores, &[CUSTOMER, EMAIL, REFERENCE, WORD]).await;
    for (service, needle) in [
        ("categorise", CUSTOMER),
        ("trends", CUSTOMER),
        ("trends", WORD),
        ("notify", CUSTOMER),
        ("notify", EMAIL),
        ("notify", REFERENCE),
        ("notify", WORD),
    ] {
        let holds = scan(&stores, &[needle])
            .await
            .iter()
            .any(|(s, ..)| s == service);
        assert!(
            holds,
            "a surveyhub erasure removed shopdesk's {needle} from {service}: {kept:?}"
        );
    }

    // The admin key erases the customer everywhere.
    erase(dev_admin_key()).await;

    // Each service applies the erasure on its own consumer; wait until the stores are
    // clean, and name what is left if they never get there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = scan(&stores, &needles).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "personal data left after the erasure (service, table, column, rows): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nor on disk: not in free pages of the database files, not in old page images in
    // their write-ahead logs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = files_holding(&stores, &needles);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "personal data left on disk after the erasure (file, needle): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The API no longer quotes the customer…
    let action: Value = client
        .get(format!("http://{}/v1/actions/{action_id}", stack.trends))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = action.to_string();
    assert!(
        !shown.contains(WORD) && !shown.contains(CUSTOMER),
        "{shown}"
    );
    assert!(
        action["evidence"]["excerpts"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "the other customers' excerpts stay: {shown}"
    );
    for kind in ["unmatched", "negative"] {
        let topics = closeloop_testkit::get_text(&format!(
            "http://{}/v1/topics/emerging?kind={kind}",
            stack.trends
        ))
        .await;
        assert!(
            topics.contains("\"topics\"") && !topics.contains(WORD) && !topics.contains(CUSTOMER),
            "{topics}"
        );
    }
    // …and the counts the detector and the statistics stand on are unchanged.
    assert_eq!(
        theme_counts(&client, stack.trends, &since).await,
        counts_before
    );
    let notifications = closeloop_testkit::get_text(&format!(
        "http://{}/v1/notifications?action={action_id}",
        stack.notify
    ))
    .await;
    assert!(!notifications.contains(CUSTOMER), "{notifications}");

    stack.stop().await;
    let left = files_holding(&stores, &needles);
    assert!(
        left.is_empty(),
        "personal data on disk after a clean stop (file, needle): {left:?}"
    );
}

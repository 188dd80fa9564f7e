//! One HTTP edge: the same failure is the same problem (`type`, `title`, status) in every
//! service, every error is problem+json, an empty bearer token is no token, and one ops
//! token guards both operator APIs (trends' and notify's).

use closeloop::up::dev_key;
use closeloop_tests::{init_logs, loop_configs, start_loop_with};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::Value;

const OPS_TOKEN: &str = "ops-token-for-the-edge-test";

/// The problem a response carries, after checking it is problem+json.
async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_failure_is_the_same_problem_in_every_service() {
    init_logs();
    let mut configs = loop_configs();
    // Given to trends only: the stack guards notify's API with it too.
    configs.trends.ops_token = Some(OPS_TOKEN.parse().expect("a token"));
    let (stack, _sink) = start_loop_with(configs).await;
    let client = reqwest::Client::new();
    let action = uuid::Uuid::now_v7();

    // Unknown paths: not-found everywhere.
    let mut not_found = Vec::new();
    for addr in [stack.ingest, stack.categorise, stack.trends, stack.notify] {
        let response = client
            .get(format!("http://{addr}/no/such/path"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .expect("answers");
        not_found.push(problem(response).await);
    }
    for (status, body) in &not_found {
        assert_eq!(*status, 404);
        assert_eq!(body["type"], "https://closeloop.dev/problems/not-found");
        assert_eq!(body["title"], not_found[0].1["title"]);
    }

    // Malformed JSON: ingest's feedback and trends' resolve answer the same problem.
    let ingest = client
        .post(format!("http://{}/v1/feedback", stack.ingest))
        .bearer_auth(dev_key("shopdesk"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .expect("ingest answers");
    let trends = client
        .post(format!(
            "http://{}/v1/actions/{action}/resolve",
            stack.trends
        ))
        .bearer_auth(OPS_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"message\": ")
        .send()
        .await
        .expect("trends answers");
    let (ingest, trends) = (problem(ingest).await, problem(trends).await);
    assert_eq!(ingest.0, 400);
    assert_eq!(ingest.0, trends.0);
    assert_eq!(
        ingest.1["type"],
        "https://closeloop.dev/problems/malformed-json"
    );
    assert_eq!(ingest.1["type"], trends.1["type"]);
    assert_eq!(ingest.1["title"], trends.1["title"]);

    // notify's API lists customers: the ops token or nothing.
    let notifications = format!("http://{}/v1/notifications?action={action}", stack.notify);
    for wrong in [None, Some("not-the-token"), Some("   ")] {
        let mut request = client.get(&notifications);
        if let Some(token) = wrong {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("notify answers");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let (status, body) = problem(response).await;
        assert_eq!(status, 401, "{wrong:?}");
        assert_eq!(body["type"], "https://closeloop.dev/problems/unauthorized");
    }
    let listed = client
        .get(&notifications)
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .expect("notify answers");
    assert_eq!(listed.status(), 200);

    // An empty bearer token is no token, in ingest and in trends alike; both name the
    // scheme they want.
    for url in [
        format!("http://{}/v1/feedback", stack.ingest),
        format!("http://{}/v1/actions/{action}/acknowledge", stack.trends),
    ] {
        let response = client
            .post(&url)
            .header(AUTHORIZATION, "Bearer    ")
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer", "{url}");
        let (status, body) = problem(response).await;
        assert_eq!(status, 401, "{url}");
        assert_eq!(body["type"], "https://closeloop.dev/problems/unauthorized");
    }

    // A pointer into a key with `/` and `~` is escaped (RFC 6901).
    let response = client
        .post(format!(
            "http://{}/v1/actions/{action}/resolve",
            stack.trends
        ))
        .bearer_auth(OPS_TOKEN)
        .json(&serde_json::json!({"message": {"a/b~c": 5}, "resolved_by": "ops"}))
        .send()
        .await
        .expect("trends answers");
    let (status, body) = problem(response).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "https://closeloop.dev/problems/invalid-body");
    assert_eq!(body["errors"][0]["pointer"], "/message/a~1b~0c", "{body}");
    stack.stop().await;
}

/// Every service runs with the HTTP limits: a connection that sends nothing is cut after
/// the head timeout and counted, while a huge declared body is refused with 413 before
/// any `100 Continue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_cuts_silent_connections_and_refuses_huge_bodies_early() {
    use closeloop_testkit::{metric_value, scrape_metrics};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    init_logs();
    let mut configs = loop_configs();
    let header_timeout = Duration::from_millis(500);
    configs.ingest.http.header_timeout = header_timeout;
    configs.categorise.http.header_timeout = header_timeout;
    configs.trends.http.header_timeout = header_timeout;
    configs.notify.http.header_timeout = header_timeout;
    let (stack, _sink) = start_loop_with(configs).await;
    let services = [stack.ingest, stack.categorise, stack.trends, stack.notify];

    for addr in services {
        let mut silent = TcpStream::connect(addr).await.expect("connects");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest));
        assert!(
            read.await.is_ok(),
            "{addr} never closed a silent connection"
        );
        closeloop_tests::eventually(Duration::from_secs(10), "the cut counted", || async move {
            let metrics = scrape_metrics(addr).await;
            let cut = metric_value(
                &metrics,
                "closeloop_http_connections_closed_total",
                &[r#"reason="header_timeout""#],
            );
            (cut >= 1.0).then_some(())
        })
        .await;
    }

    let mut huge = TcpStream::connect(stack.ingest).await.expect("connects");
    let head = format!(
        "POST /v1/feedback HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\
         Expect: 100-continue\r\n\r\n",
        dev_key("shopdesk")
    );
    huge.write_all(head.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), huge.read_to_end(&mut answer));
    let _ = read.await.expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    stack.stop().await;
}

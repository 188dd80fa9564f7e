//! The notifications API names customers: with an ops token configured it answers only
//! to that token, as trends' API does; the probes and /metrics stay open.

use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::Value;

use crate::helpers::spawn_notify;

const TOKEN: &str = "notify-ops-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_wants_the_ops_token_when_one_is_set() {
    let notify =
        spawn_notify(|config| config.ops_token = Some(TOKEN.parse().expect("a token"))).await;
    let url = format!("{}/v1/notifications?status=dead", notify.base);

    for (what, authorization) in [
        ("no credentials", None),
        ("a wrong token", Some("Bearer not-the-token")),
        ("an empty token", Some("Bearer ")),
        ("another scheme", Some("Basic notify-ops-token")),
    ] {
        let mut request = notify.http.get(&url);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("notify answers");
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer", "{what}");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/problem+json",
            "{what}"
        );
        let problem: Value = response.json().await.expect("a problem");
        assert_eq!(
            problem["type"],
            "https://closeloop.dev/problems/unauthorized"
        );
    }

    let listed = notify
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("notify answers");
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.expect("JSON");
    assert_eq!(listed["status"], "dead");
    assert_eq!(notify.get("status=pending").await["status"], "pending");

    for open in ["/healthz", "/metrics"] {
        let response = notify
            .http
            .get(format!("{}{open}", notify.base))
            .send()
            .await
            .expect("notify answers");
        assert_eq!(response.status(), 200, "{open} needs no token");
    }
    notify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_api_stays_open() {
    let notify = spawn_notify(|config| config.ops_token = None).await;
    assert_eq!(notify.get("status=dead").await["status"], "dead");
    notify.stop().await;
}

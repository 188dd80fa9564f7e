//! `/ops` sessions and forgery checks over plain HTTP: a random session per sign-in that
//! signing out and expiry end, forms that must carry the session's CSRF token and come
//! from this site, and a JSON API that refuses the content types a cross-site page can
//! post without asking (no token configured, as `closeloop up` runs by default).

use closeloop_events::ActionEvent;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{negative, ActionReader, Bus, TestApp};

const TOKEN: &str = "ops-session-token";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The CSRF token the page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned()
}

async fn raise_action(bus: &Bus, actions: &ActionReader) -> ActionEvent {
    for customer in ["c1", "c2", "c3"] {
        bus.publish(&negative(customer)).await;
    }
    actions.next().await
}

/// What the page shows the browser holding `cookie`.
async fn page(app: &TestApp, client: &reqwest::Client, cookie: &str) -> String {
    client
        .get(app.url("/ops"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("trends answers")
        .text()
        .await
        .expect("a page")
}

async fn status_of(app: &TestApp, action: &ActionEvent) -> Value {
    let mut request = app
        .client
        .get(app.url(&format!("/v1/actions/{}", action.action_id)));
    request = request.bearer_auth(TOKEN);
    let detail: Value = request.send().await.unwrap().json().await.unwrap();
    detail["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sign_in_is_its_own_session_until_sign_out_or_expiry() {
    let bus = Bus::start();
    let database = closeloop_store::testing::database_args("trends");
    let mut config = bus.config(database.clone());
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    config.ops_secure_cookie = true;
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());
    let action = raise_action(&bus, &actions).await;
    let client = no_redirects();

    let mut sessions = Vec::new();
    for _ in 0..2 {
        let signed_in = client
            .post(app.url("/ops/login"))
            .header("origin", &app.address)
            .form(&[("token", TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let set_cookie = signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/ops",
            "Max-Age=28800",
            "Secure",
        ] {
            assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
        }
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let shown = page(&app, &client, &cookie).await;
        assert!(shown.contains(&format!("id=\"action-{}\"", action.action_id)));
        sessions.push((cookie, csrf_of(&shown)));
    }
    let [(first, first_csrf), (second, second_csrf)] = &sessions[..] else {
        unreachable!()
    };
    assert_ne!(first, second, "a new random session id per sign-in");
    assert_ne!(first_csrf, second_csrf, "a CSRF token per session");
    // Sixty-four hex digits: 256 random bits.
    let id = first.trim_start_matches("closeloop_ops=");
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    // One session's CSRF token is no good in another session.
    let acknowledge = app.url(&format!("/ops/actions/{}/acknowledge", action.action_id));
    let crossed = client
        .post(&acknowledge)
        .header("origin", &app.address)
        .header("cookie", second)
        .form(&[
            ("csrf", first_csrf.as_str()),
            ("acknowledged_by", "mallory"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);

    // Signing out needs the session's form, then ends it: the old cookie gets the
    // sign-in page, and its forms a 401, though it is replayed as it was.
    let logout = |cookie: &str, csrf: &str| {
        client
            .post(app.url("/ops/logout"))
            .header("origin", &app.address)
            .header("cookie", cookie)
            .form(&[("csrf", csrf)])
            .send()
    };
    let forged = logout(first, "not-the-csrf-token").await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        page(&app, &client, first).await.contains("Open actions"),
        "still signed in"
    );
    let signed_out = logout(first, first_csrf).await.unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    let cleared = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = page(&app, &client, first).await;
    assert!(after.contains("name=\"token\""), "the sign-in page");
    assert!(!after.contains(&action.action_id.to_string()));
    let replayed = client
        .post(&acknowledge)
        .header("origin", &app.address)
        .header("cookie", first)
        .form(&[
            ("csrf", first_csrf.as_str()),
            ("acknowledged_by", "mallory"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&app, &action).await, "open", "nothing changed");
    assert!(
        page(&app, &client, second).await.contains("Open actions"),
        "the other session lives on"
    );

    // Expiry: the stored session is past its time (as if eight hours went by).
    let db = closeloop_store::Database::connect(&database.config("trends"))
        .await
        .expect("the service's database");
    closeloop_store::sqlx::query("UPDATE trends_ops_sessions SET expires_at_ms = 0")
        .execute(db.pool())
        .await
        .expect("sessions expired");
    assert!(page(&app, &client, second).await.contains("name=\"token\""));
    let expired = client
        .post(&acknowledge)
        .header("origin", &app.address)
        .header("cookie", second)
        .form(&[("csrf", second_csrf.as_str()), ("acknowledged_by", "ana")])
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&app, &action).await, "open");

    // The next sign-in prunes what expired.
    let signed_in = client
        .post(app.url("/ops/login"))
        .header("origin", &app.address)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let (left,): (i64,) =
        closeloop_store::sqlx::query_as("SELECT COUNT(*) FROM trends_ops_sessions")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(left, 1, "only the new session is stored");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_another_site_can_neither_post_forms_nor_json() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = None;
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());
    let action = raise_action(&bus, &actions).await;
    let client = no_redirects();

    // The open page needs no sign-in, and its cookie-less session still has a CSRF token.
    let shown = page(&app, &client, "").await;
    assert!(shown.contains(&format!("id=\"action-{}\"", action.action_id)));
    assert!(!shown.contains("/ops/logout"), "nothing to sign out of");
    let csrf = csrf_of(&shown);

    let acknowledge = app.url(&format!("/ops/actions/{}/acknowledge", action.action_id));
    let post = |headers: Vec<(&'static str, String)>, csrf: Option<&str>| {
        let mut request = client.post(&acknowledge);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut fields = vec![("acknowledged_by", "mallory")];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        request.form(&fields).send()
    };
    let ours = app.address.clone();
    for (what, headers, csrf, status) in [
        (
            "another site's Origin",
            vec![("origin", "https://evil.example".to_owned())],
            Some(csrf.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "an opaque Origin",
            vec![("origin", "null".to_owned())],
            Some(csrf.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "another site's Referer",
            vec![("referer", "https://evil.example/ops".to_owned())],
            Some(csrf.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "neither header",
            vec![],
            Some(csrf.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "no CSRF token",
            vec![("origin", ours.clone())],
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "a wrong CSRF token",
            vec![("origin", ours.clone())],
            Some("0000"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let response = post(headers, csrf).await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(
            status_of(&app, &action).await,
            "open",
            "{what} changed nothing"
        );
    }
    let refused = post(
        vec![("origin", "https://evil.example".to_owned())],
        Some(csrf.as_str()),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(refused.contains("Cross-site request refused"), "{refused}");

    // The JSON API refuses what a page on another site can post without a CORS
    // preflight (text/plain, form-encoded, multipart): every step, nothing changes.
    for step in ["acknowledge", "assign", "resolve", "reopen"] {
        for content_type in [
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            // No Content-Type at all (a fetch with a string body in no-cors mode).
            None,
        ] {
            let mut request = app
                .client
                .post(app.url(&format!("/v1/actions/{}/{step}", action.action_id)));
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request
                .body(
                    r#"{"acknowledged_by":"mallory","assignee":"m","assigned_by":"m","resolved_by":"m","message":{"en":"pwned"},"reopened_by":"m"}"#,
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{step} with {content_type:?}"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(
                problem["type"],
                "https://closeloop.dev/problems/unsupported-media-type"
            );
        }
    }
    assert_eq!(status_of(&app, &action).await, "open");

    // The page's own form, as a browser posts it (Origin of this site, or only a Referer
    // from an older browser), goes through.
    let response = post(
        vec![("referer", format!("{ours}/ops"))],
        Some(csrf.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&app, &action).await, "acknowledged");
    app.stop().await;
}

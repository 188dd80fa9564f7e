//! Ops alerts end to end: a raised action reaches a Slack-, a Teams- and a
//! webhook-shaped receiver in their shapes, customer text escaped for Slack and intact
//! elsewhere, the webhook signed; a 503 is retried, a receiver that is always down
//! dead-letters; a second raise within the quiet period is suppressed, a replay adds
//! nothing, and an action whose customers doubled escalates.

use closeloop_events::{ActionEvent, ActionEventKind, ActionStatus, Envelope, EvidenceExcerpt};
use closeloop_notify::signature;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{resolved, spawn_notify, start_receiver, wait_until, Received, SECRET};

const TRICKY: &str = "<@channel> & *bold*";

fn action(kind: ActionEventKind, action_id: Uuid, customers: u32) -> ActionEvent {
    let mut event = resolved(action_id, &[]);
    event.kind = kind;
    event.status = ActionStatus::Open;
    event.resolution = None;
    event.evidence.distinct_customers = customers;
    event.evidence.mentions = customers * 2;
    event.evidence.negative_mentions = customers + 1;
    event.evidence.reason = "7 negative mentions in 1h, 3.5× the baseline".into();
    event.evidence.excerpts = [TRICKY, "Two weeks late.", "Nobody answers", "a fourth"]
        .iter()
        .map(|text| EvidenceExcerpt {
            feedback_id: Uuid::now_v7(),
            customer_id: "anna".into(),
            excerpt: (*text).into(),
            given_at: event.raised_at,
        })
        .collect();
    event
}

fn json(received: &Received) -> Value {
    serde_json::from_slice(&received.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_alerts_reach_slack_teams_and_a_signed_webhook() {
    let (slack, slack_addr) = start_receiver(0).await;
    let (teams, teams_addr) = start_receiver(0).await;
    // The webhook receiver fails its first request: retried, then delivered.
    let (hook, hook_addr) = start_receiver(1).await;
    let (down, down_addr) = start_receiver(0).await;
    let routes = format!(
        r#"
[[route]]
name = "ops-slack"
theme = "*"
kind = "slack"
url = "http://{slack_addr}/hook/ok"

[[route]]
name = "ops-teams"
theme = "*"
kind = "teams"
url = "http://{teams_addr}/hook/ok"

[[route]]
name = "ops-hook"
theme = "*"
kind = "webhook"
url = "http://{hook_addr}/hook/ok"
secret = "{SECRET}"
language = "de"

[[route]]
name = "ops-down"
theme = "*"
kind = "webhook"
url = "http://{down_addr}/hook/down"
events = ["raised"]
"#
    );
    let path = std::env::temp_dir().join(format!("ops-routes-{}.toml", Uuid::now_v7()));
    std::fs::write(&path, routes).expect("routes file written");
    let notify = spawn_notify(|config| {
        config.max_attempts = 3;
        config.ops_alerts = Some(path.clone());
        config.ops_url = "https://trends.example.com/ops".parse().unwrap();
    })
    .await;
    let metric = |kind: &'static str, result: &'static str| {
        let notify = &notify;
        async move {
            notify
                .metric(
                    "closeloop_ops_alerts_total",
                    &[&format!("kind=\"{kind}\""), &format!("result=\"{result}\"")],
                )
                .await
        }
    };

    let first = Uuid::now_v7();
    let raised = Envelope::new(action(ActionEventKind::Raised, first, 3));
    notify
        .publisher
        .publish(&raised, None)
        .await
        .expect("acked");

    wait_until("slack, teams and the webhook got the alert", || async {
        slack.accepted().len() == 1 && teams.accepted().len() == 1 && hook.accepted().len() == 1
    })
    .await;
    wait_until("the dead route dead-lettered", || async {
        metric("webhook", "dead_lettered").await == 1.0
    })
    .await;
    let link = format!("https://trends.example.com/ops#action-{first}");

    // Slack: fallback text and blocks; the customer's `<@channel>` cannot ping anyone.
    let body = json(&slack.accepted()[0]);
    assert!(body["text"].as_str().unwrap().contains("delivery time"));
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "New action: delivery time");
    let slack_text = body.to_string();
    assert!(
        slack_text.contains("&lt;@channel&gt; &amp; *bold*"),
        "{slack_text}"
    );
    assert!(!slack_text.contains("<@channel>"), "{slack_text}");
    assert!(slack_text.contains("3.5× the baseline"));
    assert!(!slack_text.contains("a fourth"), "three excerpts at most");
    let button = &blocks.last().unwrap()["elements"][0];
    assert_eq!(button["url"], link.as_str());

    // Teams: an Adaptive Card 1.4 in a workflow message; the excerpt as written.
    let body = json(&teams.accepted()[0]);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert!(card["body"]
        .as_array()
        .unwrap()
        .iter()
        .any(|block| block["text"] == TRICKY));
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], link.as_str());

    // The webhook: retried after its 503 with the same id, signed, in German.
    let requests = hook.seen();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].status, Some(503));
    assert_eq!(requests[0].webhook_id(), requests[1].webhook_id());
    let delivered = &hook.accepted()[0];
    let timestamp: i64 = delivered.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(signature::verify(
        SECRET,
        &delivered.webhook_id(),
        timestamp,
        &delivered.body,
        delivered.headers["webhook-signature"].to_str().unwrap(),
    ));
    let body = json(delivered);
    assert_eq!(body["type"], "closeloop.ops_alert");
    assert_eq!(body["alert"], "raised");
    assert_eq!(body["action_id"], first.to_string());
    assert_eq!(body["title"], "Neue Maßnahme: Lieferzeit");
    assert_eq!(body["excerpts"][0], TRICKY);
    assert_eq!(body["counts"]["distinct_customers"], 3);
    assert_eq!(body["url"], link.as_str());

    // Always 503: three attempts, then dead; counted, and not among the customers'
    // dead letters.
    assert_eq!(down.seen().len(), 3);
    assert_eq!(
        metric("webhook", "failed").await,
        3.0,
        "1 retried + 2 before dead"
    );
    assert_eq!(
        notify.get("status=dead").await["deliveries"],
        serde_json::json!([])
    );
    assert_eq!(
        notify.notifications(first).await["deliveries"],
        serde_json::json!([])
    );

    // A second action on the theme within the quiet period: every route keeps quiet.
    let second = Uuid::now_v7();
    notify
        .publish(action(ActionEventKind::Raised, second, 4))
        .await;
    wait_until("the second raise suppressed on every route", || async {
        metric("slack", "suppressed").await == 1.0
            && metric("teams", "suppressed").await == 1.0
            && metric("webhook", "suppressed").await == 2.0
    })
    .await;

    // The first raise replayed, then an update of the first action that doubled its
    // customers (same theme, so handled in this order): the replay adds nothing, the
    // escalation passes the quiet period on the routes that want escalations.
    notify
        .publisher
        .publish(&raised, None)
        .await
        .expect("acked");
    notify
        .publish(action(ActionEventKind::Updated, first, 6))
        .await;
    wait_until(
        "the escalation reached slack, teams and the webhook",
        || async {
            slack.accepted().len() == 2 && teams.accepted().len() == 2 && hook.accepted().len() == 2
        },
    )
    .await;
    let escalation = json(&slack.accepted()[1]);
    assert_eq!(
        escalation["blocks"][0]["text"]["text"],
        "Action escalating: delivery time"
    );
    assert!(escalation.to_string().contains("3 → 6"));
    let escalation = json(&hook.accepted()[1]);
    assert_eq!(escalation["alert"], "escalated");
    assert_eq!(escalation["counts"]["previous_distinct_customers"], 3);
    for kind in ["slack", "teams"] {
        assert_eq!(metric(kind, "queued").await, 2.0, "{kind}");
        assert_eq!(metric(kind, "delivered").await, 2.0, "{kind}");
    }
    // ops-hook: raise + escalation; ops-down: the raise only.
    assert_eq!(metric("webhook", "queued").await, 3.0);
    assert_eq!(down.seen().len(), 3, "the dead route wants raises only");

    notify.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_route_fails_start_up_naming_route_and_field() {
    let path = std::env::temp_dir().join(format!("ops-routes-{}.toml", Uuid::now_v7()));
    std::fs::write(
        &path,
        "[[route]]\nname = \"chat\"\ntheme = \"*\"\nkind = \"slack\"\n\
         url = \"https://hooks.slack.com/services/T0/B0/sEcReT\"\nlanguage = \"fr\"\n",
    )
    .expect("routes file written");
    let mut config = <closeloop_notify::Config as clap::Parser>::parse_from(["notify"]);
    config.http_addr = ([127, 0, 0, 1], 0).into();
    config.ops_alerts = Some(path.clone());
    let error = match closeloop_notify::Service::build(config.clone()).await {
        Ok(_) => panic!("should not build"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("chat") && error.contains("language"),
        "{error}"
    );
    assert!(!error.contains("sEcReT"), "{error}");
    assert!(!format!("{config:?}").contains("sEcReT"));
    let _ = std::fs::remove_file(&path);
}

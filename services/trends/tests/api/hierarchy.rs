//! One problem, one action: a theme of the same line of the hierarchy (the parent of the
//! surging theme) joins its unresolved action instead of raising a second one, and the
//! resolution answers both.

use closeloop_events::{ActionEventKind, Envelope, ThemeMention};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{counted, get_json, negative, ActionReader, Bus, TestApp, THEME};

const TOKEN: &str = "s3cret-ops-token";
/// The parent of [`THEME`] in the built-in taxonomy.
const PARENT: &str = "delivery";

fn parent_only(customer: &str) -> Envelope<ThemeMention> {
    let mut mention = negative(customer);
    mention.data.theme = PARENT.into();
    mention.data.excerpt = format!("{customer}: my parcel is still not here");
    mention
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surging_parent_joins_its_childs_action_and_is_answered_with_it() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());

    for customer in ["c1", "c1", "c2"] {
        bus.publish(&negative(customer)).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    assert_eq!(raised.theme, THEME);

    // The same wave, in texts that name only the parent theme.
    for customer in ["p1", "p2", "p3"] {
        bus.publish(&parent_only(customer)).await;
    }
    let joined = actions.next().await;
    assert_eq!(joined.kind, ActionEventKind::Updated);
    assert_eq!(joined.action_id, raised.action_id, "no second action");
    let related = &joined.evidence.related;
    assert_eq!(related.len(), 1, "{related:?}");
    assert_eq!(related[0].theme, PARENT);
    assert_eq!(related[0].theme_name["en"], "Delivery & shipping");
    assert_eq!(related[0].counts.negative_mentions, 3);
    assert_eq!(related[0].counts.distinct_customers, 3);
    assert_eq!(related[0].feedback_ids.len(), 3);
    assert_eq!(joined.evidence.distinct_customers, 2, "its own count stays");
    counted(&app, 6).await;
    let unresolved = get_json(&app, "/v1/actions?status=unresolved", TOKEN).await;
    assert_eq!(unresolved.as_array().map(Vec::len), Some(1), "{unresolved}");
    assert_eq!(unresolved[0]["evidence"]["related"][0]["theme"], PARENT);

    // The child's own updates keep what the parent contributed.
    bus.publish(&negative("c3")).await;
    let updated = actions.next().await;
    assert_eq!(updated.kind, ActionEventKind::Updated);
    assert_eq!(updated.evidence.distinct_customers, 3);
    assert_eq!(updated.evidence.related, joined.evidence.related);

    let resolved = app
        .client
        .post(app.url(&format!("/v1/actions/{}/resolve", raised.action_id)))
        .bearer_auth(TOKEN)
        .json(&json!({
            "message": {"en": "We added a second carrier."},
            "resolved_by": "ops@example.com"
        }))
        .send()
        .await
        .expect("resolve");
    assert_eq!(resolved.status(), StatusCode::OK);
    let resolution = actions.next().await;
    assert_eq!(resolution.kind, ActionEventKind::Resolved);
    assert_eq!(
        resolution.evidence.related[0].feedback_ids, related[0].feedback_ids,
        "notify answers the parent's complainers with it"
    );

    // The resolution answered the parent's complaints too: one more after it is no surge
    // and raises nothing of its own.
    bus.publish(&parent_only("p4")).await;
    counted(&app, 8).await;
    let unresolved: Value = get_json(&app, "/v1/actions?status=unresolved", TOKEN).await;
    assert_eq!(unresolved, json!([]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_surging_after_its_parent_names_the_one_action() {
    let bus = Bus::start();
    let mut config = bus.config(closeloop_store::testing::database_args("trends"));
    config.ops_token = Some(TOKEN.parse().expect("a token"));
    let app = TestApp::spawn(config).await;
    let actions = ActionReader::new(bus.brokers());

    for customer in ["p1", "p2", "p3"] {
        bus.publish(&parent_only(customer)).await;
    }
    let raised = actions.next().await;
    assert_eq!(raised.kind, ActionEventKind::Raised);
    assert_eq!(raised.theme, PARENT);

    // The more specific theme of the same problem: the same action, now under its name,
    // as if it had fired first.
    for customer in ["c1", "c1", "c2"] {
        bus.publish(&negative(customer)).await;
    }
    let retitled = actions.next().await;
    assert_eq!(retitled.kind, ActionEventKind::Updated);
    assert_eq!(retitled.action_id, raised.action_id, "no second action");
    assert_eq!(retitled.theme, THEME);
    assert_eq!(retitled.theme_name["en"], "Delivery time");
    assert_eq!(retitled.evidence.negative_mentions, 3);
    assert_eq!(retitled.evidence.distinct_customers, 2);
    let related = &retitled.evidence.related;
    assert_eq!(related.len(), 1, "{related:?}");
    assert_eq!(related[0].theme, PARENT);
    assert_eq!(related[0].counts.distinct_customers, 3);
    counted(&app, 6).await;
    let unresolved = get_json(&app, "/v1/actions?status=unresolved", TOKEN).await;
    assert_eq!(unresolved.as_array().map(Vec::len), Some(1), "{unresolved}");
    assert_eq!(unresolved[0]["theme"], THEME);

    // The parent firing again joins what is now its child's action.
    bus.publish(&parent_only("p4")).await;
    counted(&app, 7).await;
    let detail = get_json(&app, &format!("/v1/actions/{}", raised.action_id), TOKEN).await;
    assert_eq!(detail["theme"], THEME);
    assert_eq!(detail["evidence"]["related"][0]["theme"], PARENT);
    let unresolved = get_json(&app, "/v1/actions?status=unresolved", TOKEN).await;
    assert_eq!(unresolved.as_array().map(Vec::len), Some(1), "{unresolved}");
    app.stop().await;
}

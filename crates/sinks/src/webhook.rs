//! A local webhook receiver that plays the source system for `up`, `demo` and the tests:
//! it verifies each Standard Webhooks signature, dedupes by `webhook-id` the way a real
//! receiver should, and keeps what it received so the demo can show it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One message as the source system received it (the first of its `webhook-id`).
#[derive(Debug, Clone)]
pub struct Received {
    pub source: String,
    pub webhook_id: String,
    pub payload: serde_json::Value,
}

/// The receiver. Clones share what was received.
#[derive(Clone, Default)]
pub struct WebhookSink {
    secrets: Arc<HashMap<String, String>>,
    received: Arc<Mutex<Vec<Received>>>,
    rejected: Arc<Mutex<u32>>,
    /// Print each message as the customer would read it.
    echo: bool,
}

impl WebhookSink {
    /// A sink that accepts the sources in `secrets` (source → signing secret), printing
    /// each message to stdout when `echo`.
    pub fn new(secrets: HashMap<String, String>, echo: bool) -> Self {
        Self {
            secrets: Arc::new(secrets),
            echo,
            ..Default::default()
        }
    }

    /// Messages accepted so far, one per `webhook-id`.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests refused for a missing or wrong signature.
    pub fn rejected(&self) -> u32 {
        self.rejected.lock().map(|r| *r).unwrap_or_default()
    }

    /// Serves `POST /webhooks/{source}` on `listener` until `shutdown`; returns the
    /// address.
    pub fn spawn(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/webhooks/{source}", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            if let Err(error) = closeloop_http::serve(listener, router, shutdown).await {
                tracing::error!(%error, "webhook sink failed");
            }
        });
        Ok(addr)
    }
}

async fn receive(
    State(sink): State<WebhookSink>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let valid = match (sink.secrets.get(&source), timestamp.parse::<i64>()) {
        (Some(secret), Ok(timestamp)) => {
            closeloop_notify::signature::verify(secret, &id, timestamp, &body, &signature)
        }
        _ => false,
    };
    if !valid {
        if let Ok(mut rejected) = sink.rejected.lock() {
            *rejected += 1;
        }
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(mut received) = sink.received.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if received.iter().any(|r| r.webhook_id == id) {
        return StatusCode::NO_CONTENT; // a retry of what we already have
    }
    if sink.echo {
        println!(
            "  ✉  [{source} → {}] {}",
            payload["customer"]["id"].as_str().unwrap_or("?"),
            payload["text"].as_str().unwrap_or_default()
        );
    }
    received.push(Received {
        source,
        webhook_id: id,
        payload,
    });
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeloop_notify::signature;

    const SECRET: &str = "whsec_c2VjcmV0LWZvci1zaW5rLXRlc3Rz";

    async fn post(addr: SocketAddr, source: &str, id: &str, secret: &str) -> u16 {
        let body = br#"{"customer":{"id":"anna"},"text":"We fixed it."}"#;
        let timestamp = 1_700_000_000;
        reqwest::Client::new()
            .post(format!("http://{addr}/webhooks/{source}"))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature::sign(secret, id, timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("the sink answers")
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn keeps_each_signed_message_once_and_refuses_bad_signatures() {
        let sink = WebhookSink::new(HashMap::from([("shop".into(), SECRET.into())]), false);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the sink");
        let addr = sink
            .spawn(listener, CancellationToken::new())
            .expect("the sink serves");

        assert_eq!(post(addr, "shop", "msg_1", SECRET).await, 204);
        assert_eq!(post(addr, "shop", "msg_1", SECRET).await, 204, "a retry");
        assert_eq!(post(addr, "shop", "msg_2", "whsec_b3RoZXI=").await, 401);
        assert_eq!(post(addr, "elsewhere", "msg_3", SECRET).await, 401);

        let received = sink.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert_eq!(received[0].source, "shop");
        assert_eq!(received[0].webhook_id, "msg_1");
        assert_eq!(received[0].payload["customer"]["id"], "anna");
        assert_eq!(sink.rejected(), 2);
    }
}

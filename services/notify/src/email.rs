//! Channel 2: e-mail over SMTP (lettre, rustls), for customers who gave an address when
//! SMTP is configured. The message is multipart/alternative: the plain text as
//! rendered, and the same text HTML-escaped for the HTML part. Its `Message-ID` is
//! derived from the delivery id, so a retry is recognisably the same message.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::outbox::Due;
use crate::worker::Attempt;

#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    #[error("SMTP URL: {0}")]
    Url(String),
    #[error("e-mail sender address {address:?}: {error}")]
    From { address: String, error: String },
    #[error("an SMTP URL is configured but no sender address (NOTIFY_EMAIL_FROM)")]
    NoFrom,
}

/// What an e-mail delivery's outbox payload holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The message without greeting and closing: what a combined message is made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The customer's one-click unsubscribe link (`List-Unsubscribe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

/// A customer's address as notify will use it, or `None` if it is not one.
pub fn parse_address(address: &str) -> Option<Address> {
    Address::from_str(address.trim()).ok()
}

/// The configured SMTP relay and sender.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub timeout: Duration,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the transport: its URL may hold credentials.
        f.debug_struct("EmailSender")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// Needs a tokio runtime (the connection pool runs on it). From `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` or
    /// `smtps://…` and a sender such as `Customer Care <care@example.com>`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, EmailConfigError> {
        let scheme = url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "smtp" | "smtps") {
            return Err(EmailConfigError::Url(
                "must start with smtp:// or smtps://".to_owned(),
            ));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // lettre's error text does not include the URL (and so no password).
            .map_err(|error| EmailConfigError::Url(error.to_string()))?
            .timeout(Some(timeout))
            .build();
        let from = Mailbox::from_str(from.trim()).map_err(|error| EmailConfigError::From {
            address: from.to_owned(),
            error: error.to_string(),
        })?;
        Ok(Self {
            transport,
            from,
            timeout,
        })
    }

    /// The rate-limit key of a delivery: the recipient's domain.
    pub fn destination(&self, due: &Due) -> Option<String> {
        let payload: EmailPayload = serde_json::from_str(due.payload.as_deref()?).ok()?;
        let address = parse_address(&payload.to)?;
        Some(format!("email:{}", address.domain().to_ascii_lowercase()))
    }

    /// One SMTP transaction.
    pub async fn send(&self, due: &Due) -> Attempt {
        let Some(payload) = due.payload.as_deref() else {
            return Attempt::Reject {
                status: None,
                error: "payload missing".to_owned(),
            };
        };
        let payload: EmailPayload = match serde_json::from_str(payload) {
            Ok(payload) => payload,
            Err(error) => {
                return Attempt::Reject {
                    status: None,
                    error: format!("stored e-mail payload is invalid: {error}"),
                }
            }
        };
        let message = match self.message(&due.delivery_id, &payload) {
            Ok(message) => message,
            Err(error) => {
                return Attempt::Reject {
                    status: None,
                    error,
                }
            }
        };
        match self.transport.send(message).await {
            Ok(response) => Attempt::Delivered {
                status: u16::from(response.code()),
            },
            Err(error) => classify(&error),
        }
    }

    fn message(&self, delivery_id: &str, payload: &EmailPayload) -> Result<Message, String> {
        let to = parse_address(&payload.to)
            .ok_or_else(|| "the recipient address is invalid".to_owned())?;
        let mut builder = Message::builder();
        if let Some(url) = &payload.unsubscribe_url {
            // RFC 8058: a client that sees both offers one-click unsubscribe and POSTs
            // `List-Unsubscribe=One-Click` to the URL.
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        builder
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(payload.subject.clone())
            .message_id(Some(format!(
                "<{delivery_id}@{}>",
                self.from.email.domain()
            )))
            .multipart(MultiPart::alternative_plain_html(
                payload.text.clone(),
                payload.html.clone(),
            ))
            .map_err(|error| format!("could not build the e-mail: {error}"))
    }
}

/// SMTP reply codes that blame our side (authentication), not the message: retried,
/// so a credentials mistake delays mail until it is fixed instead of losing it.
const OUR_SIDE: [u16; 4] = [530, 534, 535, 538];

/// What an SMTP failure means for the delivery: 4xx replies, timeouts and connection
/// trouble are retried; 5xx replies (mailbox unknown, message refused) are final.
pub fn classify(error: &SmtpError) -> Attempt {
    let status = error.status().map(u16::from);
    let text = truncate_reply(&error.to_string());
    if error.is_permanent() && !status.is_some_and(|code| OUR_SIDE.contains(&code)) {
        return Attempt::Reject {
            status,
            error: format!("SMTP refused: {text}"),
        };
    }
    if error.is_client() {
        return Attempt::Reject {
            status,
            error: format!("SMTP client error: {text}"),
        };
    }
    Attempt::Retry {
        status,
        error: if error.is_timeout() {
            "SMTP timed out".to_owned()
        } else {
            format!("SMTP failed: {text}")
        },
        retry_after: None,
    }
}

fn truncate_reply(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn configuration_errors_are_clear() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            EmailSender::new("http://mail.example.com", "a@example.com", timeout),
            Err(EmailConfigError::Url(_))
        ));
        assert!(matches!(
            EmailSender::new("smtp://", "a@example.com", timeout),
            Err(EmailConfigError::Url(_))
        ));
        assert!(matches!(
            EmailSender::new("smtp://127.0.0.1:2525", "not an address", timeout),
            Err(EmailConfigError::From { .. })
        ));
        let sender = EmailSender::new(
            "smtp://127.0.0.1:2525",
            "Customer Care <care@shop.example>",
            timeout,
        )
        .unwrap();
        assert_eq!(sender.from.email.domain(), "shop.example");
    }

    #[tokio::test]
    async fn messages_carry_a_stable_message_id_and_both_parts() {
        let sender = EmailSender::new(
            "smtp://127.0.0.1:2525",
            "care@shop.example",
            Duration::from_secs(1),
        )
        .unwrap();
        let payload = EmailPayload {
            to: "anna@example.com".into(),
            subject: "Ihre Rückmeldung".into(),
            text: "Hallo".into(),
            html: "<p>Hallo</p>".into(),
            body: None,
            unsubscribe_url: Some("https://care.shop.example/unsubscribe/abc.1.xyz".into()),
        };
        let formatted =
            String::from_utf8(sender.message("0190-abc", &payload).unwrap().formatted()).unwrap();
        assert!(
            formatted.contains("Message-ID: <0190-abc@shop.example>"),
            "{formatted}"
        );
        // RFC 8058 one-click unsubscribe.
        assert!(
            formatted.contains(
                "List-Unsubscribe: <https://care.shop.example/unsubscribe/abc.1.xyz>\r\n"
            ),
            "{formatted}"
        );
        assert!(
            formatted.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
            "{formatted}"
        );
        assert!(formatted.contains("multipart/alternative"), "{formatted}");
        assert!(formatted.contains("text/html"), "{formatted}");
        assert!(sender
            .message(
                "x",
                &EmailPayload {
                    to: "nope".into(),
                    ..payload
                }
            )
            .is_err());
        assert!(parse_address(" bernd@example.de ").is_some());
        assert!(parse_address("bernd@").is_none());
    }
}

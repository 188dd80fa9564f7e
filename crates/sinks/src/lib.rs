//! The outside world, locally: receivers that stand in for what closeloop talks to, so
//! `closeloop up`, `closeloop demo` and the tests exercise real HTTP and real SMTP
//! without a source system or a mail server.
//!
//! - [`WebhookSink`] plays the source systems' webhook endpoint: it checks each
//!   Standard Webhooks signature and dedupes by `webhook-id`, as a real receiver should.
//! - [`SmtpSink`] plays the mail relay: it accepts every message (or refuses the next
//!   few with a transient `451`) and decodes what arrived the way a mail client would.
//!
//! Neither is for production: no authentication, no TLS, everything kept in memory.

pub mod smtp;
pub mod webhook;

pub use smtp::{ReceivedMail, SmtpSink};
pub use webhook::{Received, WebhookSink};

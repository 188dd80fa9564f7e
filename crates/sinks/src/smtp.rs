//! A tiny SMTP server that accepts every message and keeps it in memory: the mail
//! relay for `closeloop demo` and the tests, so e-mail delivery is exercised over real
//! SMTP without a mail server. Not for production (no auth, no TLS, no limits beyond
//! a message size cap).
//!
//! It can be told to answer the first n messages with a transient `451`, to show that
//! notify retries them. [`ReceivedMail`] decodes what arrived (headers, the plain-text
//! part) the way a mail client would, so tests and the demo can show what the customer
//! reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The largest message kept; a bigger one is refused with 552.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The longest command line accepted.
const MAX_LINE_BYTES: usize = 4096;

/// One message as the relay received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The raw message (headers and body), dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl ReceivedMail {
    /// A top-level header's value, unfolded, with RFC 2047 encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        header_in(head, name).map(|value| decode_words(&value))
    }

    /// The `text/plain` part (or the body, if the message is not multipart), decoded.
    pub fn text(&self) -> Option<String> {
        self.part("text/plain")
    }

    /// The `text/html` part, decoded.
    pub fn html(&self) -> Option<String> {
        self.part("text/html")
    }

    fn part(&self, content_type: &str) -> Option<String> {
        let (head, body) = self.data.split_once("\r\n\r\n")?;
        let top_type = header_in(head, "Content-Type").unwrap_or_default();
        let Some(boundary) = boundary(&top_type) else {
            return top_type
                .to_ascii_lowercase()
                .starts_with(content_type)
                .then(|| decode_body(head, body));
        };
        body.split(&format!("--{boundary}"))
            .filter_map(|part| part.trim_start_matches("\r\n").split_once("\r\n\r\n"))
            .find(|(part_head, _)| {
                header_in(part_head, "Content-Type")
                    .is_some_and(|value| value.to_ascii_lowercase().starts_with(content_type))
            })
            .map(|(part_head, part_body)| decode_body(part_head, part_body))
    }
}

fn header_in(head: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(current) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                current.push(' ');
                current.push_str(line.trim_start_matches([' ', '\t']));
                continue;
            }
            break;
        }
        if let Some((key, rest)) = line.split_once(':') {
            if key.eq_ignore_ascii_case(name) {
                value = Some(rest.trim().to_owned());
            }
        }
    }
    value
}

fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_owned())
    })
}

fn decode_body(head: &str, body: &str) -> String {
    let encoding = header_in(head, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = body.trim_end_matches("\r\n");
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default()
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1..i + 3) == Some(b"\r\n") => i += 3, // soft line break
            b'=' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); whitespace
/// between two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut previous_was_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..]
            .split_once("?=")
            .and_then(|(word, after)| {
                let mut fields = word.splitn(3, '?');
                let (_charset, encoding, text) = (fields.next()?, fields.next()?, fields.next()?);
                let bytes = match encoding.to_ascii_lowercase().as_str() {
                    "b" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()?,
                    "q" => quoted_printable(&text.replace('_', " ")),
                    _ => return None,
                };
                Some((String::from_utf8_lossy(&bytes).into_owned(), after))
            });
        let between = &rest[..start];
        match decoded {
            Some((text, after)) => {
                if !(previous_was_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = after;
                previous_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                previous_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The relay. Clones share what was received.
#[derive(Clone, Default)]
pub struct SmtpSink {
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    fail_first: Arc<AtomicU32>,
}

impl SmtpSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers the next `count` messages with `451` (try again later).
    pub fn fail_next(&self, count: u32) {
        self.fail_first.store(count, Ordering::SeqCst);
    }

    /// Every message accepted so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves SMTP on `listener` until `shutdown`; returns the address.
    pub fn spawn(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let sink = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let sink = sink.clone();
                            tokio::spawn(async move {
                                if let Err(error) = sink.session(stream).await {
                                    tracing::debug!(%error, "SMTP sink session ended");
                                }
                            });
                        }
                        Err(error) => tracing::warn!(%error, "SMTP sink could not accept"),
                    },
                }
            }
        });
        Ok(addr)
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        write.write_all(b"220 closeloop-sink ESMTP\r\n").await?;
        let mut mail_from = String::new();
        let mut rcpt_to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE_BYTES {
                write.write_all(b"500 line too long\r\n").await?;
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let verb = command
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-closeloop-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                "HELO" => b"250 closeloop-sink\r\n",
                "MAIL" => {
                    mail_from = path_of(&command);
                    rcpt_to.clear();
                    b"250 OK\r\n"
                }
                "RCPT" => {
                    rcpt_to.push(path_of(&command));
                    b"250 OK\r\n"
                }
                "DATA" => {
                    write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                    let data = match read_data(&mut reader).await? {
                        Some(data) => data,
                        None => {
                            write.write_all(b"552 message too big\r\n").await?;
                            continue;
                        }
                    };
                    let fail = self
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if fail {
                        b"451 4.3.0 try again later\r\n"
                    } else {
                        self.received
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(ReceivedMail {
                                mail_from: mail_from.clone(),
                                rcpt_to: std::mem::take(&mut rcpt_to),
                                data,
                            });
                        b"250 OK queued\r\n"
                    }
                }
                "RSET" => {
                    mail_from.clear();
                    rcpt_to.clear();
                    b"250 OK\r\n"
                }
                "NOOP" => b"250 OK\r\n",
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"502 command not implemented\r\n",
            };
            write.write_all(reply).await?;
        }
    }
}

/// `MAIL FROM:<a@b> SIZE=10` → `a@b`.
fn path_of(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(path, _)| path.to_owned())
        .unwrap_or_default()
}

/// Reads the message after DATA up to the lone `.`; `None` if it is too big (the rest
/// is still consumed, so the session can go on).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    let mut too_big = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok((!too_big).then_some(data));
        }
        let unstuffed = line.strip_prefix('.').unwrap_or(&line);
        if data.len() + unstuffed.len() > MAX_MESSAGE_BYTES {
            too_big = true;
        } else {
            data.push_str(unstuffed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(data: &str) -> ReceivedMail {
        ReceivedMail {
            mail_from: String::new(),
            rcpt_to: vec![],
            data: data.replace('\n', "\r\n"),
        }
    }

    #[test]
    fn decodes_encoded_words_and_folded_headers() {
        let mail = mail(
            "Subject: =?utf-8?b?SWhyZSBSw7xja21lbGR1bmc=?=\n =?utf-8?q?_zum_Thema?=\nTo: a@b\n\nbody\n",
        );
        assert_eq!(
            mail.header("subject").as_deref(),
            Some("Ihre Rückmeldung zum Thema")
        );
        assert_eq!(mail.header("to").as_deref(), Some("a@b"));
        assert_eq!(mail.header("cc"), None);
    }

    #[test]
    fn decodes_multipart_bodies() {
        let mail = mail(
            "Content-Type: multipart/alternative; boundary=\"XYZ\"\n\n--XYZ\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nDie Lieferung kam zu sp=C3=A4t, sehr =\nsp=C3=A4t.\n--XYZ\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\nPHA+aGk8L3A+\n--XYZ--\n",
        );
        assert_eq!(
            mail.text().as_deref(),
            Some("Die Lieferung kam zu spät, sehr spät.")
        );
        assert_eq!(mail.html().as_deref(), Some("<p>hi</p>"));
    }

    #[test]
    fn paths_are_read_from_commands() {
        assert_eq!(path_of("MAIL FROM:<a@b.c> SIZE=10"), "a@b.c");
        assert_eq!(path_of("RCPT TO:<>"), "");
        assert_eq!(path_of("RCPT TO:junk"), "");
    }
}

//! With the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans reach an OTLP/HTTP
//! collector, in the trace their record's `traceparent` names.
#![cfg(feature = "otlp")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;

/// One HTTP request from `listener`: its request line and body; answers 200.
fn receive_one(listener: &TcpListener) -> (String, Vec<u8>) {
    let (stream, _) = listener.accept().expect("a connection");
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let mut stream = reader.into_inner();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .expect("answer");
    (request_line, body)
}

#[test]
fn spans_are_exported_in_the_records_trace() {
    let collector = TcpListener::bind("127.0.0.1:0").expect("a port");
    let endpoint = format!("http://{}", collector.local_addr().expect("address"));
    // Set before the exporter is built; this test binary has no other test to race.
    std::env::set_var(closeloop_telemetry::otlp::ENDPOINT_ENV, &endpoint);
    std::env::set_var("OTEL_SERVICE_NAME", "closeloop-test");
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(receive_one(&collector));
    });

    let layer = closeloop_telemetry::otlp::layer().expect("export is configured");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("record", topic = "feedback.raw.v1");
        closeloop_telemetry::continue_trace(
            &span,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        span.in_scope(|| tracing::info!("handled"));
    });
    closeloop_telemetry::otlp::shutdown();

    let (request_line, body) = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the collector received an export");
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "{request_line}"
    );
    // Protobuf carries the trace id as its 16 raw bytes, and the names as strings.
    let trace_id = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    assert!(
        body.windows(trace_id.len()).any(|w| w == trace_id),
        "the span is in the record's trace"
    );
    for name in [&b"record"[..], b"closeloop-test", b"feedback.raw.v1"] {
        assert!(
            body.windows(name.len()).any(|w| w == name),
            "{} in the export",
            String::from_utf8_lossy(name)
        );
    }
}

//! The server's limits against raw TCP clients that misbehave on purpose: slow heads,
//! idle keep-alive, trickled bodies, clients that hold a request open across shutdown,
//! more connections than allowed, and a huge `Content-Length` with `Expect:
//! 100-continue`. Timeouts are configured short and every check waits for an outcome.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use closeloop_http::{read_json_body, serve_with, BodyLimit, HttpLimits, Problem, ServerMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest any outcome may take to show: far above every configured timeout.
const PATIENCE: Duration = Duration::from_secs(10);

async fn echo(headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    read_json_body(&headers, body)
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(echo))
        .layer(BodyLimit::max(1000))
}

struct Server {
    addr: SocketAddr,
    metrics: ServerMetrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(router: Router, limits: HttpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let metrics = ServerMetrics::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        async move {
            serve_with(listener, router, shutdown, limits, metrics)
                .await
                .expect("serves");
        }
    });
    Server {
        addr,
        metrics,
        shutdown,
        task,
    }
}

fn limits(header: u64, body: u64, grace: u64) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(header.max(60_000)),
        body_timeout: Duration::from_millis(body),
        shutdown_grace: Duration::from_millis(grace),
        ..HttpLimits::default()
    }
}

/// Waits until `check` holds; panics naming `what` after [`PATIENCE`].
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    within("the server to close the connection", async {
        // A reset after the answer is as closed as an end of stream.
        let _ = stream.read_to_end(&mut received).await;
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// One response on a kept-alive connection: the head and a `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> String {
    within("a response", async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    return text;
                }
            }
            let read = stream.read(&mut buffer).await.expect("reads");
            assert!(read > 0, "closed before a full response: {text:?}");
            received.extend_from_slice(&buffer[..read]);
        }
    })
    .await
}

async fn get_ok(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("writes");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_cut_and_counted_while_others_are_served() {
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(1_500),
        ..limits(500, 30_000, 1_000)
    };
    let server = start(router(), limits).await;

    // A head trickled in, a byte at a time, never finished: cut after the head timeout
    // although bytes keep coming.
    let mut trickle = TcpStream::connect(server.addr).await.expect("connects");
    let trickling = tokio::spawn(async move {
        let started = Instant::now();
        for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ".iter().cycle() {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    });
    // Half a request head, never finished.
    let mut slow_head = TcpStream::connect(server.addr).await.expect("connects");
    slow_head
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("writes");
    // A connection that never says anything (its first head is due at once).
    let mut silent = TcpStream::connect(server.addr).await.expect("connects");
    // A keep-alive connection that idles after one request.
    let mut kept_alive = TcpStream::connect(server.addr).await.expect("connects");
    kept_alive
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("writes");
    assert!(read_response(&mut kept_alive)
        .await
        .starts_with("HTTP/1.1 200"));

    // Meanwhile, others are served.
    get_ok(server.addr).await;

    let trickled = within("the trickle cut", trickling)
        .await
        .expect("trickles");
    assert!(trickled < Duration::from_millis(1_400), "{trickled:?}");
    let slow_head_answer = read_until_closed(&mut slow_head).await;
    assert!(slow_head_answer.is_empty(), "{slow_head_answer}");
    read_until_closed(&mut silent).await;
    read_until_closed(&mut kept_alive).await;
    get_ok(server.addr).await;

    let metrics = &server.metrics;
    until("the cuts counted", || {
        (metrics.closed("header_timeout"), metrics.closed("idle")) == (3, 1)
    })
    .await;
    server.shutdown.cancel();
    within("the server to stop", server.task)
        .await
        .expect("stops");
}

#[tokio::test]
async fn a_head_hyper_refuses_is_answered_by_hyper_and_counted() {
    let server = start(router(), HttpLimits::default()).await;
    // More than hyper's 100 headers: 431, written by hyper with an empty body.
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    let headers: String = (0..150).map(|n| format!("X-H{n}: v\r\n")).collect();
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
        .await
        .expect("writes");
    let response = read_until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    until("the refusal counted", || {
        server.metrics.closed("malformed") == 1
    })
    .await;
    get_ok(server.addr).await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_is_closed() {
    let server = start(router(), limits(30_000, 500, 1_000)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .expect("writes");
    let response = read_until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains("https://closeloop.dev/problems/request-timeout"),
        "{response}"
    );
    until("the cut counted", || {
        server.metrics.closed("body_timeout") == 1
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_cuts_stalled_clients_after_the_grace() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let slow = {
        let (entered, release) = (entered.clone(), release.clone());
        move || async move {
            entered.notify_one();
            release.notified().await;
            "done"
        }
    };
    let router = router().route("/slow", get(slow));
    let server = start(router, limits(60_000, 60_000, 1_000)).await;

    let mut in_flight = TcpStream::connect(server.addr).await.expect("connects");
    in_flight
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("writes");
    within("the handler to start", entered.notified()).await;
    // A request whose body stalls, and one whose head stalls.
    let mut stalled_body = TcpStream::connect(server.addr).await.expect("connects");
    stalled_body
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{")
        .await
        .expect("writes");
    let mut stalled_head = TcpStream::connect(server.addr).await.expect("connects");
    stalled_head
        .write_all(b"GET / HTTP/1.1\r\nHost:")
        .await
        .expect("writes");
    until("every connection served", || server.metrics.open() == 3).await;

    let stopping = Instant::now();
    server.shutdown.cancel();
    release.notify_one();
    let response = read_response(&mut in_flight).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    within("the server to stop", server.task)
        .await
        .expect("stops");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    read_until_closed(&mut stalled_body).await;
    read_until_closed(&mut stalled_head).await;
    // The stalled body is a request in flight: cut at the end of the grace. hyper may
    // close the half-sent head at once (no request began), or cut it with the other.
    let cut = server.metrics.closed("shutdown");
    assert!((1..=2).contains(&cut), "{cut} cut");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn beyond_the_connection_bound_clients_wait_until_a_connection_closes() {
    let server = start(
        router(),
        HttpLimits {
            max_connections: 2,
            ..HttpLimits::default()
        },
    )
    .await;
    let mut first = TcpStream::connect(server.addr).await.expect("connects");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("writes");
    read_response(&mut first).await;
    let mut second = TcpStream::connect(server.addr).await.expect("connects");
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("writes");
    read_response(&mut second).await;
    until("the bound reached", || {
        server.metrics.open() == 2 && server.metrics.limit_reached() >= 1
    })
    .await;

    // The third waits in the backlog until a slot frees.
    let third = tokio::spawn(get_ok(server.addr));
    drop(first);
    within("the third client served", third)
        .await
        .expect("served");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_before_any_100_continue() {
    let server = start(router(), HttpLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("writes");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(!response.contains("100 Continue"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains("https://closeloop.dev/problems/body-too-large"),
        "{response}"
    );

    // A client that uploads its body before it reads the answer (as many do) reads the
    // 413, not a reset: the server lingers, discarding, before it closes.
    let mut uploader = TcpStream::connect(server.addr).await.expect("connects");
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 8000000\r\n\r\n";
    uploader.write_all(head.as_bytes()).await.expect("writes");
    let body = vec![b' '; 8_000_000];
    within("the upload", uploader.write_all(&body))
        .await
        .expect("the server reads the upload away instead of resetting");
    let mut answer = Vec::new();
    let read = within("the answer", uploader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "{read:?}: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // Without a length, the body is still cut at the limit while it is read.
    let mut chunked = TcpStream::connect(server.addr).await.expect("connects");
    let chunk = "x".repeat(1500);
    chunked
        .write_all(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
                chunk.len()
            )
            .as_bytes(),
        )
        .await
        .expect("writes");
    let response = read_response(&mut chunked).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");

    // Within the limit, the body goes through.
    let mut fine = TcpStream::connect(server.addr).await.expect("connects");
    fine.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .expect("writes");
    let response = read_response(&mut fine).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

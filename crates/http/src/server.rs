//! Binding a service's listener and serving its router until shutdown, with limits that
//! hold against slow and idle clients.
//!
//! hyper is driven directly (not `axum::serve`) because only then does it get a timer
//! and can every connection be told apart: a client gets [`HttpLimits::header_timeout`]
//! to send a request head (from the connection's start, or from a later head's first
//! byte), a kept-alive connection may idle [`HttpLimits::idle_timeout`] between requests
//! (hyper's timer, armed whenever a connection waits for a head), a body must arrive
//! within [`HttpLimits::body_timeout`] (else 408), at most [`HttpLimits::max_connections`] are served at once
//! (beyond, connections wait in the kernel's accept backlog), and on shutdown the
//! connections still open after [`HttpLimits::shutdown_grace`] are cut, so a stalled
//! client never holds a stopping service up. Every connection the server cuts is
//! counted in `closeloop_http_connections_closed_total{reason}`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::problem::{Problem, ProblemType};

/// Why a service's HTTP server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// How long clients may take and how many may be served at once: the same flags and
/// environment variables in every service.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct HttpLimits {
    /// Seconds a client has to send a request's head (request line and headers), from
    /// the connection's start or from the head's first byte.
    #[arg(long = "http-header-timeout-secs", env = "HTTP_HEADER_TIMEOUT_SECS", value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub header_timeout: Duration,
    /// Seconds a kept-alive connection may idle between requests (at least the head
    /// timeout: it bounds waiting for a head too).
    #[arg(long = "http-idle-timeout-secs", env = "HTTP_IDLE_TIMEOUT_SECS", value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: Duration,
    /// Seconds a client has to send a request's body once the head arrived; then 408.
    #[arg(long = "http-body-timeout-secs", env = "HTTP_BODY_TIMEOUT_SECS", value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the accept backlog.
    #[arg(long = "http-max-connections", env = "HTTP_MAX_CONNECTIONS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds in-flight requests get to finish on shutdown; connections still open
    /// then are cut.
    #[arg(long = "http-shutdown-grace-secs", env = "HTTP_SHUTDOWN_GRACE_SECS", value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, not {value:?}"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!(
            "expected more than 0 and at most 86400 seconds, not {value}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Why the server closed a connection the client had not finished with.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// A request head (or a new connection's first) did not arrive in time.
    HeaderTimeout,
    /// A kept-alive connection idled too long between requests.
    Idle,
    /// The body did not arrive in time; answered 408.
    BodyTimeout,
    /// Still open when the shutdown grace period ended.
    Shutdown,
    /// A request head hyper could not parse (it answered 400 or 431 itself).
    Malformed,
}

impl Cut {
    fn label(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::Idle => "idle",
            Cut::BodyTimeout => "body_timeout",
            Cut::Shutdown => "shutdown",
            Cut::Malformed => "malformed",
        }
    }
}

/// The server's connection metrics (register them with [`ServerMetrics::register`];
/// the default ones are counted but not exported).
#[derive(Clone)]
pub struct ServerMetrics {
    closed: IntCounterVec,
    open: IntGauge,
    limit_reached: IntCounter,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        let closed = IntCounterVec::new(
            Opts::new(
                "closeloop_http_connections_closed_total",
                "Connections the server cut, by reason: header_timeout, idle, body_timeout, shutdown, malformed.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let open = IntGauge::new(
            "closeloop_http_connections_open",
            "HTTP connections being served.",
        )
        .expect("valid metric");
        let limit_reached = IntCounter::new(
            "closeloop_http_connection_limit_reached_total",
            "Times the server stopped accepting because HTTP_MAX_CONNECTIONS were open.",
        )
        .expect("valid metric");
        Self {
            closed,
            open,
            limit_reached,
        }
    }
}

impl ServerMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::default();
        registry.register(Box::new(metrics.closed.clone()))?;
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.limit_reached.clone()))?;
        Ok(metrics)
    }

    /// Connections cut for `reason` (a label of `closeloop_http_connections_closed_total`).
    pub fn closed(&self, reason: &str) -> u64 {
        self.closed.with_label_values(&[reason]).get()
    }

    pub fn open(&self) -> i64 {
        self.open.get()
    }

    pub fn limit_reached(&self) -> u64 {
        self.limit_reached.get()
    }

    fn cut(&self, cut: Cut, peer: SocketAddr) {
        self.closed.with_label_values(&[cut.label()]).inc();
        // Debug: under attack these come by the thousand; the counter is the signal.
        tracing::debug!(%peer, reason = cut.label(), "HTTP connection cut");
    }
}

/// Binds a service's HTTP listener; the address returned is the real one (port 0 in
/// `addr` picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), HttpError> {
    let bind_error = |source| HttpError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// [`serve_with`] the default limits and unexported metrics (test sinks, tools).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    serve_with(
        listener,
        router,
        shutdown,
        HttpLimits::default(),
        ServerMetrics::default(),
    )
    .await
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled; then
/// stops accepting, lets requests in flight finish and cuts what is still open after
/// the grace period.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
    metrics: ServerMetrics,
) -> Result<(), HttpError> {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut connections = JoinSet::new();
    let mut full_since_logged = FullLog::default();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics.limit_reached.inc();
                full_since_logged.note(limits.max_connections);
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed; nothing left to serve if it were
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let connection = serve_connection(
            stream,
            peer,
            router.clone(),
            limits.clone(),
            metrics.clone(),
            shutdown.clone(),
            permit,
        );
        connections.spawn(connection);
    }
    // Closing the listener refuses new connections while the open ones finish.
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let still_open = connections.len();
        tracing::info!(
            connections = still_open,
            grace_secs = limits.shutdown_grace.as_secs_f64(),
            "HTTP shutdown: cutting connections still open after the grace period"
        );
        for _ in 0..still_open {
            metrics
                .closed
                .with_label_values(&[Cut::Shutdown.label()])
                .inc();
        }
        connections.shutdown().await;
    }
    Ok(())
}

/// Logs "connection limit reached" at most every 10 s, with how often it was hit since:
/// a flood of connections must not become a flood of log lines.
#[derive(Default)]
struct FullLog {
    last: Option<Instant>,
    since: u64,
}

impl FullLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, max_connections: u32) {
        self.since += 1;
        if self.last.is_none_or(|last| last.elapsed() >= Self::EVERY) {
            tracing::warn!(
                max_connections,
                times = self.since,
                "HTTP connection limit reached: new connections wait in the accept backlog"
            );
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// An accept that failed: a connection reset before it was accepted is nothing; running
/// out of file descriptors passes once connections close, so wait a little, not spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "HTTP accept failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Counts a connection in `closeloop_http_connections_open` while it lives, however it
/// ends (aborted at the end of the shutdown grace too).
struct OpenGuard(IntGauge);

impl OpenGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<HttpLimits>,
    metrics: ServerMetrics,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _open = OpenGuard::new(metrics.open.clone());
    let _ = stream.set_nodelay(true);
    let state = Arc::new(HeadState::new());
    let io = TokioIo::new(Tracked {
        stream,
        state: state.clone(),
        header_timeout: limits.header_timeout,
        deadline: None,
        linger: None,
    });
    let service = {
        let (limits, metrics, state) = (limits.clone(), metrics.clone(), state.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (router, limits, metrics, state) = (
                router.clone(),
                limits.clone(),
                metrics.clone(),
                state.clone(),
            );
            // The head is complete: bytes from here on are this request's body.
            state.busy(true);
            async move {
                let response =
                    handle(router, request, limits.body_timeout, &metrics, &state, peer).await;
                state.busy(false);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's one head timer runs from when a connection starts waiting for a head:
        // the idle limit. The head limit proper is `Tracked`'s.
        .header_read_timeout(limits.idle_timeout.max(limits.header_timeout))
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        _ = shutdown.cancelled() => {
            // Finishes the request in flight, closes an idle connection at once.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // Our head timeout ends the connection with an error or, when no byte had arrived,
    // as a plain end of stream: the flag says which cut it was.
    if state.head_timed_out.load(Ordering::Relaxed) {
        metrics.cut(Cut::HeaderTimeout, peer);
    } else if let Err(error) = outcome {
        if error.is_timeout() {
            let cut = if state.head_started().is_some() {
                Cut::HeaderTimeout
            } else {
                Cut::Idle
            };
            metrics.cut(cut, peer);
        } else if error.is_parse() || error.is_parse_too_large() {
            metrics.cut(Cut::Malformed, peer);
        } else {
            // Mostly clients that hung up mid-request: theirs to retry.
            tracing::debug!(%peer, %error, "HTTP connection ended with an error");
        }
    }
}

/// One request through the router, its body bounded in time: when the body did not
/// arrive within `body_timeout`, the answer is 408 and the connection is closed
/// (whatever the handler made of the failed read).
async fn handle(
    router: Router,
    request: Request<Incoming>,
    body_timeout: Duration,
    metrics: &ServerMetrics,
    state: &HeadState,
    peer: SocketAddr,
) -> Response {
    use tower::Service;
    let (parts, body) = request.into_parts();
    let progress = Arc::new(BodyProgress::default());
    let has_body = !http_body::Body::is_end_stream(&body);
    let body = if has_body {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            progress: progress.clone(),
        })
    } else {
        Body::new(body)
    };
    let mut router = router;
    let response = match router.call(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // A body left unread (refused early, or timed out) may still be arriving when the
    // connection closes: then the close lingers.
    let unread = has_body && !progress.complete.load(Ordering::Relaxed);
    state.unread_body.store(unread, Ordering::Relaxed);
    if !progress.timed_out.load(Ordering::Relaxed) {
        return response;
    }
    metrics.cut(Cut::BodyTimeout, peer);
    let mut response = Problem::new(ProblemType::RequestTimeout)
        .detail(format!(
            "the body did not arrive within {} s; nothing was done",
            body_timeout.as_secs_f64()
        ))
        .into_response();
    // The rest of the body may still be on its way: this connection cannot carry
    // another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passed, so a client trickling (or
/// withholding) a body cannot hold a handler and a connection for ever.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    progress: Arc<BodyProgress>,
}

/// What became of a request's body.
#[derive(Default)]
struct BodyProgress {
    timed_out: AtomicBool,
    complete: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_none() || this.inner.is_end_stream() {
                    this.progress.complete.store(true, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.progress.timed_out.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(BodyTimedOut.into())))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection is between requests, shared by its socket ([`Tracked`]) and its
/// service (both polled by the connection's one task).
struct HeadState {
    epoch: Instant,
    /// A request is being handled: bytes read now are its body.
    busy: AtomicBool,
    /// When the head being received began, in ms after `epoch`, plus 1; 0 when none.
    head_started: AtomicU64,
    head_timed_out: AtomicBool,
    /// The last request's body was not read to its end.
    unread_body: AtomicBool,
}

impl HeadState {
    /// A new connection: its first head is due from the start.
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            busy: AtomicBool::new(false),
            head_started: AtomicU64::new(1),
            head_timed_out: AtomicBool::new(false),
            unread_body: AtomicBool::new(false),
        }
    }

    fn busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn head_started(&self) -> Option<Instant> {
        match self.head_started.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1)),
        }
    }

    /// The first byte of a head arrived (bytes while a request is handled are its body).
    fn received(&self) {
        if !self.busy.load(Ordering::Relaxed) && self.head_started().is_none() {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.head_started.store(ms + 1, Ordering::Relaxed);
        }
    }
}

/// The connection's socket, timing request heads: a head must be complete
/// `header_timeout` after its first byte (a new connection's, after the connection
/// began), however slowly it trickles in. hyper's own timer cannot do this and leave
/// idle keep-alive connections a longer limit: it is one timer for both.
struct Tracked {
    stream: TcpStream,
    state: Arc<HeadState>,
    header_timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    linger: Option<Linger>,
}

/// Closing while a client still uploads (a 413 answered before the body was read, a 408)
/// would reset the connection and the client might never read the answer; so, as nginx's
/// lingering close, the server stops writing, then discards what still comes for a
/// moment before it closes. Only when the last request's body was left unread.
struct Linger {
    until: tokio::time::Instant,
    quiet: Pin<Box<tokio::time::Sleep>>,
}

impl Linger {
    /// Longest a close lingers, and the silence that ends it sooner.
    const AT_MOST: Duration = Duration::from_secs(2);
    const QUIET: Duration = Duration::from_millis(250);

    fn new() -> Self {
        let now = tokio::time::Instant::now();
        Self {
            until: now + Self::AT_MOST,
            quiet: Box::pin(tokio::time::sleep_until(now + Self::QUIET)),
        }
    }

    /// Data arrived: wait for the next, up to the overall limit.
    fn heard(&mut self) {
        let next = (tokio::time::Instant::now() + Self::QUIET).min(self.until);
        self.quiet.as_mut().reset(next);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.received();
        }
        if poll.is_pending() && !this.state.busy.load(Ordering::Relaxed) {
            if let Some(started) = this.state.head_started() {
                let due = tokio::time::Instant::from_std(started + this.header_timeout);
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if deadline.deadline() != due {
                    deadline.as_mut().reset(due);
                }
                if deadline.as_mut().poll(cx).is_ready() {
                    this.state.head_timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request head timeout",
                    )));
                }
            }
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.state.unread_body.load(Ordering::Relaxed) {
            return Pin::new(&mut this.stream).poll_shutdown(cx);
        }
        if this.linger.is_none() {
            // The answer is complete: FIN after it, whatever happens next.
            std::task::ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.linger = Some(Linger::new());
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut discard = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // The client closed too (or the connection broke): nothing to wait for.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.heard(),
                Poll::Pending => {
                    return match linger.quiet.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        http: HttpLimits,
    }

    #[test]
    fn the_flags_defaults_are_the_default() {
        assert_eq!(Flags::parse_from(["x"]).http, HttpLimits::default());
        let flags = Flags::parse_from(["x", "--http-body-timeout-secs", "0.25"]);
        assert_eq!(flags.http.body_timeout, Duration::from_millis(250));
        for bad in ["0", "-1", "nan", "soon"] {
            assert!(
                Flags::try_parse_from(["x", "--http-header-timeout-secs", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Flags::try_parse_from(["x", "--http-max-connections", "0"]).is_err());
    }
}

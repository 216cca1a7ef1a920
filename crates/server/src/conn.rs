//! Connections: the accept loop of every listener, with a cap on open connections (overall and
//! per client address), header, body and idle timeouts, and accept errors that back off. Idle or
//! slow clients hold a bounded number of descriptors for a bounded time, so they cannot starve
//! the check API. The same holds over TLS, whose handshake has the header timeout.
//!
//! Over 600 lines on purpose: the plain and TLS accept paths, the caps and the timers are one
//! state machine per connection; apart, each would need the others' internals.

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// What a listener answers requests with: an `axum::Router`, or a front that answers some
/// requests itself before the router (see `app::Front`).
pub trait Routes:
    Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<R> Routes for R where
    R: Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// How many connections a listener keeps open and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (also bounded by the descriptor limit); more are refused.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most; 0 for no such cap. At
    /// most half of `max_connections`, so that one client cannot take them all.
    pub max_per_ip: usize,
    /// A request head must arrive complete within this time of its first byte; a new
    /// connection's first request within this time of the connection.
    pub header_timeout: Duration,
    /// A request body must arrive complete within this time of the server waiting for it.
    pub body_timeout: Duration,
    /// A connection with no request in progress is closed after this time.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_ip: 1_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            // Longer than the 60 s idle timeout of common load balancers, which must be the
            // ones to close a kept-alive connection (else they may send on a closing one).
            idle_timeout: Duration::from_secs(75),
        }
    }
}

/// Descriptors kept for everything but connections: store files and pools, logs, the signal file.
const RESERVED_FDS: u64 = 100;

/// Raises the soft limit on open files to the hard limit; the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        // rlim_t is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

impl Limits {
    /// The limits in force with `fd_limit` descriptors: the caps are lowered to what fits.
    pub fn fitted(mut self, fd_limit: Option<u64>) -> Self {
        if let Some(fds) = fd_limit {
            let room = fds.saturating_sub(RESERVED_FDS).max(16);
            self.max_connections = self.max_connections.min(room as usize);
        }
        self.max_connections = self.max_connections.max(1);
        if self.max_per_ip > 0 {
            self.max_per_ip = self.max_per_ip.min(self.max_connections / 2).max(1);
        }
        self
    }
}

/// What the listener shares with its connections.
struct Shared {
    limits: Limits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    drained: Notify,
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl Shared {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut slot = Slot {
            shared: self.clone(),
            ip: None,
        };
        if self.limits.max_per_ip > 0 {
            let key = client_key(peer);
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n as usize >= self.limits.max_per_ip {
                return None; // the slot's drop gives back the overall count
            }
            *n += 1;
            slot.ip = Some(key);
        }
        Some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        if self.shared.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.drained.notify_waiters();
        }
    }
}

/// One client: its IPv4 address, or its IPv6 /64 (one host commonly holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The answer to a connection over a cap: written at once, then the connection is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 38\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"message\":\"too many open connections\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets open
/// requests finish (idle connections close at once) and returns when every connection closed.
/// With `tls`, every connection first completes a TLS handshake within the header timeout, then
/// speaks HTTP/2 or HTTP/1.1 (as ALPN chose); without it, HTTP/1.1 in the clear.
pub async fn serve<R: Routes>(
    listener: TcpListener,
    router: R,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shared = Arc::new(Shared {
        limits,
        open: AtomicUsize::new(0),
        per_ip: Mutex::new(HashMap::new()),
        drained: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // HTTP/1.1 (as the check clients speak). Without a timer hyper sets no timeouts of its
    // own: the connection's watch below does.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    let builder = Arc::new(builder);
    // Over TLS, HTTP/2 as well (ALPN `h2`); HTTP/2 streams run on tasks of their own.
    let mut auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    auto.http1().keep_alive(true);
    auto.http2().max_concurrent_streams(MAX_STREAMS);
    let auto = Arc::new(auto);
    tokio::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of descriptors or memory: trying again at once would only spin.
                        let quiet = last_accept_error
                            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                        if !quiet {
                            tracing::warn!(error = %e, "cannot accept connections; retrying");
                            last_accept_error = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let Some(slot) = shared.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: over a connection cap");
            refuse(stream, tls.is_none());
            continue;
        };
        tracing::trace!(%peer, "connection accepted");
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            router: router.clone(),
            builder: builder.clone(),
            auto: auto.clone(),
            stop: stop_rx.clone(),
            limits,
        };
        match &tls {
            None => tokio::spawn(conn.run(stream, peer, slot)),
            Some(acceptor) => tokio::spawn(conn.run_tls(acceptor.clone(), stream, peer, slot)),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let drained = shared.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if shared.open.load(Ordering::Acquire) == 0 {
            break;
        }
        drained.await;
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}

/// Tells a client over a cap why, without waiting on it, and closes its connection. A TLS client
/// is not answered: telling it would take a handshake, the work the cap is there to refuse.
fn refuse(stream: TcpStream, plain: bool) {
    if plain {
        let _ = stream.try_write(REFUSAL);
    }
    if let Ok(std) = stream.into_std() {
        let _ = std.shutdown(std::net::Shutdown::Write);
    }
}

/// What a connection is doing, for its timeouts.
const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Set by the reads (first byte of a request) and by the requests (started, answered); read by
/// the connection's watch. Only this connection touches it.
struct Activity {
    born: Instant,
    phase: AtomicU8,
    /// Milliseconds after `born` at which `phase` began.
    since: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    /// A new connection owes its first request at once: until it arrives, it is timed as a
    /// request head (a silent connection is closed after the header timeout, not the idle one).
    fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        })
    }

    fn ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn set(&self, phase: u8) {
        self.since.store(self.ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// A request in progress; when the last one of a connection ends, the connection is idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.phase.store(BUSY, Ordering::Relaxed);
        Self(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.set(IDLE);
        }
    }
}

/// The connection (the socket, or TLS over it), noting the first byte of each request.
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
    /// Whether bytes from the client begin a request. Not on HTTP/2, where the client also
    /// sends frames of its own (window updates, settings, pings) between requests: there a
    /// request begins when hyper hands it over, and an idle connection has the idle timeout.
    heads: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.heads
            && buf.filled().len() > before
            && this.activity.phase.load(Ordering::Relaxed) == IDLE
        {
            this.activity.set(HEAD);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Streams one HTTP/2 connection may carry at once.
const MAX_STREAMS: u32 = 200;

struct Connection<R> {
    router: R,
    builder: Arc<hyper::server::conn::http1::Builder>,
    auto: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    limits: Limits,
}

/// A connection being served by hyper, which can be asked to finish its requests and close.
trait Serving: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Serving for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}

impl<I, S, B> Serving for hyper_util::server::conn::auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::Connection::graceful_shutdown(self)
    }
}

/// The router as a hyper service: each request is counted in progress until answered, its body
/// has the body timeout, and handlers see the client's address.
#[derive(Clone)]
struct Handler<R> {
    router: R,
    activity: Arc<Activity>,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl<R: Routes> hyper::service::Service<hyper::Request<Incoming>> for Handler<R> {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer<R::Future>;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer<R::Future> {
        let busy = InFlight::enter(&self.activity);
        let mut req = req.map(|b| Body::new(BodyDeadline::new(b, self.body_timeout)));
        // The client's address, for handlers that need it (as axum's `ConnectInfo`).
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        Answer {
            inner: self.router.clone().call(req),
            busy: Some(busy),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer; the request stops counting as in progress once it is ready.
    struct Answer<F> {
        #[pin]
        inner: F,
        busy: Option<InFlight>,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<axum::response::Response, std::convert::Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        this.busy.take();
        Poll::Ready(res)
    }
}

impl<R: Routes> Connection<R> {
    /// Plain HTTP/1.1.
    async fn run(self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
            heads: true,
        });
        let service = self.service(&activity, peer);
        let conn = self.builder.clone();
        let conn = conn.serve_connection(io, service);
        self.watch(conn, &activity, peer).await;
        drop(slot);
    }

    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
    async fn run_tls(
        mut self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
    ) {
        // The handshake has the header timeout: a client that connects and never completes it
        // gives its slot back then. A stop meanwhile drops it (no request is in progress).
        let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "closing a connection whose TLS handshake did not complete within the header timeout");
                    return;
                }
            },
            _ = self.stop.wait_for(|stop| *stop) => return,
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        // The first request is owed within the header timeout of the handshake's end.
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
            heads: !h2,
        });
        let service = self.service(&activity, peer);
        let auto = self.auto.clone();
        let conn = auto.serve_connection(io, service);
        self.watch(conn, &activity, peer).await;
        drop(slot);
    }

    fn service(&self, activity: &Arc<Activity>, peer: SocketAddr) -> Handler<R> {
        Handler {
            router: self.router.clone(),
            activity: activity.clone(),
            peer,
            body_timeout: self.limits.body_timeout,
        }
    }

    /// Drives `conn` until it ends, is past its header or idle timeout, or the server stops.
    async fn watch<C: Serving>(mut self, conn: C, activity: &Activity, peer: SocketAddr) {
        tokio::pin!(conn);
        let header = self.limits.header_timeout;
        let idle = self.limits.idle_timeout;
        let watch = tokio::time::sleep(header.min(idle));
        tokio::pin!(watch);
        let mut closing = *self.stop.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, %peer, "connection ended");
                    }
                    break;
                }
                changed = self.stop.changed(), if !closing => {
                    closing = true;
                    // Finishes the requests in progress; an idle connection closes at once.
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = watch.as_mut() => {
                    let now = activity.ms();
                    let since = activity.since.load(Ordering::Relaxed);
                    let (deadline, next) = match activity.phase.load(Ordering::Relaxed) {
                        // A request may begin meanwhile: look again within a header timeout.
                        IDLE => (since + idle.as_millis() as u64, now + header.as_millis() as u64),
                        HEAD => (since + header.as_millis() as u64, since + header.as_millis() as u64),
                        // A request in progress has the store's and the body's deadlines.
                        _ => (u64::MAX, now + header.min(idle).as_millis() as u64),
                    };
                    if now >= deadline {
                        // Nothing is in progress: closing drops no answer.
                        tracing::debug!(%peer, "closing a connection past its header or idle timeout");
                        break;
                    }
                    let next = next.min(deadline).max(now + 1);
                    watch.as_mut().reset((activity.born + Duration::from_millis(next)).into());
                }
            }
        }
    }
}

/// A request body that must arrive within a time of the server first waiting for it. A body
/// already received with its head never starts the timer.
struct BodyDeadline {
    body: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BodyDeadline {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            timer: None,
        }
    }
}

/// A request body that did not arrive in time (the client stopped sending, or sends too slowly).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

impl http_body::Body for BodyDeadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_fit_the_descriptors_and_no_client_takes_them_all() {
        let l = Limits::default().fitted(Some(1024));
        assert_eq!(l.max_connections, 924);
        assert_eq!(l.max_per_ip, 462);
        let l = Limits::default().fitted(Some(1_000_000));
        assert_eq!((l.max_connections, l.max_per_ip), (10_000, 1_000));
        let off = Limits {
            max_per_ip: 0,
            ..Limits::default()
        };
        assert_eq!(off.fitted(None).max_per_ip, 0);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn a_client_over_its_cap_is_refused_and_its_slots_come_back() {
        let shared = Arc::new(Shared {
            limits: Limits {
                max_connections: 4,
                max_per_ip: 2,
                ..Limits::default()
            },
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            drained: Notify::new(),
        });
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        let a = shared.admit(one).unwrap();
        let _b = shared.admit(one).unwrap();
        assert!(shared.admit(one).is_none(), "per address");
        let _c = shared.admit(two).unwrap();
        let _d = shared.admit(two).unwrap();
        let three: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(shared.admit(three).is_none(), "overall");
        drop(a);
        let _e = shared.admit(one).unwrap();
        assert_eq!(shared.open.load(Ordering::Relaxed), 4);
    }
}

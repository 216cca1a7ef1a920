//! The id every request carries in `x-request-id`: kept from a proxy in front when it is short and
//! plain, made here otherwise, and sent back on the response; error log lines and the portal's
//! error pages name it, so that a person's report leads to the log line.
//!
//! The check is answered tens of thousands of times a second, so this layer adds no span and no
//! extension: a counter, sixteen hex digits and one header value per request.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a client; anything longer (or with other characters) is replaced.
const MAX_LEN: usize = 64;

/// The request's id, as the layer left it in the headers ("" before the layer has run).
pub fn of(headers: &HeaderMap) -> &str {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Set on a response by a panic handler; the layer logs the panic with the request's id.
#[derive(Debug, Clone, Copy)]
pub struct Panicked;

/// Numbers requests: a random start per process, each number scrambled by a bijection (the
/// splitmix64 finaliser) so that ids of one process never repeat and do not read as a count.
#[derive(Clone)]
pub struct RequestIdLayer {
    ids: Arc<Ids>,
}

struct Ids {
    start: u64,
    next: AtomicU64,
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self {
            ids: Arc::new(Ids {
                start: rand::random(),
                next: AtomicU64::new(0),
            }),
        }
    }
}

impl Ids {
    fn make(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut x = self.start.wrapping_add(n);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((x >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&digits).unwrap_or(HeaderValue::from_static("0"))
    }
}

impl RequestIdLayer {
    /// What the layer does around a service, for a caller that answers a request without one
    /// (`app::Front`): the request's id set, and the future that puts it on the response.
    pub fn around<B, F>(
        &self,
        mut req: Request<B>,
        answer: impl FnOnce(Request<B>) -> F,
    ) -> ResponseFuture<F> {
        let id = self.ids.assign(&mut req);
        ResponseFuture::new(answer(req), id)
    }
}

impl Ids {
    /// The id the request keeps (a usable one a proxy set) or is given, left in its headers.
    fn assign<B>(&self, req: &mut Request<B>) -> HeaderValue {
        match req.headers().get(HEADER) {
            Some(v) if usable(v) => v.clone(),
            _ => {
                let v = self.make();
                req.headers_mut().insert(HEADER, v.clone());
                v
            }
        }
    }
}

/// An id a client may set: what fits in a log field and a page unescaped.
fn usable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;
    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId {
            inner,
            ids: self.ids.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestId<S> {
    inner: S,
    ids: Arc<Ids>,
}

impl<S, B, RB> tower::Service<Request<B>> for RequestId<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = self.ids.assign(&mut req);
        ResponseFuture::new(self.inner.call(req), id)
    }
}

pin_project_lite::pin_project! {
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F> ResponseFuture<F> {
    fn new(inner: F, id: HeaderValue) -> Self {
        Self {
            inner,
            id: Some(id),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        if let Some(id) = this.id.take() {
            if res.extensions().get::<Panicked>().is_some() {
                tracing::error!(
                    request_id = id.to_str().unwrap_or_default(),
                    "a request handler panicked"
                );
            }
            res.headers_mut().insert(HEADER, id);
        }
        Poll::Ready(Ok(res))
    }
}

/// A span per request carrying its id, for the routes that can afford one (all but the
/// check): every line logged while the request is handled names it.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> tracing::Span {
        // The route's template, never the path: paths carry one-time tokens (`/welcome/…`).
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id = of(req.headers()),
            method = %req.method(),
            route,
        )
    }
}

pub type Traced = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    RequestSpan,
    tower_http::trace::DefaultOnRequest,
    tower_http::trace::DefaultOnResponse,
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    (),
>;

/// The trace layer: the span above, and no line of its own for a failed response (the error
/// is logged where it is known, inside the span).
pub fn traced() -> Traced {
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_failure(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_hex_and_clients_ids_are_checked() {
        let layer = RequestIdLayer::default();
        let a = layer.ids.make();
        let b = layer.ids.make();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(usable(&a));
        assert!(usable(&HeaderValue::from_static("lb-1234:abc")));
        assert!(!usable(&HeaderValue::from_static("")));
        assert!(!usable(&HeaderValue::from_static("<script>")));
        assert!(!usable(&HeaderValue::from_str(&"a".repeat(65)).unwrap()));
    }
}

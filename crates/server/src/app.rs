//! The application put together: the state every surface draws from, and the one router that
//! merges the check and SDK APIs, the portal and health, each surface with its own fallback.

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::{Either, FutureExt};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::api;
use crate::check::CheckService;
use crate::metrics::Metrics;
use crate::portal;
use crate::portal::{Portal, PortalState};
use crate::request_id::{self, RequestIdLayer};
use crate::service::Service;

/// The whole server's state; each surface takes the parts it needs through `FromRef`.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub checks: Arc<CheckService>,
    pub metrics: Arc<Metrics>,
    pub portal: Arc<Portal>,
}

impl FromRef<AppState> for Arc<CheckService> {
    fn from_ref(s: &AppState) -> Self {
        s.checks.clone()
    }
}

impl FromRef<AppState> for Service {
    fn from_ref(s: &AppState) -> Self {
        s.service.clone()
    }
}

impl FromRef<AppState> for Arc<Portal> {
    fn from_ref(s: &AppState) -> Self {
        s.portal.clone()
    }
}

impl FromRef<AppState> for PortalState {
    fn from_ref(s: &AppState) -> Self {
        PortalState {
            service: s.service.clone(),
            portal: s.portal.clone(),
        }
    }
}

/// Every route of the public listener, behind the front that answers the check itself.
pub fn router(state: AppState) -> Front {
    let ids = RequestIdLayer::default();
    let checks = state.checks.clone();
    let routes = Router::new()
        .merge(api::routes())
        .merge(portal::routes())
        .merge(
            Router::new()
                .route("/healthz", get(health))
                .route("/readyz", get(ready))
                .layer(request_id::traced()),
        )
        // Health answers like the API (the portal's routes have their own by now).
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(not_found)
        .with_state(state);
    // Paths are normalised before routing (a layer on the router would run after it): an
    // `API_URI` written with a trailing slash makes clients post to `//nl3/…`, and a 404 there
    // reads as "not locked" to a fail-open client.
    let service = tower::ServiceBuilder::new()
        .layer(ids.clone())
        .map_request(normalize_path)
        .service(routes);
    Front(Arc::new(FrontParts {
        checks,
        ids,
        router: Router::new().fallback_service(service),
    }))
}

/// The public listener's service. The check, tens of thousands a second, is answered here when
/// its request names the path exactly as clients send it (`POST`, no slash to tidy): the same
/// handler, request id and panic answer as through the router, without the router's two levels
/// of matching, path normalising and boxed services around it (about a tenth of a check's
/// CPU, BENCHMARKS.md). Everything else, the check under another spelling of its path or
/// method included, goes through the router.
#[derive(Clone)]
pub struct Front(Arc<FrontParts>);

struct FrontParts {
    checks: Arc<CheckService>,
    ids: RequestIdLayer,
    router: Router,
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<request_id::ResponseFuture<CheckFuture>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.method() == Method::POST && req.uri().path() == api::CHECK_PATH {
            let checks = self.0.checks.clone();
            Either::Left(self.0.ids.around(req, |req| {
                Box::pin(caught(api::check::check(State(checks), req))) as CheckFuture
            }))
        } else {
            Either::Right(self.0.router.clone().call(req))
        }
    }
}

/// A handler's answer, or the JSON 500 of one that panicked: what `CatchPanicLayer` does on
/// the router's routes.
async fn caught(answer: impl Future<Output = Response>) -> Result<Response, Infallible> {
    Ok(AssertUnwindSafe(answer)
        .catch_unwind()
        .await
        .unwrap_or_else(api::panicked))
}

/// A path no surface has: under `/nl3`, and for any client that does not ask for a page, the
/// API's JSON; otherwise the portal's page.
async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/nl3") || !wants_page(request.headers()) {
        api::not_found().await.into_response()
    } else {
        portal::not_found(request).await
    }
}

/// Whether the client is a browser navigating: it lists `text/html` among what it accepts.
fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Collapses repeated `/` and drops a trailing one, keeping the query: `//nl3/api/v1/x/` is
/// `/nl3/api/v1/x`. Paths already in that form pass untouched (the common case allocates nothing).
fn normalize_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    let trailing = path.len() > 1 && path.ends_with('/');
    if !trailing && !path.contains("//") {
        return req;
    }
    let mut clean = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && clean.ends_with('/')) {
            clean.push(c);
        }
    }
    if clean.len() > 1 && clean.ends_with('/') {
        clean.pop();
    }
    if let Some(q) = req.uri().query() {
        clean.push('?');
        clean.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = clean.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The process is alive and serving: 200 whatever the store does (`/readyz` says whether it
/// can be relied on).
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Whether this server can answer checks and take changes now: 200, or 503 with the reasons
/// (the store unreachable or past its deadline, its file gone or replaced, its last write
/// failed, the attempt writer stalled or its queue above the high-water mark).
async fn ready(State(s): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    if let Err(e) = s.service.readiness().await {
        tracing::warn!(error = %e.detail(), "not ready: {}", e.reason());
        reasons.push(e.reason().to_string());
    }
    if let Some(r) = crate::attempts::writer_trouble(&s.checks.attempts) {
        reasons.push(r);
    }
    if reasons.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "message": reasons.join("; "), "reasons": reasons}),
            ),
        )
            .into_response()
    }
}

/// `/metrics`, served on its own listener: what it tells (traffic, queue depths) is for the
/// operator's monitoring, not for whoever reaches the public port.
pub fn metrics_router(metrics: Arc<Metrics>, store: Arc<deadbolt_store::Store>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state((metrics, store))
}

async fn render_metrics(
    State((m, store)): State<(Arc<Metrics>, Arc<deadbolt_store::Store>)>,
) -> Response {
    let mut text = m.render();
    crate::metrics::render_store(&mut text, &store);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The front's check answers with the router's panic answer and the request's id.
    #[tokio::test]
    async fn a_check_that_panics_answers_500_with_its_request_id() {
        let ids = RequestIdLayer::default();
        let req = Request::builder()
            .header(request_id::HEADER, "lb-1")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = ids
            .around(req, |_| {
                caught(async {
                    panic!("a handler's bug");
                    #[allow(unreachable_code)]
                    StatusCode::OK.into_response()
                })
            })
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[request_id::HEADER], "lb-1");
        assert!(res.extensions().get::<request_id::Panicked>().is_some());
        let fine = ids
            .around(Request::new(axum::body::Body::empty()), |_| {
                caught(async { StatusCode::OK.into_response() })
            })
            .await
            .unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
        assert_eq!(fine.headers()[request_id::HEADER].len(), 16);
    }
}

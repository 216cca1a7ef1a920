//! The portal: server-rendered pages for the operator, company admins and people. Templates and
//! static files are compiled into the binary.

mod accounts;
mod admin;
mod alerts;
mod attempts;
mod audit;
mod company;
mod company_pages;
mod csrf;
mod error;
mod form_token;
mod links;
mod live;
mod notice;
mod operator;
mod pages;
mod passkeys;
mod password;
mod person;
mod schedules;
mod session;
mod throttle;

use axum::extract::{FromRef, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

use crate::request_id;
use crate::service::Service;

use crate::mail::{MailConfig, Mailer};
pub use links::{create_operator, first_run_link, invite_operator};

/// What the portal is told at start.
#[derive(Debug, Clone, Default)]
pub struct PortalConfig {
    /// The URL people reach the portal at, for links in emails (`https://deadbolt.example.com`).
    /// Without it, the API's public URL (its first audience) is used.
    pub public_url: Option<String>,
    pub mail: MailConfig,
}

/// The portal's own state: its settings, mail, throttles and the keys it signs cookies with.
pub struct Portal {
    config: PortalConfig,
    /// The audiences the API answers to; the first stands in for a missing public URL.
    audiences: Vec<String>,
    mailer: Mailer,
    /// Sign-in tries, reset requests and emails sent, per address and per client.
    throttle: throttle::Throttle,
    passwords: throttle::PasswordWork,
    /// The WebAuthn relying party, or why passkeys are off (the portal's URL is not a secure
    /// origin).
    passkeys: Result<webauthn_rs::Webauthn, String>,
    /// Signs device cookies; derived from the master key, so that a browser known to one
    /// replica is known to all, and still after a restart (which forgets no throttle count
    /// either: a known browser must keep its own count wherever it lands).
    device_key: [u8; 32],
    /// Turns true when the server is asked to stop: live streams end so that a graceful
    /// shutdown does not wait for open pages.
    closing: tokio::sync::watch::Receiver<bool>,
}

/// How long one live stream lasts; the page's EventSource reconnects by itself.
const LIVE_STREAM_SECS: u64 = 600;

impl Portal {
    /// The throttle keeps its counts in the store itself (its rules are the portal's, its
    /// table no one else's): the composition hands it the store.
    pub fn new(
        service: &Service,
        store: Arc<deadbolt_store::Store>,
        config: PortalConfig,
        audiences: Vec<String>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let mailer = Mailer::new(&config.mail);
        let mut portal = Self {
            config,
            audiences,
            mailer,
            throttle: throttle::Throttle::new(store, service.derive_key("portal throttle keys")),
            passwords: throttle::PasswordWork::default(),
            passkeys: Err(String::new()),
            device_key: service.derive_key("portal device cookies"),
            closing,
        };
        portal.passkeys = passkeys::relying_party(&base_url(&portal));
        if let Err(why) = &portal.passkeys {
            tracing::warn!("{why}");
        }
        portal
    }

    /// The portal's mailer, for the alert worker to send with: one SMTP client, and one
    /// "no SMTP server configured" line in the log.
    pub fn mailer(&self) -> Mailer {
        self.mailer.clone()
    }

    /// Prunes the sign-in throttle's counts in the store (forgotten keys, and any over its
    /// bound).
    pub async fn prune_throttle(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, deadbolt_store::StoreError> {
        self.throttle.prune(now).await
    }

    /// The portal's base URL, for links in emails sent from outside the portal (alerts).
    pub fn link_base(&self) -> String {
        base_url(self)
    }

    /// Whether a live stream started at `started` should end now.
    fn stream_over(&self, started: std::time::Instant) -> bool {
        *self.closing.borrow() || started.elapsed().as_secs() >= LIVE_STREAM_SECS
    }
}

/// What portal handlers are given: the service and the portal's own state.
#[derive(Clone)]
pub struct PortalState {
    pub service: Service,
    pub portal: Arc<Portal>,
}

impl FromRef<PortalState> for Arc<Portal> {
    fn from_ref(s: &PortalState) -> Self {
        s.portal.clone()
    }
}

/// The portal's pages, for a server state that provides the portal's.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PortalState: FromRef<S>,
    Arc<Portal>: FromRef<S>,
{
    Router::new()
        .route("/", get(home))
        .route("/login", get(password::login_page).post(password::login))
        .route("/logout", post(password::logout))
        .route("/login/passkey/options", post(passkeys::sign_in_options))
        .route("/login/passkey/finish", post(passkeys::sign_in_finish))
        .route("/login/second-factor", get(passkeys::second_factor_page))
        .route(
            "/login/second-factor/options",
            post(passkeys::second_factor_options),
        )
        .route(
            "/login/second-factor/finish",
            post(passkeys::second_factor_finish),
        )
        .route("/me/passkeys", get(passkeys::passkeys_page))
        .route("/me/passkeys/options", post(passkeys::registration_options))
        .route("/me/passkeys/finish", post(passkeys::registration_finish))
        .route("/me/passkeys/{id}/delete", post(passkeys::remove))
        .route("/signup", get(password::signup_page).post(password::signup))
        .route("/reset", get(password::reset_page).post(password::reset))
        .route(
            "/welcome/{token}",
            get(links::welcome_page).post(links::welcome),
        )
        .route(
            "/password",
            get(password::password_page).post(password::change_password),
        )
        .route("/me", get(person::accounts_page))
        .route("/me/events", get(person::events))
        .route("/me/accounts/{id}", get(person::account_page))
        .route("/me/accounts/{id}/lock", post(person::lock))
        .route("/me/accounts/{id}/unlock", post(person::unlock))
        .route("/me/accounts/{id}/alerts", post(alerts::set_alerts))
        .route(
            "/alerts/{token}",
            get(alerts::alert_link).post(alerts::not_me),
        )
        .route("/me/lock-all", post(person::lock_all))
        .route("/me/attempts/{id}/this-was-me", post(person::this_was_me))
        .route("/me/attempts/{id}/not-me", post(person::not_me))
        .route(
            "/me/schedules",
            get(schedules::schedules_page).post(schedules::add_schedule),
        )
        .route(
            "/me/schedules/{id}/delete",
            post(schedules::delete_schedule),
        )
        .route("/me/time-zone", post(schedules::set_time_zone))
        .route(
            "/me/pairing",
            get(schedules::pairing_page).post(schedules::create_pairing_code),
        )
        .route("/operator", get(operator::page))
        .route("/operator/companies", post(operator::create_company))
        .route("/operator/second-factor", post(passkeys::set_second_factor))
        .route("/operator/companies/{cid}", get(operator::company_page))
        .route(
            "/operator/companies/{cid}/rename",
            post(operator::rename_company),
        )
        .route(
            "/operator/companies/{cid}/admins",
            post(operator::invite_admin),
        )
        .route(
            "/operator/companies/{cid}/delete",
            get(operator::delete_company_page).post(operator::delete_company),
        )
        .nest("/companies/{cid}", company_pages::routes())
        .route("/static/{file}", get(static_file))
        // Browsers ask for it on every site whatever the page says: answered, not a 404.
        .route("/favicon.ico", get(favicon))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_page))
        .layer(request_id::traced())
        .layer(axum::middleware::from_fn(finish))
}

/// The portal's answer to a path it does not have: a page, as a browser expects.
pub async fn not_found(req: Request) -> Response {
    let page = pages::error_page(
        error::PageError::not_found().into_response(),
        request_id::of(req.headers()),
    );
    security_headers_on(page, false)
}

async fn method_not_allowed() -> Response {
    error::PageError::Status(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page cannot be used that way.".into(),
    )
    .into_response()
}

/// A handler that panicked: a page that says so; the request id layer logs it.
fn panic_page(_: Box<dyn std::any::Any + Send>) -> Response {
    let page = error::PageError::Status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Try again in a moment.".into(),
    );
    (axum::Extension(request_id::Panicked), page).into_response()
}

async fn home(me: Option<session::Me>) -> Redirect {
    match me {
        Some(me) if me.is_operator() && me.roles.len() == 1 => Redirect::to("/operator"),
        Some(_) => Redirect::to("/me"),
        None => Redirect::to("/login"),
    }
}

/// Every portal response leaves through here: an error page is rendered with the request's id,
/// and the security headers are set.
async fn finish(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let id = req.headers().get(request_id::HEADER).cloned();
    let res = next.run(req).await;
    let id = id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    security_headers_on(pages::error_page(res, id), is_static)
}

/// Headers on every portal response: no inline scripts, no framing, no sniffing, no referrers
/// (links carry one-time tokens), and pages are not cached; static files keep their own caching.
fn security_headers_on(mut res: Response, is_static: bool) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !is_static && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CSS: &str = include_str!("../../static/portal.css");
const JS: &str = include_str!("../../static/portal.js");
const PASSKEYS_JS: &str = include_str!("../../static/passkeys.js");
const FAVICON: &str = include_str!("../../static/favicon.svg");

async fn favicon() -> Response {
    static_file(axum::extract::Path("favicon.svg".to_string())).await
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "portal.css" => (CSS, "text/css; charset=utf-8"),
        "portal.js" => (JS, "text/javascript; charset=utf-8"),
        "passkeys.js" => (PASSKEYS_JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The portal's base URL, for links in emails and the integration page.
fn base_url(portal: &Portal) -> String {
    let url = match &portal.config.public_url {
        Some(u) => u.trim().trim_end_matches('/'),
        None => portal
            .audiences
            .first()
            .map(String::as_str)
            .unwrap_or("localhost"),
    };
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    // Without a scheme: a server on loopback is reached over plain HTTP, any other over HTTPS.
    let local = url.starts_with("127.") || url.starts_with("localhost") || url.starts_with("[::1]");
    format!("{}://{url}", if local { "http" } else { "https" })
}

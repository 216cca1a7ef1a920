//! Spawns the real application on port 0 with a fresh store and a fake clock.

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use deadbolt::{Config, MasterKeySource, Server, Service};
use deadbolt_core::{AccountState, FakeClock, UnenrolledPolicy};
use deadbolt_store::Application as App;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

pub struct TestApp {
    pub url: String,
    pub port: u16,
    /// `/metrics` on its own listener, when the test configured one.
    pub metrics_url: Option<String>,
    pub service: Service,
    /// The store the server runs on, to look inside it.
    pub store: Arc<deadbolt_store::Store>,
    pub db_url: String,
    pub clock: Arc<FakeClock>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The master key the server was started with (to open the same store elsewhere).
    pub key: MasterKeySource,
    /// The check path, to look into its cache.
    pub checks: std::sync::Weak<deadbolt::check::CheckService>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
        Self::spawn_on(db_url, dir, MasterKeySource::default(), adjust).await
    }

    /// On a fresh PostgreSQL database, when the test cluster is configured.
    pub async fn spawn_pg() -> Option<Self> {
        Self::spawn_pg_with(|_| {}).await
    }

    /// On a fresh PostgreSQL database, with the configuration adjusted.
    pub async fn spawn_pg_with(adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let admin = deadbolt_store::testing::pg_admin_url()?;
        let url = deadbolt_store::testing::fresh_pg_url(&admin).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKeySource {
            value: Some(base64::engine::general_purpose::STANDARD.encode([9u8; 32])),
            file: None,
        };
        Some(Self::spawn_on(url, dir, key, adjust).await)
    }

    pub async fn spawn_on(
        db_url: String,
        dir: tempfile::TempDir,
        key: MasterKeySource,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let clock = Arc::new(FakeClock::new(t0()));
        let mut config = Config::new(&db_url);
        config.listen = "127.0.0.1:0".into();
        config.master_key = key.clone();
        config.rate_limit = 0;
        // Tests read the server's counters: metrics on their own listener, as in production.
        config.metrics_listen = Some("127.0.0.1:0".into());
        adjust(&mut config);
        let service = Service::open_with(&db_url, &config.store_options(), &key, clock.clone())
            .await
            .unwrap();
        #[allow(clippy::disallowed_methods)] // the tests look inside the store
        let store = service.store().clone();
        let app = Server::build_with(config, service.clone()).await.unwrap();
        let port = app.port();
        // `https://127.0.0.1:…` when the test turned TLS on.
        let url = app.url();
        let metrics_url = app.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let checks = app.checks();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            url,
            port,
            metrics_url,
            service,
            store,
            db_url,
            clock,
            http: reqwest::Client::new(),
            dir,
            key,
            checks,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// The text of `/metrics` (from the metrics listener).
    pub async fn metrics_text(&self) -> String {
        let url = self.metrics_url.as_deref().expect("a metrics listener");
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the server gracefully (the attempt queue is drained).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.await.unwrap();
        }
    }

    /// A company with one application of that issuer.
    pub async fn app(&self, issuer: &str) -> App {
        let c = self
            .service
            .create_company(&format!("company of {issuer}"))
            .await
            .unwrap();
        self.service
            .create_application(
                &c.id,
                issuer,
                None,
                UnenrolledPolicy::Allow,
                AccountState::Unlocked,
            )
            .await
            .unwrap()
    }

    pub async fn key(&self, app: &App) -> String {
        self.service.create_signing_key(&app.id).await.unwrap().1
    }

    /// An application of that issuer with `account` enrolled and locked; its signing key.
    pub async fn locked_account(&self, issuer: &str, account: &str) -> String {
        let app = self.app(issuer).await;
        let key = self.key(&app).await;
        let by = &deadbolt::service::By::CLI;
        self.service
            .enroll(by, &app.id, account, None)
            .await
            .unwrap();
        self.service.lock(by, &app.id, account).await.unwrap();
        key
    }

    pub fn audience(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Claims as the vendor's Python sample makes them (PyJWT, fractional dates, no nbf).
    pub fn claims(&self, issuer: &str, sub: &str) -> Value {
        let t = self.clock_secs();
        json!({"iss": issuer, "aud": self.audience(), "sub": sub, "iat": t - 60.0 + 0.25, "exp": t + 300.0 + 0.25})
    }

    pub fn clock_secs(&self) -> f64 {
        use deadbolt_core::Clock;
        self.clock.now().timestamp_micros() as f64 / 1e6
    }

    pub fn token(&self, issuer: &str, key_b64: &str, sub: &str) -> String {
        sign(&self.claims(issuer, sub), key_b64)
    }

    /// Posts a check; returns the status and the JSON body.
    pub async fn check_raw(
        &self,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/nl3/api/v1/accountProtectionCheck", self.url))
            .body(body);
        if let Some(t) = token {
            req = req.header("x-nl3-authorization-token", t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A check with a valid token; returns `locked`, asserting a 200.
    pub async fn locked(&self, issuer: &str, key: &str, sub: &str) -> bool {
        let (status, body) = self
            .check_raw(Some(&self.token(issuer, key, sub)), "{}")
            .await;
        assert_eq!(status, 200, "{body}");
        body["locked"].as_bool().expect("a 200 carries locked")
    }

    pub async fn sdk(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/nl3/api/v1/sdk/{path}", self.url))
            .header("x-nl3-server-api-token", token);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }
}

pub fn sign(claims: &Value, key_b64: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    deadbolt_core::token::sign_hs256(claims, &key)
}

/// An error answer: the given status, a message, and never `locked`.
pub fn assert_refused(got: &(u16, Value), status: u16) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1["message"].is_string(), "{}", got.1);
    assert!(
        got.1.get("locked").is_none(),
        "only a 200 carries locked: {}",
        got.1
    );
}

/// Polls until `f` holds (attempts are written in the background), for at most 5 s.
pub async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("condition not met within 5 s");
}

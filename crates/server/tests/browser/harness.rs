//! The browser test kit: the real server on port 0 (fake clock, fresh SQLite store), an SMTP
//! receiver on loopback, headless Chromium driven through chromedriver, and a plain HTTP
//! session for what a browser cannot show (status codes, headers, forged requests).

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use deadbolt::mail::MailConfig;
use deadbolt::{Config, MasterKeySource, Server, Service};
use deadbolt_core::FakeClock;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::collections::HashMap;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

// ---- SMTP ----

use crate::smtp::{smtp_receiver, Inbox};

/// The receiver every server of this test binary sends to, and its port.
fn inbox() -> &'static (Inbox, u16) {
    static INBOX: OnceLock<(Inbox, u16)> = OnceLock::new();
    INBOX.get_or_init(|| {
        let (port, inbox) = smtp_receiver();
        (inbox, port)
    })
}

/// Waits for an email to `to` and returns it (the newest).
pub async fn email_to(to: &str) -> String {
    for _ in 0..200 {
        let found = inbox()
            .0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(r, _)| r == to)
            .map(|(_, b)| b.clone());
        if let Some(body) = found {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email to {to} within 10 s");
}

/// Waits for an email to `to` and returns the first link in it.
pub async fn emailed_link(to: &str) -> String {
    let body = email_to(to).await;
    let start = body.find("http://").expect("a link in the email");
    body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

// ---- the server ----

pub struct TestPortal {
    pub url: String,
    pub port: u16,
    pub service: Service,
    /// The store the server runs on, to look inside it.
    pub store: Arc<deadbolt_store::Store>,
    pub clock: Arc<FakeClock>,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestPortal {
    pub async fn spawn() -> Self {
        let smtp_port = inbox().1;
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
        let clock = Arc::new(FakeClock::new(t0()));
        let key = MasterKeySource {
            value: Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
            file: None,
        };
        let mut config = Config::new(&db_url);
        config.listen = "127.0.0.1:0".into();
        config.master_key = key.clone();
        config.rate_limit = 0;
        config.portal.mail = MailConfig {
            smtp_url: Some(format!("smtp://127.0.0.1:{smtp_port}")),
            from: Some("Deadbolt <deadbolt@test.example>".into()),
            ..MailConfig::default()
        };
        let service = Service::open(&db_url, &key, clock.clone()).await.unwrap();
        #[allow(clippy::disallowed_methods)] // the tests look inside the store
        let store = service.store().clone();
        let app = Server::build_with(config, service.clone()).await.unwrap();
        let port = app.port();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            service,
            store,
            clock,
            _dir: dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            // Live streams keep connections open; do not wait for them.
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }

    /// Asks the check API, signing like the Cognito trigger; returns `locked`.
    pub async fn locked(&self, issuer: &str, key_b64: &str, account: &str) -> bool {
        let (status, body) = self.check(issuer, key_b64, account, "198.51.100.7").await;
        assert_eq!(status, 200, "{body}");
        body["locked"].as_bool().expect("a 200 carries locked")
    }

    pub async fn check(
        &self,
        issuer: &str,
        key_b64: &str,
        account: &str,
        ip: &str,
    ) -> (u16, Value) {
        use deadbolt_core::Clock;
        let t = self.clock.now().timestamp() as f64;
        let claims = json!({"iss": issuer, "aud": format!("http://127.0.0.1:{}", self.port),
            "sub": account, "iat": t - 60.0, "exp": t + 300.0});
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64.trim())
            .unwrap();
        let token = deadbolt_core::token::sign_hs256(&claims, &key);
        let resp = reqwest::Client::new()
            .post(format!("{}/nl3/api/v1/accountProtectionCheck", self.url))
            .header("x-nl3-authorization-token", token)
            .body(json!({"userIP": ip, "userDevice": "Firefox on Linux", "userLocation": "Lyon, FR", "integrationType": "cognito"}).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A person with a password, for tests that do not go through the emails.
    pub async fn person(&self, email: &str, password: &str) -> deadbolt_store::Person {
        self.service
            .create_person(email, Some(password), None)
            .await
            .unwrap()
    }
}

// ---- plain HTTP, with cookies ----

pub struct Http {
    base: String,
    client: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let i = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[i + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

impl Http {
    pub fn new(portal: &TestPortal) -> Self {
        Self {
            base: portal.url.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// Signs in through the form; returns the answer to the form.
    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        let csrf = self.get("/login").await.csrf();
        self.post(
            "/login",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }
}

// ---- the browser ----

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether browser tests are turned off on purpose (never by a missing browser).
pub fn skipped() -> bool {
    if std::env::var("DEADBOLT_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("browser tests skipped: DEADBOLT_SKIP_BROWSER=1");
        true
    } else {
        false
    }
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chrome_bin = std::env::var("CHROME").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin}: {e}. The browser tests need Chromium and ChromeDriver \
                     (Debian: apt-get install chromium chromium-driver); set DEADBOLT_SKIP_BROWSER=1 to skip them."
                )
            });
        let profile = tempfile::tempdir().unwrap();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "goog:chromeOptions": {
                "binary": chrome_bin,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }))
        .unwrap();
        let mut last = None;
        for _ in 0..100 {
            // WebDriver on loopback is plain HTTP: no TLS stack needed.
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    }
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a Chromium session: {last:?}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let body = self.client.source().await.unwrap_or_default();
                panic!("no {css} on {}: {e}\n{body}", self.url().await)
            }
        }
    }

    /// Sets a field's value directly (time inputs do not take typed text the same way everywhere).
    pub async fn set_value(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        self.client
            .execute(
                "arguments[0].value = arguments[1];",
                vec![serde_json::to_value(&e).unwrap(), json!(value)],
            )
            .await
            .unwrap();
    }

    /// Clicks and waits for the page the click loads.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the element's text contains `needle` (live updates, slow pages).
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                last = e.text().await.unwrap_or_default();
                if last.contains(needle) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never contained {needle:?}; last text: {last:?}");
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn body(&self) -> String {
        self.text("body").await
    }

    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    pub async fn sign_in(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("#login-form button[type=submit]").await;
        self.find("#sign-out").await;
    }

    pub async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.find("#login-form").await;
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

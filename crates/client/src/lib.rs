//! The check protocol as a client: sign the short HS256 token, post the sign-in context, read the
//! answer within a deadline. Shared by the Cognito trigger and `deadbolt check`.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use thiserror::Error;

pub use deadbolt_core::token::sign_hs256;

/// The default check path of the NL3 protocol.
pub const DEFAULT_API_PATH: &str = "/nl3/api/v1/accountProtectionCheck";

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("signing key is not valid base64")]
    KeyEncoding,
    #[error("signing key is empty")]
    EmptyKey,
    #[error("could not build the HTTP client: {0}")]
    Build(String),
    #[error("the check did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the check request failed: {0}")]
    Transport(String),
    #[error("the check answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the check answered without a decision")]
    NoDecision,
}

/// What a client needs to know to ask.
#[derive(Clone)]
pub struct CheckerConfig {
    /// Base URI of the API (`https://api.example.com`); also the token's audience.
    pub api_uri: String,
    pub api_path: String,
    /// The application's issuer (`APP_FQDN` / `APP_URI`).
    pub issuer: String,
    /// The signing key as the portal showed it: base64.
    pub signing_key_b64: String,
    /// Deadline for one whole check (connect, send, answer).
    pub timeout: Duration,
    /// PEM certificates of authorities trusted for the API besides the public ones (a private
    /// CA that signed the server's certificate).
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// The sign-in context sent with a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignIn {
    #[serde(rename = "userIP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(rename = "userDevice", skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(rename = "userLocation", skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(rename = "integrationType", skip_serializing_if = "Option::is_none")]
    pub integration_type: Option<String>,
    #[serde(rename = "integrationData", skip_serializing_if = "Option::is_none")]
    pub integration_data: Option<Value>,
    /// Sent as `x-forwarded-for`.
    #[serde(skip)]
    pub forwarded_for: Option<String>,
    /// Sent as `User-Agent`.
    #[serde(skip)]
    pub user_agent: Option<String>,
    /// Sent as `x-nl3-device-location` ("lat,long").
    #[serde(skip)]
    pub device_location: Option<String>,
}

/// A reusable checker: one HTTP client (one kept-alive connection pool), the key decoded once.
pub struct Checker {
    http: reqwest::Client,
    url: String,
    audience: String,
    issuer: String,
    key: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("url", &self.url)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Checker {
    pub fn new(config: CheckerConfig) -> Result<Self, ClientError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(config.signing_key_b64.trim())
            .map_err(|_| ClientError::KeyEncoding)?;
        if key.is_empty() {
            return Err(ClientError::EmptyKey);
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(300))
            .tcp_nodelay(true);
        if let Some(pem) = &config.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Build(format!("the extra CA certificates: {e}")))?;
            if roots.is_empty() {
                return Err(ClientError::Build(
                    "the extra CA certificates hold no PEM certificate".into(),
                ));
            }
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let base = config.api_uri.trim_end_matches('/');
        let path = if config.api_path.is_empty() {
            DEFAULT_API_PATH
        } else {
            &config.api_path
        };
        let sep = if path.starts_with('/') { "" } else { "/" };
        Ok(Self {
            http,
            url: format!("{base}{sep}{path}"),
            audience: config.api_uri,
            issuer: config.issuer,
            key,
            timeout: config.timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token for `account` at `now`: `iat` and `nbf` a minute back, `exp` five minutes ahead.
    pub fn token(&self, account: &str, now: DateTime<Utc>) -> String {
        let t = now.timestamp();
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": account,
            "iat": t - 60,
            "nbf": t - 60,
            "exp": t + 300,
        });
        sign_hs256(&claims, &self.key)
    }

    /// Asks whether `account` is locked. `Ok` only when the API made a decision.
    pub async fn check(
        &self,
        account: &str,
        sign_in: &SignIn,
        now: DateTime<Utc>,
    ) -> Result<bool, ClientError> {
        self.check_within(account, sign_in, now, self.timeout).await
    }

    /// Like [`Checker::check`], but gives up after `deadline` when that is shorter than the
    /// configured timeout (a Lambda passes the time its invocation has left). A zero deadline
    /// sends nothing.
    pub async fn check_within(
        &self,
        account: &str,
        sign_in: &SignIn,
        now: DateTime<Utc>,
        deadline: Duration,
    ) -> Result<bool, ClientError> {
        let timeout = deadline.min(self.timeout);
        Ok(self.ask(account, sign_in, now, timeout, false).await?.0)
    }

    /// Like [`Checker::check`], and asks Deadbolt which rule decided (`x-deadbolt-explain`):
    /// the reason, when the server says (`unenrolled_allow`, `account_locked`, …).
    pub async fn check_explained(
        &self,
        account: &str,
        sign_in: &SignIn,
        now: DateTime<Utc>,
    ) -> Result<(bool, Option<String>), ClientError> {
        self.ask(account, sign_in, now, self.timeout, true).await
    }

    async fn ask(
        &self,
        account: &str,
        sign_in: &SignIn,
        now: DateTime<Utc>,
        timeout: Duration,
        explain: bool,
    ) -> Result<(bool, Option<String>), ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        let mut req = self
            .http
            .post(&self.url)
            .header("x-nl3-authorization-token", self.token(account, now))
            .json(sign_in);
        if explain {
            req = req.header("x-deadbolt-explain", "1");
        }
        for (name, value) in [
            ("x-forwarded-for", &sign_in.forwarded_for),
            ("user-agent", &sign_in.user_agent),
            ("x-nl3-device-location", &sign_in.device_location),
        ] {
            // A value that cannot be a header (a newline from the caller's context, say) is left
            // out: it must not turn into a transport error, which fail-open would let through.
            if let Some(v) = value.as_deref().and_then(header_value) {
                req = req.header(name, v);
            }
        }
        let answer = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let reason = resp
                .headers()
                .get("x-deadbolt-reason")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, reason, body))
        };
        let (status, reason, body) = match tokio::time::timeout(timeout, answer).await {
            Err(_) => return Err(ClientError::Timeout(timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(ClientError::Timeout(timeout)),
            Ok(Err(e)) => return Err(ClientError::Transport(without_url(&e))),
            Ok(Ok(x)) => x,
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(ClientError::Status { status, message });
        }
        let locked = value
            .get("locked")
            .and_then(Value::as_bool)
            .ok_or(ClientError::NoDecision)?;
        Ok((locked, reason))
    }
}

fn header_value(v: &str) -> Option<reqwest::header::HeaderValue> {
    let v = v.trim();
    if v.is_empty() || v.len() > 1024 {
        return None;
    }
    reqwest::header::HeaderValue::from_str(v).ok()
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<api>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Fail-open or fail-closed: whether a sign-in goes on when the check gave no decision.
pub fn allow_sign_in(result: &Result<bool, ClientError>, fail_open: bool) -> bool {
    match result {
        Ok(locked) => !locked,
        Err(_) => fail_open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CheckerConfig {
        CheckerConfig {
            api_uri: "https://api.example.com/".into(),
            api_path: DEFAULT_API_PATH.into(),
            issuer: "app.example.com".into(),
            signing_key_b64: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            timeout: Duration::from_millis(500),
            extra_roots_pem: None,
        }
    }

    #[test]
    fn extra_roots_must_be_pem_certificates() {
        let mut c = config();
        c.extra_roots_pem = Some(b"not a certificate".to_vec());
        assert!(matches!(Checker::new(c), Err(ClientError::Build(_))));
    }

    #[test]
    fn url_joins_without_double_slash() {
        assert_eq!(
            Checker::new(config()).unwrap().url(),
            "https://api.example.com/nl3/api/v1/accountProtectionCheck"
        );
        let mut c = config();
        c.api_path = "check".into();
        assert_eq!(
            Checker::new(c).unwrap().url(),
            "https://api.example.com/check"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let mut c = config();
        c.signing_key_b64 = "not base64!".into();
        assert!(matches!(
            Checker::new(c).unwrap_err(),
            ClientError::KeyEncoding
        ));
        let mut c = config();
        c.signing_key_b64 = String::new();
        assert!(matches!(
            Checker::new(c).unwrap_err(),
            ClientError::EmptyKey
        ));
    }

    #[test]
    fn token_verifies_with_the_server_rules() {
        use deadbolt_core::token::{parse, TokenPolicy, VerifyingKey};
        let now = DateTime::from_timestamp(1_764_230_400, 0).unwrap();
        let tok = Checker::new(config()).unwrap().token("alice", now);
        let p = parse(&tok).unwrap();
        assert_eq!(p.issuer(), "app.example.com");
        let v = p
            .verify(
                &[VerifyingKey::new((), &[7u8; 32])],
                &TokenPolicy::new(["api.example.com"]),
                now,
            )
            .unwrap();
        assert_eq!(v.subject, "alice");
    }

    #[tokio::test]
    async fn a_shorter_deadline_wins_over_the_configured_timeout() {
        // A listener that completes the handshake (through the backlog) and never answers.
        let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = config();
        c.api_uri = format!("http://{}", hang.local_addr().unwrap());
        c.timeout = Duration::from_secs(30);
        let checker = Checker::new(c).unwrap();
        let now = DateTime::from_timestamp(1_764_230_400, 0).unwrap();
        let short = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let result = checker
            .check_within("alice", &SignIn::default(), now, short)
            .await;
        assert!(matches!(result, Err(ClientError::Timeout(d)) if d == short));
        assert!(started.elapsed() < Duration::from_secs(5));
        let zero = checker
            .check_within("alice", &SignIn::default(), now, Duration::ZERO)
            .await;
        assert!(matches!(zero, Err(ClientError::Timeout(d)) if d.is_zero()));
    }

    #[test]
    fn header_values_that_cannot_be_sent_are_left_out() {
        assert!(header_value("203.0.113.7, 10.0.0.1").is_some());
        assert!(header_value("1.2.3.4\r\nx-evil: 1").is_none());
        assert!(header_value("  ").is_none());
        assert!(header_value(&"a".repeat(2000)).is_none());
    }

    #[test]
    fn fail_open_only_without_a_decision() {
        assert!(!allow_sign_in(&Ok(true), true));
        assert!(allow_sign_in(&Ok(false), false));
        assert!(!allow_sign_in(&Err(ClientError::NoDecision), false));
        assert!(allow_sign_in(&Err(ClientError::NoDecision), true));
    }
}

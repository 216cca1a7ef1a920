//! One invocation: decide whether the event's client is checked, ask Deadbolt within the time
//! left, and turn the answer (or its absence) into "let the sign-in go on" or a refusal.

use crate::config::{AppClients, ConfigError, KeySource, Settings};
use crate::event::PreAuthentication;
use chrono::{DateTime, Utc};
use deadbolt_client::{Checker, CheckerConfig, ClientError};
use lambda_runtime::Diagnostic;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Time kept back from the Lambda deadline to post the answer to the runtime.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// Why a sign-in is refused. Its `Display` is exactly the message Cognito shows the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Deadbolt answered `{"locked": true}`: `LOCKED_MESSAGE`.
    Locked(String),
    /// No answer and `FAIL_OPEN` is false: `UNAVAILABLE_MESSAGE`.
    NoAnswer(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(m) | Self::NoAnswer(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for Diagnostic {
    fn from(r: Refusal) -> Self {
        let error_type = match r {
            Refusal::Locked(_) => "Deadbolt.AccountLocked",
            Refusal::NoAnswer(_) => "Deadbolt.CheckUnavailable",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: r.to_string(),
        }
    }
}

/// What happened to one sign-in, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The app client is not in `CLIENT_ID`: nothing asked.
    NotChecked,
    Allowed,
    Locked,
    /// No answer, let through because `FAIL_OPEN` is true.
    AllowedWithoutAnswer,
    /// No answer, refused because `FAIL_OPEN` is false.
    RefusedWithoutAnswer,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotChecked => "not_checked",
            Self::Allowed => "allowed",
            Self::Locked => "locked",
            Self::AllowedWithoutAnswer => "allowed_without_answer",
            Self::RefusedWithoutAnswer => "refused_without_answer",
        }
    }
}

/// The time one check may take: the configured timeout, cut to what is left of the Lambda
/// invocation (`deadline_ms`, milliseconds since the epoch) less [`DEADLINE_MARGIN`].
pub fn budget(timeout: Duration, deadline_ms: u64, now: DateTime<Utc>) -> Duration {
    let left_ms = i128::from(deadline_ms)
        - i128::from(now.timestamp_millis())
        - DEADLINE_MARGIN.as_millis() as i128;
    match u64::try_from(left_ms) {
        Ok(ms) => timeout.min(Duration::from_millis(ms)),
        Err(_) => Duration::ZERO,
    }
}

/// The answer to Cognito for a check's result.
pub fn verdict(
    result: &Result<bool, ClientError>,
    fail_open: bool,
    locked_message: &str,
    unavailable_message: &str,
) -> (Outcome, Result<(), Refusal>) {
    match result {
        Ok(false) => (Outcome::Allowed, Ok(())),
        Ok(true) => (
            Outcome::Locked,
            Err(Refusal::Locked(locked_message.to_string())),
        ),
        Err(_) if fail_open => (Outcome::AllowedWithoutAnswer, Ok(())),
        Err(_) => (
            Outcome::RefusedWithoutAnswer,
            Err(Refusal::NoAnswer(unavailable_message.to_string())),
        ),
    }
}

/// The trigger, set up once per Lambda instance: one checker (one HTTPS connection pool, the key
/// decoded once) serves every invocation.
#[derive(Debug)]
pub struct Trigger {
    checker: Checker,
    clients: AppClients,
    locked_message: String,
    unavailable_message: String,
    fail_open: bool,
    timeout: Duration,
}

impl Trigger {
    /// Builds the trigger from settings and the base64 signing key.
    pub fn new(settings: Settings, signing_key_b64: String) -> Result<Self, ConfigError> {
        let extra_roots_pem = match &settings.api_ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| ConfigError::Invalid {
                name: "API_CA_FILE",
                reason: format!("cannot read {}: {e}", path.display()),
            })?),
        };
        let checker = Checker::new(CheckerConfig {
            api_uri: settings.api_uri,
            api_path: settings.api_path,
            issuer: settings.issuer,
            signing_key_b64,
            timeout: settings.timeout,
            extra_roots_pem,
        })
        .map_err(|e| match e {
            // With API_CA_FILE set, a client that does not build is almost always its
            // certificates: name the setting to look at.
            ClientError::Build(reason) if settings.api_ca_file.is_some() => ConfigError::Invalid {
                name: "API_CA_FILE",
                reason,
            },
            e => e.into(),
        })?;
        Ok(Self {
            checker,
            clients: settings.clients,
            locked_message: settings.locked_message,
            unavailable_message: settings.unavailable_message,
            fail_open: settings.fail_open,
            timeout: settings.timeout,
        })
    }

    /// Builds the trigger from the environment, reading the key from Secrets Manager if told to.
    pub async fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// Builds the trigger, reading the key from Secrets Manager if the settings say so.
    pub async fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let key = match &settings.key {
            KeySource::Environment(key) => key.clone(),
            KeySource::SecretsManager {
                secret_id,
                port,
                session_token,
            } => {
                crate::secret::fetch_signing_key(secret_id, *port, session_token.as_deref()).await?
            }
        };
        let api = settings.api_uri.clone();
        let issuer = settings.issuer.clone();
        let clients = format!("{:?}", settings.clients);
        let key_source = format!("{:?}", settings.key);
        let (fail_open, timeout) = (settings.fail_open, settings.timeout);
        let api_ca_file = settings
            .api_ca_file
            .as_ref()
            .map(|p| p.display().to_string());
        let trigger = Self::new(settings, key)?;
        tracing::info!(
            api,
            issuer,
            clients,
            key_source,
            api_ca_file,
            fail_open,
            timeout_ms = timeout.as_millis() as u64,
            "Deadbolt trigger ready"
        );
        Ok(trigger)
    }

    /// Decides one sign-in. `Ok(())` means: return the event to Cognito as it came.
    pub async fn handle(
        &self,
        event: &Value,
        request_id: &str,
        deadline_ms: u64,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let started = tokio::time::Instant::now();
        let event = PreAuthentication::read(event);
        let client_id = event.client_id.as_deref().unwrap_or_default();
        if !self.clients.covers(client_id) {
            tracing::info!(
                request_id,
                client_id,
                outcome = Outcome::NotChecked.as_str(),
                "sign-in through an app client that is not checked"
            );
            return Ok(());
        }
        let budget = budget(self.timeout, deadline_ms, now);
        let result = match event.user_name.as_deref() {
            Some(user) if !user.is_empty() => {
                self.checker
                    .check_within(user, &event.sign_in, now, budget)
                    .await
            }
            _ => Err(ClientError::NoDecision),
        };
        let (outcome, answer) = verdict(
            &result,
            self.fail_open,
            &self.locked_message,
            &self.unavailable_message,
        );
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let user = event.user_name.as_deref().unwrap_or_default();
        match &result {
            Ok(_) => tracing::info!(
                request_id,
                client_id,
                user,
                outcome = outcome.as_str(),
                elapsed_ms,
                "sign-in checked"
            ),
            Err(error) => tracing::warn!(
                request_id,
                client_id,
                user,
                outcome = outcome.as_str(),
                elapsed_ms,
                budget_ms = budget.as_millis() as u64,
                error = %error,
                "Deadbolt gave no answer"
            ),
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::documented_event;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn the_budget_is_the_timeout_or_what_the_invocation_has_left() {
        let t = Duration::from_millis(2000);
        let now_ms = 1_764_230_400_000;
        // Plenty of time left: the configured timeout.
        assert_eq!(budget(t, now_ms as u64 + 30_000, at(now_ms)), t);
        // Less left than the timeout: what is left, less the margin.
        assert_eq!(
            budget(t, now_ms as u64 + 1000, at(now_ms)),
            Duration::from_millis(800)
        );
        // Nothing left (or already late): zero, so nothing is sent.
        assert_eq!(budget(t, now_ms as u64 + 150, at(now_ms)), Duration::ZERO);
        assert_eq!(budget(t, now_ms as u64 - 5, at(now_ms)), Duration::ZERO);
        assert_eq!(budget(t, 0, at(now_ms)), Duration::ZERO);
    }

    #[test]
    fn only_a_decision_decides_unless_fail_open() {
        let m = |r: Result<bool, ClientError>, open| verdict(&r, open, "LOCKED!", "later");
        assert_eq!(m(Ok(false), false), (Outcome::Allowed, Ok(())));
        assert_eq!(
            m(Ok(true), true),
            (Outcome::Locked, Err(Refusal::Locked("LOCKED!".into())))
        );
        let no_answers = || {
            [
                ClientError::Timeout(Duration::from_secs(1)),
                ClientError::Transport("connection refused".into()),
                ClientError::Status {
                    status: 503,
                    message: "store unavailable".into(),
                },
                ClientError::NoDecision,
            ]
        };
        for e in no_answers() {
            assert_eq!(
                m(Err(e), false),
                (
                    Outcome::RefusedWithoutAnswer,
                    Err(Refusal::NoAnswer("later".into()))
                )
            );
        }
        for e in no_answers() {
            assert_eq!(m(Err(e), true), (Outcome::AllowedWithoutAnswer, Ok(())));
        }
    }

    #[test]
    fn a_refusal_reaches_cognito_with_exactly_the_configured_message() {
        let d: Diagnostic = Refusal::Locked("Your account is locked in Deadbolt.".into()).into();
        assert_eq!(d.error_message, "Your account is locked in Deadbolt.");
        assert_eq!(d.error_type, "Deadbolt.AccountLocked");
        let d: Diagnostic = Refusal::NoAnswer("later".into()).into();
        assert_eq!(d.error_message, "later");
        assert_eq!(d.error_type, "Deadbolt.CheckUnavailable");
    }

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A check API that remembers the tokens it was sent and answers `locked` for "alice".
    async fn recording_api() -> (String, Arc<Mutex<Vec<String>>>) {
        use axum::{http::HeaderMap, routing::post, Json, Router};
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&tokens);
        let app = Router::new().route(
            deadbolt_client::DEFAULT_API_PATH,
            post(move |headers: HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    let token = headers["x-nl3-authorization-token"].to_str().unwrap();
                    seen.lock().unwrap().push(token.to_string());
                    Json(serde_json::json!({"locked": true}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (uri, tokens)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn logs_never_contain_the_key_or_the_token() {
        use base64::Engine;
        let raw_key = b"deadbolt-test-signing-key-bytes!";
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(raw_key);
        let (api_uri, tokens) = recording_api().await;
        let env = [
            ("SIGNING_KEY", key_b64.as_str()),
            ("APP_FQDN", "app.example.com"),
            ("CLIENT_ID", "1example23456789"),
            ("API_URI", api_uri.as_str()),
            ("LOCKED_MESSAGE", "Locked by Deadbolt."),
        ];
        let settings = Settings::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();

        let logs = Captured::default();
        let _guard = tracing::subscriber::set_default(crate::logging::subscriber(
            logs.clone(),
            tracing::Level::TRACE,
        ));
        let trigger = Trigger::from_settings(settings).await.unwrap();
        let now = deadbolt_core::Clock::now(&deadbolt_core::SystemClock);
        let deadline = now.timestamp_millis() as u64 + 10_000;

        let answer = trigger
            .handle(&documented_event(), "req-1", deadline, now)
            .await;
        assert_eq!(answer, Err(Refusal::Locked("Locked by Deadbolt.".into())));
        // Another app client: not asked, and logged as such.
        let mut other = documented_event();
        other["callerContext"]["clientId"] = "another-client".into();
        assert_eq!(trigger.handle(&other, "req-2", deadline, now).await, Ok(()));

        let tokens = tokens.lock().unwrap().clone();
        assert_eq!(tokens.len(), 1, "one check, for the listed client only");
        let logs = logs.text();
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect();
        assert!(lines
            .iter()
            .any(|l| l["message"] == "Deadbolt trigger ready"));
        assert!(lines
            .iter()
            .any(|l| l["outcome"] == "locked" && l["user"] == "alice"));
        assert!(lines.iter().any(|l| l["outcome"] == "not_checked"));
        assert!(!logs.contains(&key_b64), "{logs}");
        assert!(
            !logs.contains(std::str::from_utf8(raw_key).unwrap()),
            "{logs}"
        );
        for token in &tokens {
            assert!(!logs.contains(token.as_str()), "{logs}");
            let signature = token.rsplit('.').next().unwrap();
            assert!(!logs.contains(signature), "{logs}");
        }
        assert!(
            !logs.contains("eyJ"),
            "nothing that looks like a JWT: {logs}"
        );
    }
}

//! End to end: the real `bootstrap` under a Lambda Runtime API emulator, against the real
//! Deadbolt server, as Cognito would invoke it at every sign-in.

#![allow(clippy::unwrap_used)] // a test: a failed set-up step should stop it

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::events::{pre_authentication, CLIENT_ID};
use support::function::{lambda_environment, Function};
use support::pki::Ca;
use support::runtime_api::{Answer, RuntimeApi};
use support::server::{Server, ISSUER};

const LOCKED_MESSAGE: &str = "Your account is locked. Unlock it in Deadbolt to sign in.";
const UNAVAILABLE_MESSAGE: &str = "The sign-in could not be checked. Try again later.";

/// A `bootstrap` process and the Runtime API it polls.
struct Lambda {
    api: RuntimeApi,
    function: Function,
}

impl Lambda {
    async fn start(settings: &[(&str, &str)]) -> Self {
        let api = RuntimeApi::start().await;
        let mut env: BTreeMap<String, String> = lambda_environment(&api.address());
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let function = Function::start(Path::new(env!("CARGO_BIN_EXE_bootstrap")), &[], None, &env);
        Self { api, function }
    }

    /// Started against `server` with the sample's variables.
    async fn against(server: &Server, extra: &[(&str, &str)]) -> Self {
        let mut settings = vec![
            ("SIGNING_KEY", server.signing_key.as_str()),
            ("APP_FQDN", ISSUER),
            ("CLIENT_ID", CLIENT_ID),
            ("API_URI", server.api_uri.as_str()),
            ("LOCKED_MESSAGE", LOCKED_MESSAGE),
            ("UNAVAILABLE_MESSAGE", UNAVAILABLE_MESSAGE),
        ];
        for (k, v) in extra {
            settings.retain(|(name, _)| name != k);
            settings.push((k, v));
        }
        Self::start(&settings).await
    }

    /// The init error the function reported before it stopped.
    async fn init_error(&mut self) -> Value {
        let status = self
            .function
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("the function stops");
        assert!(!status.success());
        self.api.init_error().expect("an init error was reported")
    }

    async fn invoke(&self, event: &Value) -> Answer {
        self.api.invoke(event).await.answer
    }

    /// Fails the test with the function's output when the answer is not the event back.
    async fn expect_allowed(&self, event: &Value) {
        let answer = self.invoke(event).await;
        assert_eq!(
            answer.response_json().as_ref(),
            Some(event),
            "expected the event back, got {answer:?}; function output:\n{}",
            self.function.output()
        );
    }

    async fn expect_refused(&self, event: &Value, message: &str) {
        match self.invoke(event).await {
            Answer::Error { message: m, .. } => assert_eq!(m, message),
            other => panic!(
                "expected a refusal, got {other:?}; function output:\n{}",
                self.function.output()
            ),
        }
    }
}

/// An address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// An API that accepts connections, reads, and never answers.
async fn hanging_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unlocked_account_gets_the_event_back_byte_for_byte() {
    let server = Server::start().await;
    server.enrol("alice", false).await;
    let lambda = Lambda::against(&server, &[]).await;

    // Odd spacing, key order and fields no event type knows: all must come back as sent.
    let raw = br#"{ "version":"1","region":"eu-west-1","userPoolId":"eu-west-1_EXAMPLE",
  "userName":"alice",  "callerContext":{"awsSdkVersion":"aws-sdk-unknown-unknown","clientId":"1example23456789"},
  "triggerSource":"PreAuthentication_Authentication",
  "request":{"userAttributes":{"email":"alice@example.com","name":"Al\u00efce \ud83d\udd12"},
    "validationData":{"ip":"203.0.113.7","device":"Firefox/128.0","location":"Berlin, DE","additionalData":"{\"loc\":\"52.52,13.40\"}"},
    "userNotFound":false,"futureField":{"n":1.50,"big":12345678901234567890123}},
  "response":{}, "zz":[] }"#;
    let answered = lambda
        .api
        .invoke_raw(raw, Duration::from_secs(5), Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(
        answered.answer,
        Answer::Response(raw.to_vec()),
        "function output:\n{}",
        lambda.function.output()
    );

    // The documented event, through the same function (one connection, reused).
    lambda.expect_allowed(&pre_authentication("alice")).await;

    // The context reached Deadbolt.
    let attempts = server.attempts(2, Duration::from_secs(5)).await;
    assert_eq!(attempts.len(), 2);
    let a = &attempts[0];
    assert_eq!(a.account, "alice");
    assert!(!a.locked);
    assert_eq!(a.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(a.location.as_deref(), Some("Berlin, DE"));
    assert_eq!(a.integration_type.as_deref(), Some("cognito"));
    let data: Value = serde_json::from_str(a.integration_data.as_deref().unwrap()).unwrap();
    assert_eq!(data["loc"], "52.52,13.40");
}

#[tokio::test]
async fn one_connection_serves_every_invocation() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    // A TCP relay in front of the server counts the connections the function opens.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_uri = format!("http://{}", relay.local_addr().unwrap());
    let server = Server::start_as(Some(relay_uri)).await;
    server.enrol("alice", false).await;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let upstream = server.addr;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = relay.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });

    let lambda = Lambda::against(&server, &[]).await;
    for _ in 0..10 {
        lambda.expect_allowed(&pre_authentication("alice")).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_locked_account_is_refused_with_exactly_the_locked_message() {
    let server = Server::start().await;
    server.enrol("alice", true).await;
    let lambda = Lambda::against(&server, &[]).await;
    match lambda.invoke(&pre_authentication("alice")).await {
        Answer::Error {
            error_type,
            message,
        } => {
            assert_eq!(message, LOCKED_MESSAGE);
            assert_eq!(error_type, "Deadbolt.AccountLocked");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let attempts = server.attempts(1, Duration::from_secs(5)).await;
    assert!(attempts[0].locked);
}

#[tokio::test]
async fn another_app_client_passes_through_without_a_check() {
    let server = Server::start().await;
    server.enrol("alice", true).await;
    server.enrol("bob", false).await;
    let lambda = Lambda::against(&server, &[("CLIENT_ID", "web-client, 1example23456789")]).await;

    let mut other = pre_authentication("alice");
    other["callerContext"]["clientId"] = json!("admin-console-client");
    lambda.expect_allowed(&other).await;
    let mut no_client = pre_authentication("alice");
    no_client["callerContext"] = json!({});
    lambda.expect_allowed(&no_client).await;

    // Every listed client is checked.
    let mut web = pre_authentication("alice");
    web["callerContext"]["clientId"] = json!("web-client");
    lambda.expect_refused(&web, LOCKED_MESSAGE).await;
    lambda.expect_allowed(&pre_authentication("bob")).await;

    // Two checks reached Deadbolt, none for the clients that are not listed.
    let attempts = server.attempts(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts_later = server.attempts(2, Duration::ZERO).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts_later.len(), 2);
}

#[tokio::test]
async fn empty_validation_data_and_non_json_additional_data_are_still_decided() {
    let server = Server::start().await;
    server.enrol("alice", true).await;
    server.enrol("bob", false).await;
    let lambda = Lambda::against(&server, &[]).await;

    let shapes = [
        json!({}),
        Value::Null,
        json!({"additionalData": "not json at all {"}),
        json!({"ip": "203.0.113.9", "additionalData": ""}),
    ];
    for data in &shapes {
        let mut locked = pre_authentication("alice");
        locked["request"]["validationData"] = data.clone();
        lambda.expect_refused(&locked, LOCKED_MESSAGE).await;
        let mut unlocked = pre_authentication("bob");
        unlocked["request"]["validationData"] = data.clone();
        lambda.expect_allowed(&unlocked).await;
    }
    let mut without = pre_authentication("alice");
    without["request"]
        .as_object_mut()
        .unwrap()
        .remove("validationData");
    lambda.expect_refused(&without, LOCKED_MESSAGE).await;

    let attempts = server.attempts(9, Duration::from_secs(5)).await;
    assert!(attempts
        .iter()
        .any(|a| a.integration_data.as_deref() == Some(r#""not json at all {""#)));
}

#[tokio::test]
async fn a_lock_made_between_sign_ins_is_enforced_at_the_next() {
    let server = Server::start().await;
    server.enrol("alice", false).await;
    let lambda = Lambda::against(&server, &[]).await;
    lambda.expect_allowed(&pre_authentication("alice")).await;
    server.lock("alice").await;
    lambda
        .expect_refused(&pre_authentication("alice"), LOCKED_MESSAGE)
        .await;
    server.unlock("alice").await;
    lambda.expect_allowed(&pre_authentication("alice")).await;
}

#[tokio::test]
async fn context_that_cannot_be_sent_as_is_cannot_open_a_locked_account() {
    // With FAIL_OPEN, a request the API refuses would let the sign-in through: values that
    // cannot be headers, oversized and too deeply nested context must still get a decision.
    let server = Server::start().await;
    server.enrol("alice", true).await;
    let lambda = Lambda::against(&server, &[("FAIL_OPEN", "true")]).await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for data in [
        json!({"ip": "203.0.113.7\r\nx-injected: 1", "device": "bad\u{0}device"}),
        json!({"ip": "9".repeat(100_000), "device": "d".repeat(100_000)}),
        json!({"additionalData": deep}),
        json!({"additionalData": format!("{{\"loc\":\"{}\"}}", "1".repeat(60_000))}),
        json!({"additionalData": "{\"loc\":\"52.5\\r\\n13.4\"}"}),
    ] {
        let mut event = pre_authentication("alice");
        event["request"]["validationData"] = data;
        lambda.expect_refused(&event, LOCKED_MESSAGE).await;
    }
}

#[tokio::test]
async fn an_api_that_is_down_refuses_the_sign_in_unless_fail_open() {
    let down = closed_port();
    let settings = |fail_open: &'static str| {
        vec![
            ("SIGNING_KEY", "ZGVhZGJvbHQtdGVzdC1rZXk="),
            ("APP_FQDN", ISSUER),
            ("CLIENT_ID", CLIENT_ID),
            ("LOCKED_MESSAGE", LOCKED_MESSAGE),
            ("UNAVAILABLE_MESSAGE", UNAVAILABLE_MESSAGE),
            ("FAIL_OPEN", fail_open),
        ]
    };
    let mut closed = settings("false");
    closed.push(("API_URI", down.as_str()));
    let lambda = Lambda::start(&closed).await;
    match lambda.invoke(&pre_authentication("alice")).await {
        Answer::Error {
            error_type,
            message,
        } => {
            assert_eq!(message, UNAVAILABLE_MESSAGE);
            assert_eq!(error_type, "Deadbolt.CheckUnavailable");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let mut open = settings("true");
    open.push(("API_URI", down.as_str()));
    let lambda = Lambda::start(&open).await;
    lambda.expect_allowed(&pre_authentication("alice")).await;
}

#[tokio::test]
async fn an_api_that_hangs_is_refused_within_the_deadline() {
    let hang = hanging_api().await;
    let base = [
        ("SIGNING_KEY", "ZGVhZGJvbHQtdGVzdC1rZXk="),
        ("APP_FQDN", ISSUER),
        ("CLIENT_ID", CLIENT_ID),
        ("API_URI", hang.as_str()),
        ("UNAVAILABLE_MESSAGE", UNAVAILABLE_MESSAGE),
    ];
    // The configured timeout.
    let mut settings = base.to_vec();
    settings.push(("TIMEOUT_MS", "1000"));
    let lambda = Lambda::start(&settings).await;
    let started = Instant::now();
    let answered = lambda.api.invoke(&pre_authentication("alice")).await;
    assert!(
        matches!(&answered.answer, Answer::Error { message, .. } if message == UNAVAILABLE_MESSAGE),
        "{answered:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "inside Cognito's 5 s"
    );

    // A Lambda deadline shorter than the timeout wins: the answer comes before it.
    let mut settings = base.to_vec();
    settings.push(("TIMEOUT_MS", "4500"));
    let lambda = Lambda::start(&settings).await;
    let body = serde_json::to_vec(&pre_authentication("alice")).unwrap();
    let answered = lambda
        .api
        .invoke_raw(&body, Duration::from_millis(1500), Duration::from_secs(10))
        .await
        .expect("an answer");
    assert!(
        matches!(answered.answer, Answer::Error { .. }),
        "{answered:?}"
    );
    assert!(
        answered.answered_ms <= answered.deadline_ms,
        "answered {} ms after the Lambda deadline",
        answered.answered_ms - answered.deadline_ms
    );
}

#[tokio::test]
async fn the_key_can_come_from_secrets_manager_through_the_extension() {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use std::collections::HashMap;

    let server = Server::start().await;
    server.enrol("alice", true).await;
    server.enrol("bob", false).await;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:deadbolt-key-AbCdEf";
    let key = server.signing_key.clone();
    let extension = axum::Router::new().route(
        "/secretsmanager/get",
        axum::routing::get(
            move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| {
                let key = key.clone();
                async move {
                    let token = headers
                        .get("x-aws-parameters-secrets-token")
                        .and_then(|v| v.to_str().ok());
                    if token != Some("session-token") {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if q.get("secretId").map(String::as_str) != Some(ARN) {
                        return (StatusCode::BAD_REQUEST, "unknown secret".into());
                    }
                    let inner = json!({"SIGNING_KEY": key}).to_string();
                    let body = json!({"ARN": ARN, "Name": "deadbolt-key", "SecretString": inner});
                    (StatusCode::OK, body.to_string())
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    tokio::spawn(async move { axum::serve(listener, extension).await.unwrap() });

    let lambda = Lambda::start(&[
        ("SIGNING_KEY_SECRET_ARN", ARN),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.as_str()),
        ("AWS_SESSION_TOKEN", "session-token"),
        ("APP_FQDN", ISSUER),
        ("CLIENT_ID", CLIENT_ID),
        ("API_URI", server.api_uri.as_str()),
        ("LOCKED_MESSAGE", LOCKED_MESSAGE),
    ])
    .await;
    lambda
        .expect_refused(&pre_authentication("alice"), LOCKED_MESSAGE)
        .await;
    lambda.expect_allowed(&pre_authentication("bob")).await;
    assert!(!lambda.function.output().contains(&server.signing_key));
}

/// Deadbolt over HTTPS with a certificate of a private authority, which `API_CA_FILE` trusts.
#[tokio::test]
async fn over_https_with_a_private_ca_a_locked_users_sign_in_is_refused() {
    let ca = Ca::root("Example Ltd root");
    let server = Server::start_https(&ca).await;
    assert!(server.api_uri.starts_with("https://"), "{}", server.api_uri);
    server.enrol("alice", true).await;
    server.enrol("bob", false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).unwrap();

    let lambda = Lambda::against(&server, &[("API_CA_FILE", ca_file.to_str().unwrap())]).await;
    lambda
        .expect_refused(&pre_authentication("alice"), LOCKED_MESSAGE)
        .await;
    lambda.expect_allowed(&pre_authentication("bob")).await;
    assert_eq!(server.attempts(2, Duration::from_secs(5)).await.len(), 2);

    // Without it the certificate is not trusted: no answer, and the sign-in is refused.
    let untrusting = Lambda::against(&server, &[]).await;
    untrusting
        .expect_refused(&pre_authentication("bob"), UNAVAILABLE_MESSAGE)
        .await;
}

#[tokio::test]
async fn an_api_ca_file_that_cannot_be_read_is_reported_as_an_init_error() {
    let server = Server::start().await;
    let mut lambda = Lambda::against(&server, &[("API_CA_FILE", "/nonexistent/ca.pem")]).await;
    let reported = lambda.init_error().await;
    let message = reported["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("API_CA_FILE is not valid: cannot read /nonexistent/ca.pem"),
        "{message}"
    );
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_is_reported_as_an_init_error() {
    let nothing_there = closed_port();
    let port = nothing_there.rsplit(':').next().unwrap();
    let mut lambda = Lambda::start(&[
        ("SIGNING_KEY_SECRET_ID", "deadbolt-key"),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port),
        ("APP_FQDN", ISSUER),
        ("CLIENT_ID", CLIENT_ID),
        ("API_URI", "https://deadbolt.example.com"),
    ])
    .await;
    let reported = lambda.init_error().await;
    let message = reported["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("the signing key could not be read from Secrets Manager"),
        "{message}"
    );
}

#[tokio::test]
async fn a_bad_configuration_is_reported_as_an_init_error() {
    let mut lambda = Lambda::start(&[
        ("SIGNING_KEY", "ZGVhZGJvbHQtdGVzdC1rZXk="),
        ("APP_FQDN", ISSUER),
        ("CLIENT_ID", CLIENT_ID),
    ])
    .await;
    let reported = lambda.init_error().await;
    assert_eq!(reported["errorType"], "Deadbolt.ConfigError");
    assert_eq!(reported["errorMessage"], "API_URI is not set");
}

#[tokio::test]
async fn logs_are_json_lines_without_the_key_or_any_token() {
    let server = Server::start().await;
    server.enrol("alice", true).await;
    server.enrol("bob", false).await;
    let lambda = Lambda::against(&server, &[("AWS_LAMBDA_LOG_LEVEL", "TRACE")]).await;
    lambda
        .expect_refused(&pre_authentication("alice"), LOCKED_MESSAGE)
        .await;
    lambda.expect_allowed(&pre_authentication("bob")).await;
    let mut other = pre_authentication("bob");
    other["callerContext"]["clientId"] = json!("another");
    lambda.expect_allowed(&other).await;

    // The function logs an outcome after answering the runtime API: wait for the third line
    // instead of reading the output the moment the last answer arrived.
    let mut output = lambda.function.output();
    for _ in 0..100 {
        if output.matches("\"outcome\"").count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        output = lambda.function.output();
    }
    let lines: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let outcomes: Vec<&str> = lines.iter().filter_map(|l| l["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["locked", "allowed", "not_checked"]);
    assert!(!output.contains(&server.signing_key), "{output}");
    assert!(
        !output.contains("eyJ"),
        "nothing that looks like a JWT: {output}"
    );
}

//! The check protocol on the wire: tokens real clients make, hostile tokens and bodies.

use crate::helpers::*;
use deadbolt::service::By;
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;

const ISS: &str = "app.example.com";

async fn setup() -> (TestApp, String) {
    setup_with(|_| {}).await
}

/// A server (configured by `adjust`) whose application has a key and a locked `alice`.
async fn setup_with(adjust: impl FnOnce(&mut deadbolt::Config)) -> (TestApp, String) {
    let t = TestApp::spawn_with(adjust).await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "alice", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "alice").await.unwrap();
    (t, key)
}

#[tokio::test]
async fn pyjwt_and_njwt_shapes_are_answered() {
    let (t, key) = setup().await;
    // The vendor's Python sample: fractional iat/exp, issuer as host, audience with scheme.
    assert!(t.locked(ISS, &key, "alice").await);
    // njwt: integer dates, nbf, jti; issuer as URI, audience as host:port only.
    let s = t.clock_secs() as i64;
    let claims = json!({"iss": "https://app.example.com/", "aud": format!("127.0.0.1:{}", t.port), "sub": "alice",
                        "jti": "0b6c1f1e-3a8f-4a55-9d0e-5b0f0b6f9c11", "iat": s - 60, "nbf": s - 60, "exp": s + 300});
    let got = t.check_raw(Some(&sign(&claims, &key)), "{}").await;
    assert_eq!(got, (200, json!({"locked": true})));
    // An account nobody enrolled, under the default `allow` policy.
    assert!(!t.locked(ISS, &key, "nobody").await);
}

#[tokio::test]
async fn hostile_tokens_get_401_and_no_decision() {
    let (t, key) = setup().await;
    let other_key = base64_of(&[7u8; 32]);
    let c = t.claims(ISS, "alice");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = c.clone();
        f(&mut c);
        c
    };
    let b64 = |s: &str| base64url(s.as_bytes());
    let body = b64(&c.to_string());
    let valid = sign(&c, &key);
    let (head, sig) = valid.rsplit_once('.').unwrap();
    let mut tampered_sig: Vec<char> = sig.chars().collect();
    tampered_sig[3] = if tampered_sig[3] == 'A' { 'B' } else { 'A' };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("not.a.jwt".into())),
        (
            "alg none",
            Some(format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#))),
        ),
        (
            "HS512 label",
            Some(format!("{}.{body}.{sig}", b64(r#"{"alg":"HS512"}"#))),
        ),
        (
            "RS256 label on an HMAC",
            Some(format!("{}.{body}.{sig}", b64(r#"{"alg":"RS256"}"#))),
        ),
        ("wrong key", Some(sign(&c, &other_key))),
        (
            "tampered signature",
            Some(format!(
                "{head}.{}",
                tampered_sig.into_iter().collect::<String>()
            )),
        ),
        (
            "tampered claims",
            Some(format!(
                "{}.{}.{sig}",
                head.split('.').next().unwrap(),
                b64(&with(&|c| c["sub"] = json!("bob")).to_string())
            )),
        ),
        (
            "expired",
            Some(sign(
                &with(&|c| {
                    c["exp"] = json!(t.clock_secs() - 120.0);
                    c["iat"] = json!(t.clock_secs() - 400.0);
                }),
                &key,
            )),
        ),
        (
            "not yet valid",
            Some(sign(
                &with(&|c| c["nbf"] = json!(t.clock_secs() + 300.0)),
                &key,
            )),
        ),
        (
            "too long-lived",
            Some(sign(
                &with(&|c| c["exp"] = json!(t.clock_secs() + 3600.0)),
                &key,
            )),
        ),
        (
            "no exp",
            Some(sign(
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                &key,
            )),
        ),
        (
            "no sub",
            Some(sign(
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
                &key,
            )),
        ),
        (
            "exp as string",
            Some(sign(&with(&|c| c["exp"] = json!("soon")), &key)),
        ),
        (
            "sub as number",
            Some(sign(&with(&|c| c["sub"] = json!(42)), &key)),
        ),
        (
            "unknown issuer",
            Some(sign(
                &with(&|c| c["iss"] = json!("unknown.example.com")),
                &key,
            )),
        ),
        (
            "wrong audience",
            Some(sign(
                &with(&|c| c["aud"] = json!("https://api.other.example")),
                &key,
            )),
        ),
    ];
    for (name, token) in cases {
        let got = t.check_raw(token.as_deref(), "{}").await;
        assert_eq!(got.0, 401, "{name}: {}", got.1);
        assert_refused(&got, 401);
    }
    // The server is still up and still right.
    assert!(t.locked(ISS, &key, "alice").await);
}

#[tokio::test]
async fn bodies_are_json_whatever_the_content_type() {
    let (t, key) = setup().await;
    let tok = t.token(ISS, &key, "alice");
    let body = json!({"userIP": "203.0.113.7", "userDevice": 42, "userLocation": null, "integrationType": "auth0",
                      "integrationData": "not an object"});
    for ct in [
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = t
            .http
            .post(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
            .header("x-nl3-authorization-token", &tok);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body.to_string()).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{ct:?}");
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap(),
            json!({"locked": true})
        );
    }
    assert_eq!(
        t.check_raw(Some(&tok), "").await,
        (200, json!({"locked": true})),
        "no body at all"
    );
}

#[tokio::test]
async fn hostile_bodies_get_4xx() {
    let (t, key) = setup().await;
    let tok = t.token(ISS, &key, "alice");
    for (name, body) in [
        ("not JSON", "userIP=1".to_string()),
        ("truncated", "{\"userIP\":".to_string()),
        ("array", "[1,2,3]".to_string()),
        ("string", "\"hello\"".to_string()),
        (
            "object for a text field",
            r#"{"userIP":{"a":1}}"#.to_string(),
        ),
        (
            "too deep",
            format!(
                "{{\"integrationData\":{}{}}}",
                "[".repeat(200),
                "]".repeat(200)
            ),
        ),
        ("deep bomb", "[".repeat(60_000)),
    ] {
        assert_refused(&t.check_raw(Some(&tok), body).await, 400);
        let _ = name;
    }
    let big = format!("{{\"integrationData\":\"{}\"}}", "x".repeat(64 * 1024));
    assert_refused(&t.check_raw(Some(&tok), big).await, 413);
    // Without a valid token the body is not even looked at: 401, not 400.
    assert_refused(&t.check_raw(Some("bad"), "[").await, 401);
    assert!(t.locked(ISS, &key, "alice").await);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    let (t, key) = setup().await;
    let tok = t.token(ISS, &key, "alice");
    let port = t.port;
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        write!(s, "POST /nl3/api/v1/accountProtectionCheck HTTP/1.1\r\nhost: x\r\nx-nl3-authorization-token: {tok}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
        let chunk = "a".repeat(16 * 1024);
        for _ in 0..6 {
            if write!(s, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
                break;
            }
        }
        let _ = write!(s, "0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(!response.contains("\"locked\""));
}

#[tokio::test]
async fn attempts_record_the_context() {
    let (t, key) = setup().await;
    let tok = t.token(ISS, &key, "alice");
    let resp = t
        .http
        .post(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
        .header("x-nl3-authorization-token", &tok)
        .header("x-forwarded-for", "198.51.100.4, 10.0.0.1")
        .header("user-agent", "Mozilla/5.0 test")
        .header("x-nl3-device-location", "48.85,2.35")
        .body(r#"{"integrationType":"cognito","integrationData":{"loc":"48.85,2.35"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let app = t.store.application_by_issuer(ISS).await.unwrap().unwrap();
    let service = t.service.clone();
    let app_id = app.id.clone();
    eventually(|| {
        let service = service.clone();
        let app_id = app_id.clone();
        async move { !service.attempts(&app_id, 10).await.unwrap().is_empty() }
    })
    .await;
    let a = &t.service.attempts(&app.id, 10).await.unwrap()[0];
    assert_eq!(
        (a.account.as_str(), a.locked, a.reason.as_str()),
        ("alice", true, "account_locked")
    );
    assert_eq!(a.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(a.device.as_deref(), Some("Mozilla/5.0 test"));
    assert_eq!(a.location.as_deref(), Some("48.85,2.35"));
    assert_eq!(a.integration_type.as_deref(), Some("cognito"));
    assert_eq!(
        a.integration_data.as_deref(),
        Some(r#"{"loc":"48.85,2.35"}"#)
    );
    // The key that verified it is now "last used".
    let keys = t.store.signing_keys(&app.id).await.unwrap();
    assert!(keys[0].last_used_at.is_some());
}

#[tokio::test]
async fn graceful_stop_writes_every_queued_attempt() {
    let (t, key) = setup().await;
    for _ in 0..200 {
        assert!(t.locked(ISS, &key, "alice").await);
    }
    let store = t.store.clone();
    t.stop().await;
    let app = store.application_by_issuer(ISS).await.unwrap().unwrap();
    assert_eq!(
        store.recent_attempts(&app.id, 1000).await.unwrap().len(),
        200
    );
}

#[tokio::test]
async fn a_full_attempt_queue_never_holds_a_check_and_counts_what_it_drops() {
    // Two places in the queue, 40 checks at once: some may find it full; they wait a moment,
    // then answer, and an attempt that found no room is counted as dropped, never lost unseen.
    let (t, key) = setup_with(|c| c.attempt_queue = 2).await;
    let t = Arc::new(t);
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (t, key) = (t.clone(), key.clone());
        checks.spawn(async move { t.locked(ISS, &key, "alice").await });
    }
    while let Some(locked) = checks.join_next().await {
        assert!(
            locked.unwrap(),
            "every check is answered, and answered locked"
        );
    }
    let t = Arc::into_inner(t).unwrap();
    let metrics = t.metrics_text().await;
    let dropped: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("deadbolt_attempts_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    let store = t.store.clone();
    t.stop().await;
    let app = store.application_by_issuer(ISS).await.unwrap().unwrap();
    assert_eq!(
        store.recent_attempts(&app.id, 1000).await.unwrap().len() + dropped,
        40
    );
}

#[tokio::test]
async fn key_rotation_and_revocation_take_effect_on_the_next_check() {
    let (t, old) = setup().await;
    let app = t.store.application_by_issuer(ISS).await.unwrap().unwrap();
    assert!(t.locked(ISS, &old, "alice").await);
    let (new_id, new) = t.service.create_signing_key(&app.id).await.unwrap();
    // Overlap: both keys verify.
    assert!(t.locked(ISS, &new, "alice").await);
    assert!(t.locked(ISS, &old, "alice").await);
    let old_id = t
        .store
        .signing_keys(&app.id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id != new_id)
        .unwrap()
        .id;
    t.service.revoke_signing_key(&old_id).await.unwrap();
    assert_refused(
        &t.check_raw(Some(&t.token(ISS, &old, "alice")), "{}").await,
        401,
    );
    assert!(t.locked(ISS, &new, "alice").await);
    t.service.revoke_signing_key(&new_id).await.unwrap();
    assert_refused(
        &t.check_raw(Some(&t.token(ISS, &new, "alice")), "{}").await,
        401,
    );
}

#[tokio::test]
async fn rate_limit_answers_429_without_a_decision() {
    let t = TestApp::spawn_with(|c| c.rate_limit = 1).await;
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    let tok = t.token(ISS, &key, "alice");
    // A burst of twice the rate, then refusals (the fake clock does not move).
    assert_eq!(t.check_raw(Some(&tok), "{}").await.0, 200);
    assert_eq!(t.check_raw(Some(&tok), "{}").await.0, 200);
    assert_refused(&t.check_raw(Some(&tok), "{}").await, 429);
    t.clock.advance(chrono::Duration::seconds(1));
    let tok = t.token(ISS, &key, "alice");
    assert_eq!(t.check_raw(Some(&tok), "{}").await.0, 200);
}

#[tokio::test]
async fn a_store_that_cannot_answer_gives_503_never_a_guess() {
    let (t, key) = setup().await;
    assert!(t.locked(ISS, &key, "alice").await);
    // Break the store underneath the running server, from outside Deadbolt.
    let path = t.dir.path().join("deadbolt.db");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DROP TABLE accounts; DROP TABLE store_version;")
        .unwrap();
    // An account whose inputs are not cached needs the store: refused at once.
    assert_refused(
        &t.check_raw(Some(&t.token(ISS, &key, "someone-else")), "{}")
            .await,
        503,
    );
    // A write by another program does not raise Deadbolt's change signal; the server asks
    // SQLite itself at least once a second, and then refuses the cached account too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_refused(
        &t.check_raw(Some(&t.token(ISS, &key, "alice")), "{}").await,
        503,
    );
    let health = t
        .http
        .get(format!("{}/healthz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the process is alive");
    let ready = t
        .http
        .get(format!("{}/readyz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(
        !text.contains("store_version"),
        "internal details stay in the log: {text}"
    );
}

#[tokio::test]
async fn every_answer_names_its_request_id() {
    let (t, key) = setup().await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .expect("an x-request-id header")
            .to_str()
            .unwrap()
            .to_string()
    };
    // The check, answered or refused, carries an id made here, a new one each time.
    let check = |token: String| {
        t.http
            .post(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
            .header("x-nl3-authorization-token", token)
            .body("{}")
            .send()
    };
    let ok = check(t.token(ISS, &key, "bob")).await.unwrap();
    let refused = check("not-a-token".into()).await.unwrap();
    let (a, b) = (id_of(&ok), id_of(&refused));
    assert_eq!(ok.status(), 200);
    assert_eq!(refused.status(), 401);
    assert!(
        a.len() == 16 && a.bytes().all(|c| c.is_ascii_hexdigit()),
        "{a}"
    );
    assert_ne!(a, b);
    // A proxy's id is kept; one that does not fit a log line is replaced.
    let get = |path: &str, id: &str, accept: &str| {
        t.http
            .get(format!("{}{path}", t.url))
            .header("x-request-id", id)
            .header("accept", accept)
            .send()
    };
    let r = get("/healthz", "lb-42:a", "*/*").await.unwrap();
    assert_eq!(id_of(&r), "lb-42:a");
    let r = get("/healthz", "<b>", "*/*").await.unwrap();
    assert_eq!(id_of(&r).len(), 16);
    // The portal's error page names it, for the person to quote.
    let r = get("/companies/nope", "page-7", "text/html").await.unwrap();
    assert_eq!(id_of(&r), "page-7");
    let r = get("/nope", "page-8", "text/html").await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Request id: page-8"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (t, _) = setup_with(|c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    let r = t
        .http
        .get(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = t.http.get(format!("{}/nope", t.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["message"].is_string());
    // Metrics are not on the public port, only on their own listener.
    let r = t
        .http
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let metrics_url = t.metrics_url.clone().expect("a metrics listener");
    assert_ne!(
        url_port(&metrics_url),
        t.port,
        "the metrics listener is its own"
    );
    let m = t
        .http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("deadbolt_checks_total{decision=\"locked\"}"));
    assert!(m.contains("deadbolt_attempt_queue_depth"));
}

fn url_port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let (t, _) = setup_with(|c| c.metrics_listen = None).await;
    assert_eq!(t.metrics_url, None);
    let r = t
        .http
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

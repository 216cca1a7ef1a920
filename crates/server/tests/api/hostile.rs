//! Hostile input, as tables: every row a token or body an attacker (or a broken client) might
//! send, with the exact status it gets. After each table the server still answers a normal
//! check correctly and nothing the table touched has changed.

use crate::helpers::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use deadbolt::service::By;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

const ISS: &str = "app.example.com";
const OTHER_ISS: &str = "other.example.com";

/// What a row must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 200 with this decision.
    Locked(bool),
    /// This status, a `{"message"}` containing the fragment, and no `locked`.
    Refused(u16, &'static str),
    /// A success of this status (an SDK answer).
    Success(u16),
}
use Expect::{Locked, Refused, Success};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from raw header and claims text, signed with `key` over exactly that text.
fn raw_token(header: &str, claims: &[u8], key: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims));
    format!("{input}.{}", b64(&hmac(key, input.as_bytes())))
}

fn hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Posts a check with the token as raw header bytes (so bytes reqwest would refuse as `&str` can
/// be sent).
async fn check(t: &TestApp, token: Option<&[u8]>, body: Vec<u8>) -> (u16, Value) {
    let mut req = t
        .http
        .post(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
        .body(body);
    if let Some(tok) = token {
        req = req.header(
            "x-nl3-authorization-token",
            HeaderValue::from_bytes(tok).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

/// Compares an answer with a row's expectation; a description of the difference if any.
fn mismatch(name: &str, got: &(u16, Value), want: Expect) -> Option<String> {
    let ok = match want {
        Locked(l) => got.0 == 200 && got.1 == json!({ "locked": l }),
        Success(status) => got.0 == status && got.1.get("message").is_none(),
        Refused(status, fragment) => {
            got.0 == status
                && got.1.get("locked").is_none()
                && got.1["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(fragment))
        }
    };
    (!ok).then(|| format!("{name}: want {want:?}, got {} {}", got.0, got.1))
}

struct CheckSetup {
    t: TestApp,
    /// The application's active key, base64 as the portal shows it.
    key: String,
    key_bytes: Vec<u8>,
    revoked: Vec<u8>,
    other_app_key: Vec<u8>,
}

/// `app.example.com` with an active and a revoked key and a locked `alice`; `other.example.com`
/// with its own key.
async fn check_setup(t: TestApp) -> CheckSetup {
    let app = t.app(ISS).await;
    let (revoked_id, revoked) = t.service.create_signing_key(&app.id).await.unwrap();
    t.service.revoke_signing_key(&revoked_id).await.unwrap();
    let key = t.key(&app).await;
    let other = t.app(OTHER_ISS).await;
    let other_key = t.key(&other).await;
    t.service
        .enroll(&By::CLI, &app.id, "alice", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "alice").await.unwrap();
    t.service
        .enroll(&By::CLI, &other.id, "alice", None)
        .await
        .unwrap();
    CheckSetup {
        key_bytes: STANDARD.decode(&key).unwrap(),
        revoked: STANDARD.decode(revoked).unwrap(),
        other_app_key: STANDARD.decode(other_key).unwrap(),
        key,
        t,
    }
}

#[tokio::test]
async fn hostile_check_tokens_sqlite() {
    hostile_check_tokens(TestApp::spawn().await).await;
}

#[tokio::test]
async fn hostile_check_tokens_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        hostile_check_tokens(t).await;
    }
}

#[tokio::test]
async fn hostile_check_bodies_sqlite() {
    hostile_check_bodies(TestApp::spawn().await).await;
}

#[tokio::test]
async fn hostile_check_bodies_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        hostile_check_bodies(t).await;
    }
}

async fn hostile_check_tokens(t: TestApp) {
    let s = check_setup(t).await;
    let t = &s.t;
    let k = s.key_bytes.as_slice();
    let now = t.clock_secs();
    let base = t.claims(ISS, "alice");
    // The claims with one change, as JSON text.
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| -> Vec<u8> {
        let mut c = base.as_object().unwrap().clone();
        f(&mut c);
        Value::Object(c).to_string().into_bytes()
    };
    let signed = |claims: &[u8]| raw_token(HS256, claims, k);
    // Claims whose text is written out (for what serde_json cannot produce: NaN, 1e309, duplicates).
    let text = |extra: &str| -> Vec<u8> {
        format!(
            r#"{{"iss":"{ISS}","aud":"{}","sub":"alice","iat":{}{extra}}}"#,
            t.audience(),
            now - 60.0
        )
        .into_bytes()
    };
    let exp_ok = format!(",\"exp\":{}", now + 300.0);
    let claims = base.to_string().into_bytes();
    let valid = signed(&claims);
    let (signing_input, sig) = valid.rsplit_once('.').unwrap();
    let (header_part, claims_part) = signing_input.split_once('.').unwrap();
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut flipped = sig_bytes.clone();
    flipped[7] ^= 0x01;
    let alg = |a: &str| {
        let header = format!(r#"{{"alg":"{a}","typ":"JWT"}}"#);
        raw_token(&header, &claims, k)
    };
    let padded = {
        let h = URL_SAFE.encode(r#"{"alg":"HS256","typ":"JWT" }"#);
        let c = URL_SAFE.encode(&claims);
        assert!(h.ends_with('=') || c.ends_with('='), "the row must pad");
        let input = format!("{h}.{c}");
        format!("{input}.{}", URL_SAFE.encode(hmac(k, input.as_bytes())))
    };
    let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));

    let rows: Vec<(&str, Option<String>, Expect)> = vec![
        // Presence and shape.
        (
            "no header",
            None,
            Refused(401, "missing x-nl3-authorization-token"),
        ),
        ("empty", Some(String::new()), Refused(401, "missing token")),
        ("blanks", Some("   ".into()), Refused(401, "missing token")),
        (
            "one segment",
            Some(header_part.into()),
            Refused(401, "malformed"),
        ),
        (
            "two segments",
            Some(signing_input.into()),
            Refused(401, "malformed"),
        ),
        (
            "empty segments",
            Some("..".into()),
            Refused(401, "malformed"),
        ),
        (
            "four segments",
            Some(format!("{valid}.{sig}")),
            Refused(401, "malformed"),
        ),
        (
            "five segments (JWE)",
            Some(format!("{header_part}.{claims_part}.a.b.{sig}")),
            Refused(401, "malformed"),
        ),
        (
            "not base64url",
            Some(format!("{header_part}!.{claims_part}.{sig}")),
            Refused(401, "malformed"),
        ),
        (
            "standard base64 signature",
            Some(format!("{signing_input}.{}", STANDARD.encode([0xfbu8; 32]))),
            Refused(401, "malformed"),
        ),
        ("padded base64 everywhere", Some(padded), Locked(true)),
        (
            "Bearer prefix",
            Some(format!("Bearer {valid}")),
            Locked(true),
        ),
        (
            "non-ASCII bytes",
            Some(format!("{valid}\u{e9}")),
            Refused(401, "missing x-nl3-authorization-token"),
        ),
        (
            "over 8 KiB",
            Some(raw_token(
                &format!(r#"{{"alg":"HS256","x":"{}"}}"#, "a".repeat(9000)),
                &claims,
                k,
            )),
            Refused(401, "malformed"),
        ),
        (
            "header 100 KiB",
            Some(format!("{}.{claims_part}.{sig}", "A".repeat(100 * 1024))),
            Refused(401, "malformed"),
        ),
        // The header.
        (
            "alg none",
            Some(format!("{}.{claims_part}.", b64(br#"{"alg":"none"}"#))),
            Refused(401, "only HS256"),
        ),
        ("alg None", Some(alg("None")), Refused(401, "only HS256")),
        ("alg NONE", Some(alg("NONE")), Refused(401, "only HS256")),
        ("alg hs256", Some(alg("hs256")), Refused(401, "only HS256")),
        ("alg RS256", Some(alg("RS256")), Refused(401, "only HS256")),
        ("alg ES256", Some(alg("ES256")), Refused(401, "only HS256")),
        ("alg HS384", Some(alg("HS384")), Refused(401, "only HS256")),
        ("alg HS512", Some(alg("HS512")), Refused(401, "only HS256")),
        (
            "alg missing",
            Some(raw_token(r#"{"typ":"JWT"}"#, &claims, k)),
            Refused(401, "only HS256"),
        ),
        (
            "alg a number",
            Some(raw_token(r#"{"alg":256}"#, &claims, k)),
            Refused(401, "only HS256"),
        ),
        (
            "alg twice",
            Some(raw_token(r#"{"alg":"HS256","alg":"none"}"#, &claims, k)),
            Refused(401, "malformed"),
        ),
        (
            "crit extension",
            Some(raw_token(
                r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
                &claims,
                k,
            )),
            Refused(401, "malformed"),
        ),
        (
            "header an array",
            Some(raw_token(r#"["HS256"]"#, &claims, k)),
            Refused(401, "malformed"),
        ),
        (
            "header not JSON",
            Some(raw_token("alg=HS256", &claims, k)),
            Refused(401, "malformed"),
        ),
        // Signed, and the deep field is skipped without recursion: accepted.
        (
            "header with a field nested 2,000 deep",
            Some(raw_token(
                &format!(r#"{{"alg":"HS256","x":{}}}"#, nested(2000)),
                &claims,
                k,
            )),
            Locked(true),
        ),
        (
            "header with a nested unknown field",
            Some(raw_token(
                r#"{"alg":"HS256","kid":{"a":[1,{"b":null}]}}"#,
                &claims,
                k,
            )),
            Locked(true),
        ),
        (
            "jwk in header (key injection)",
            Some(raw_token(
                r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
                &claims,
                &URL_SAFE_NO_PAD.decode("AAAA").unwrap(),
            )),
            Refused(401, "invalid signature"),
        ),
        // The signature and the key.
        (
            "byte flipped in the signature",
            Some(format!("{signing_input}.{}", b64(&flipped))),
            Refused(401, "invalid signature"),
        ),
        (
            "signature cut short",
            Some(format!("{signing_input}.{}", b64(&sig_bytes[..31]))),
            Refused(401, "invalid signature"),
        ),
        (
            "signature too long",
            Some(format!(
                "{signing_input}.{}",
                b64(&[sig_bytes.as_slice(), &[0]].concat())
            )),
            Refused(401, "invalid signature"),
        ),
        (
            "empty signature",
            Some(format!("{signing_input}.")),
            Refused(401, "invalid signature"),
        ),
        (
            "claims changed, not re-signed",
            Some(format!(
                "{header_part}.{}.{sig}",
                b64(&with(&|c| {
                    c.insert("sub".into(), json!("bob"));
                }))
            )),
            Refused(401, "invalid signature"),
        ),
        (
            "signed with the key's base64 text",
            Some(raw_token(HS256, &claims, s.key.as_bytes())),
            Refused(401, "invalid signature"),
        ),
        (
            "signed with an empty key",
            Some(raw_token(HS256, &claims, b"")),
            Refused(401, "invalid signature"),
        ),
        (
            "a revoked key",
            Some(raw_token(HS256, &claims, &s.revoked)),
            Refused(401, "invalid signature"),
        ),
        (
            "another application's key",
            Some(raw_token(HS256, &claims, &s.other_app_key)),
            Refused(401, "invalid signature"),
        ),
        (
            "another application's issuer, this key",
            Some(signed(&with(&|c| {
                c.insert("iss".into(), json!(OTHER_ISS));
            }))),
            Refused(401, "invalid signature"),
        ),
        // Claims.
        (
            "claims an array",
            Some(signed(b"[\"app.example.com\"]")),
            Refused(401, "malformed"),
        ),
        (
            "sub not UTF-8",
            Some(signed(
                &[
                    &text(&exp_ok)[..text(&exp_ok).len() - 1],
                    b",\"sub\":\"\xff\"}",
                ]
                .concat(),
            )),
            Refused(401, "malformed"),
        ),
        (
            "sub twice",
            Some(signed(&text(&format!(r#"{exp_ok},"sub":"bob""#)))),
            Refused(401, "malformed"),
        ),
        (
            "exp twice",
            Some(signed(&text(&format!(r#"{exp_ok},"exp":{}"#, now + 300.0)))),
            Refused(401, "malformed"),
        ),
        (
            "unknown claims nested 20 deep",
            Some(signed(&with(&|c| {
                c.insert("x".into(), serde_json::from_str(&nested(20)).unwrap());
            }))),
            Locked(true),
        ),
        (
            "iss missing",
            Some(signed(&with(&|c| {
                c.remove("iss");
            }))),
            Refused(401, "claim iss"),
        ),
        (
            "iss empty",
            Some(signed(&with(&|c| {
                c.insert("iss".into(), json!(""));
            }))),
            Refused(401, "claim iss"),
        ),
        (
            "iss a number",
            Some(signed(&with(&|c| {
                c.insert("iss".into(), json!(1));
            }))),
            Refused(401, "claim iss"),
        ),
        (
            "iss unknown",
            Some(signed(&with(&|c| {
                c.insert("iss".into(), json!("evil.example.com"));
            }))),
            Refused(401, "unknown issuer"),
        ),
        (
            "aud missing",
            Some(signed(&with(&|c| {
                c.remove("aud");
            }))),
            Refused(401, "claim aud"),
        ),
        (
            "aud null",
            Some(signed(&with(&|c| {
                c.insert("aud".into(), Value::Null);
            }))),
            Refused(401, "claim aud"),
        ),
        (
            "aud another API",
            Some(signed(&with(&|c| {
                c.insert("aud".into(), json!("https://api.other.example"));
            }))),
            Refused(401, "wrong audience"),
        ),
        (
            "aud another application's issuer",
            Some(signed(&with(&|c| {
                c.insert("aud".into(), json!(OTHER_ISS));
            }))),
            Refused(401, "wrong audience"),
        ),
        (
            "aud a list without this API",
            Some(signed(&with(&|c| {
                c.insert("aud".into(), json!(["a.example", 5, null]));
            }))),
            Refused(401, "wrong audience"),
        ),
        (
            "aud a list with this API",
            Some(signed(&with(&|c| {
                c.insert("aud".into(), json!(["a.example", t.audience()]));
            }))),
            Locked(true),
        ),
        (
            "exp missing",
            Some(signed(&with(&|c| {
                c.remove("exp");
            }))),
            Refused(401, "claim exp"),
        ),
        (
            "exp a string",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!((now + 300.0).to_string()));
            }))),
            Refused(401, "claim exp"),
        ),
        (
            "exp null",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), Value::Null);
            }))),
            Refused(401, "claim exp"),
        ),
        (
            "exp true",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(true));
            }))),
            Refused(401, "claim exp"),
        ),
        (
            "exp NaN",
            Some(signed(&text(",\"exp\":NaN"))),
            Refused(401, "malformed"),
        ),
        (
            "exp 1e309",
            Some(signed(&text(",\"exp\":1e309"))),
            Refused(401, "malformed"),
        ),
        (
            "exp -1e309",
            Some(signed(&text(",\"exp\":-1e309"))),
            Refused(401, "malformed"),
        ),
        (
            "exp 1e308",
            Some(signed(&text(",\"exp\":1e308"))),
            Refused(401, "lifetime too long"),
        ),
        (
            "exp negative",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(-1));
            }))),
            Refused(401, "expired"),
        ),
        (
            "exp u64::MAX",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(u64::MAX));
            }))),
            Refused(401, "lifetime too long"),
        ),
        (
            "exp i64::MIN",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(i64::MIN));
            }))),
            Refused(401, "expired"),
        ),
        (
            "exp 61 s ago",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(now - 61.0));
            }))),
            Refused(401, "expired"),
        ),
        (
            "exp 59 s ago (leeway)",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(now - 59.0));
            }))),
            Locked(true),
        ),
        (
            "exp in 16 min + leeway",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(now + 16.0 * 60.0 + 61.0));
            }))),
            Refused(401, "lifetime too long"),
        ),
        (
            "exp in a year",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(now + 365.0 * 86400.0));
            }))),
            Refused(401, "lifetime too long"),
        ),
        (
            "exp fractional",
            Some(signed(&with(&|c| {
                c.insert("exp".into(), json!(now + 299.999_999));
            }))),
            Locked(true),
        ),
        (
            "exp with exponent",
            Some(signed(&text(&format!(
                ",\"exp\":{:e}",
                (now + 300.0).round()
            )))),
            Locked(true),
        ),
        (
            "nbf in the future",
            Some(signed(&with(&|c| {
                c.insert("nbf".into(), json!(now + 120.0));
            }))),
            Refused(401, "not yet valid"),
        ),
        (
            "nbf a string",
            Some(signed(&with(&|c| {
                c.insert("nbf".into(), json!("now"));
            }))),
            Refused(401, "claim nbf"),
        ),
        (
            "iat in the future",
            Some(signed(&with(&|c| {
                c.insert("iat".into(), json!(now + 120.0));
            }))),
            Refused(401, "not yet valid"),
        ),
        (
            "iat an object",
            Some(signed(&with(&|c| {
                c.insert("iat".into(), json!({"t": now}));
            }))),
            Refused(401, "claim iat"),
        ),
        (
            "sub missing",
            Some(signed(&with(&|c| {
                c.remove("sub");
            }))),
            Refused(401, "claim sub"),
        ),
        (
            "sub empty",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!(""));
            }))),
            Refused(401, "claim sub"),
        ),
        (
            "sub a number",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!(42));
            }))),
            Refused(401, "claim sub"),
        ),
        (
            "sub a list",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!(["alice"]));
            }))),
            Refused(401, "claim sub"),
        ),
        (
            "sub 3,000 characters",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!("a".repeat(3000)));
            }))),
            Refused(401, "claim sub"),
        ),
        // A name enrolment refuses is nobody's: not enrolled, the `allow` policy.
        (
            "sub with control characters",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!("alice\u{0}\u{7}\n"));
            }))),
            Locked(false),
        ),
        (
            "sub HTML",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!("<script>alert(1)</script>"));
            }))),
            Locked(false),
        ),
        (
            "sub SQL",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!("alice' OR '1'='1"));
            }))),
            Locked(false),
        ),
        (
            "sub alice with a bidi override",
            Some(signed(&with(&|c| {
                c.insert("sub".into(), json!("alice\u{202e}"));
            }))),
            Locked(false),
        ),
        (
            "lone surrogate in sub",
            Some(signed(&text(&format!(r#"{exp_ok},"sub":"\ud800""#)))),
            Refused(401, "malformed"),
        ),
        (
            "lone surrogate in an unknown claim",
            Some(signed(&text(&format!(r#"{exp_ok},"x":"\ud800""#)))),
            Locked(true),
        ),
    ];
    assert!(rows.len() >= 80, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (name, token, want) in &rows {
        let got = check(t, token.as_deref().map(str::as_bytes), b"{}".to_vec()).await;
        failures.extend(mismatch(name, &got, *want));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still up, still right, and the other application's alice untouched.
    assert!(t.locked(ISS, &s.key, "alice").await);
    assert_eq!(
        check(t, Some(valid.as_bytes()), b"{}".to_vec()).await,
        (200, json!({"locked": true}))
    );
    let other = t
        .store
        .application_by_issuer(OTHER_ISS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.service.account(&other.id, "alice").await.unwrap().state,
        deadbolt_core::AccountState::Unlocked
    );
}

async fn hostile_check_bodies(t: TestApp) {
    let s = check_setup(t).await;
    let t = &s.t;
    let token = t.token(ISS, &s.key, "alice");
    let field = |name: &str, v: &str| format!(r#"{{"{name}":{v}}}"#).into_bytes();
    let deep = |n: usize| {
        format!(
            r#"{{"integrationData":{}1{}}}"#,
            "[".repeat(n - 1),
            "]".repeat(n - 1)
        )
        .into_bytes()
    };
    // A JSON object of exactly `n` bytes.
    let sized = |n: usize| {
        let shell = r#"{"userDevice":""}"#.len();
        format!(r#"{{"userDevice":"{}"}}"#, "x".repeat(n - shell)).into_bytes()
    };
    let html = format!("\"{}\"", "<img src=x onerror=alert(1)>".repeat(110));
    assert!(html.len() > 3000);

    let rows: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty", vec![], Locked(true)),
        ("blanks", b" \n\t ".to_vec(), Locked(true)),
        ("empty object", b"{}".to_vec(), Locked(true)),
        (
            "not JSON",
            b"userIP=1&userDevice=x".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "truncated",
            b"{\"userIP\":".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "trailing garbage",
            b"{} {}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "byte order mark",
            b"\xef\xbb\xbf{}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "JSON array",
            b"[{\"userIP\":\"1.2.3.4\"}]".to_vec(),
            Refused(400, "must be a JSON object"),
        ),
        (
            "JSON string",
            b"\"{}\"".to_vec(),
            Refused(400, "must be a JSON object"),
        ),
        (
            "JSON number",
            b"42".to_vec(),
            Refused(400, "must be a JSON object"),
        ),
        (
            "JSON null",
            b"null".to_vec(),
            Refused(400, "must be a JSON object"),
        ),
        (
            "JSON true",
            b"true".to_vec(),
            Refused(400, "must be a JSON object"),
        ),
        ("32 levels", deep(32), Locked(true)),
        ("33 levels", deep(33), Refused(400, "deeper than 32")),
        (
            "100,000 open brackets",
            "[".repeat(60_000).into_bytes(),
            Refused(400, "deeper than 32"),
        ),
        (
            "brackets inside strings",
            field("userDevice", &format!("\"{}\"", "[{".repeat(5000))),
            Locked(true),
        ),
        ("exactly 64 KiB", sized(64 * 1024), Locked(true)),
        (
            "64 KiB + 1",
            sized(64 * 1024 + 1),
            Refused(413, "over the limit"),
        ),
        ("1 MiB", sized(1024 * 1024), Refused(413, "over the limit")),
        (
            "userIP an object",
            field("userIP", r#"{"v":"1.2.3.4"}"#),
            Refused(400, "userIP"),
        ),
        (
            "userIP a list",
            field("userIP", r#"["1.2.3.4"]"#),
            Refused(400, "userIP"),
        ),
        (
            "userDevice an object",
            field("userDevice", "{}"),
            Refused(400, "userDevice"),
        ),
        (
            "userLocation a list",
            field("userLocation", "[48.8, 2.3]"),
            Refused(400, "userLocation"),
        ),
        (
            "integrationType an object",
            field("integrationType", r#"{"t":"cognito"}"#),
            Refused(400, "integrationType"),
        ),
        (
            "userIP a number",
            field("userIP", "3232235777"),
            Locked(true),
        ),
        ("userIP 1e400", field("userIP", "1e400"), Locked(true)),
        ("userIP false", field("userIP", "false"), Locked(true)),
        ("userIP null", field("userIP", "null"), Locked(true)),
        (
            "integrationData an object",
            field("integrationData", r#"{"a":{"b":[1,2,{"c":null}]}}"#),
            Locked(true),
        ),
        (
            "integrationData a list",
            field("integrationData", "[1,\"two\",null]"),
            Locked(true),
        ),
        (
            "integrationData a string",
            field("integrationData", "\"{not json}\""),
            Locked(true),
        ),
        (
            "integrationData a number",
            field("integrationData", "-1.5e-300"),
            Locked(true),
        ),
        (
            "integrationData a boolean",
            field("integrationData", "true"),
            Locked(true),
        ),
        (
            "integrationData null",
            field("integrationData", "null"),
            Locked(true),
        ),
        (
            "integrationData 60 KiB",
            field("integrationData", &format!("\"{}\"", "d".repeat(60 * 1024))),
            Locked(true),
        ),
        (
            "3,000 characters of HTML in userDevice",
            field("userDevice", &html),
            Locked(true),
        ),
        (
            "escaped NUL in userDevice",
            field("userDevice", "\"a\\u0000b\""),
            Locked(true),
        ),
        (
            "raw NUL byte in a string",
            b"{\"userDevice\":\"a\0b\"}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "NUL bytes only",
            vec![0; 64],
            Refused(400, "not valid JSON"),
        ),
        (
            "invalid UTF-8 in a string",
            b"{\"userDevice\":\"\xc3\x28\"}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "invalid UTF-8 in an unknown field",
            b"{\"x\":\"\xff\xfe\"}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "lone surrogate escape",
            field("userDevice", "\"\\udc00\""),
            Refused(400, "not valid JSON"),
        ),
        (
            "duplicate field",
            b"{\"userIP\":\"1.1.1.1\",\"userIP\":\"2.2.2.2\"}".to_vec(),
            Refused(400, "not valid JSON"),
        ),
        (
            "unknown fields",
            br#"{"locked":false,"sub":"bob","__proto__":{"locked":false}}"#.to_vec(),
            Locked(true),
        ),
        (
            "a body that says unlocked",
            br#"{"locked":false,"userIP":"127.0.0.1"}"#.to_vec(),
            Locked(true),
        ),
    ];
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (name, body, want) in &rows {
        let got = check(t, Some(token.as_bytes()), body.clone()).await;
        failures.extend(mismatch(name, &got, *want));
    }
    // Without a valid token, a hostile body is not even read: 401.
    let got = check(t, Some(b"x.y.z"), deep(100)).await;
    failures.extend(mismatch(
        "bad token, deep body",
        &got,
        Refused(401, "malformed"),
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(t.locked(ISS, &s.key, "alice").await);
    // What was kept of the hostile context is bounded.
    let app = t.store.application_by_issuer(ISS).await.unwrap().unwrap();
    let service = t.service.clone();
    let id = app.id.clone();
    eventually(|| {
        let (service, id) = (service.clone(), id.clone());
        async move { service.attempts(&id, 1000).await.unwrap().len() > 20 }
    })
    .await;
    for a in t.service.attempts(&app.id, 1000).await.unwrap() {
        assert!(a.device.as_deref().map_or(0, str::len) <= deadbolt_core::body::MAX_FIELD);
        assert!(
            a.integration_data.as_deref().map_or(0, str::len)
                <= deadbolt_core::body::MAX_INTEGRATION_DATA
        );
    }
}

struct SdkSetup {
    t: TestApp,
    key: String,
    sdk: String,
    revoked_sdk: String,
    other_sdk: String,
}

const DOMAIN: &str = "shop.example.com";
const OTHER_DOMAIN: &str = "rival.example.com";

/// Company A (`shop.example.com`, `ann` locked) with an SDK key and a revoked one; company B
/// (`rival.example.com`, `bea` unlocked) with its own SDK key.
async fn sdk_setup(t: TestApp) -> SdkSetup {
    let a = t.app(DOMAIN).await;
    let key = t.key(&a).await;
    let (_, sdk) = t.service.create_sdk_key(&a.company_id).await.unwrap();
    let (revoked_id, revoked_sdk) = t.service.create_sdk_key(&a.company_id).await.unwrap();
    t.service.revoke_sdk_key(&revoked_id).await.unwrap();
    t.service
        .enroll(&By::CLI, &a.id, "ann", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &a.id, "ann").await.unwrap();
    let b = t.app(OTHER_DOMAIN).await;
    let (_, other_sdk) = t.service.create_sdk_key(&b.company_id).await.unwrap();
    t.service
        .enroll(&By::CLI, &b.id, "bea", None)
        .await
        .unwrap();
    SdkSetup {
        t,
        key,
        sdk,
        revoked_sdk,
        other_sdk,
    }
}

async fn sdk_call(
    t: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut req = t
        .http
        .request(method, format!("{}/nl3/api/v1/sdk/{path}", t.url));
    if let Some(tok) = token {
        req = req.header("x-nl3-server-api-token", tok);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

/// The SDK table, on whichever engine `t` runs.
async fn hostile_sdk_table(t: TestApp) {
    let s = sdk_setup(t).await;
    let t = &s.t;
    let (id, secret) = s.sdk.split_once('.').unwrap();
    let wrong_secret = format!("{id}.{}", "A".repeat(secret.len()));
    let unknown_id = format!("00000000-0000-4000-8000-000000000000.{secret}");
    let check_token = t.token(DOMAIN, &s.key, "ann");
    let target = |account: &str| {
        json!({"domain": DOMAIN, "userAccountId": account})
            .to_string()
            .into_bytes()
    };
    let j = |v: Value| Some(v.to_string().into_bytes());
    let row = |account: Value| json!([{"domain": DOMAIN, "userAccountId": account}]);
    let many = {
        let mut body = String::from("[");
        for i in 0..100_001 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"domain":"{DOMAIN}","userAccountId":"u{i}"}}"#
            ));
        }
        body.push(']');
        body.into_bytes()
    };
    let sdk = Some(s.sdk.as_str());
    type Row<'a> = (
        &'a str,
        Method,
        String,
        Option<&'a str>,
        Option<Vec<u8>>,
        Expect,
    );
    let p = |s: &str| s.to_string();
    let rows: Vec<Row> = vec![
        // Authentication.
        (
            "no token",
            Method::POST,
            p("lock"),
            None,
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "empty token",
            Method::POST,
            p("lock"),
            Some(""),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "token without a dot",
            Method::POST,
            p("lock"),
            Some("abcdef"),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "token of dots",
            Method::POST,
            p("lock"),
            Some("..."),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "right id, wrong secret",
            Method::POST,
            p("lock"),
            Some(&wrong_secret),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "right secret, unknown id",
            Method::POST,
            p("lock"),
            Some(&unknown_id),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "a revoked key",
            Method::POST,
            p("lock"),
            Some(&s.revoked_sdk),
            Some(target("ann")),
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "a revoked key, status",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=ann"),
            Some(&s.revoked_sdk),
            None,
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "SQL in the token",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=ann"),
            Some("' OR 1=1 --.x"),
            None,
            Refused(401, "x-nl3-server-api-token"),
        ),
        (
            "a check token as an SDK token",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=ann"),
            Some(&check_token),
            None,
            Refused(401, "x-nl3-server-api-token"),
        ),
        // Another company.
        (
            "another company's key: lock",
            Method::POST,
            p("lock"),
            Some(&s.other_sdk),
            Some(target("ann")),
            Refused(403, "no application"),
        ),
        (
            "another company's key: unlock",
            Method::POST,
            p("unlock"),
            Some(&s.other_sdk),
            Some(target("ann")),
            Refused(403, "no application"),
        ),
        (
            "another company's key: status",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=ann"),
            Some(&s.other_sdk),
            None,
            Refused(403, "no application"),
        ),
        (
            "another company's key: attempts",
            Method::GET,
            format!("attempts?domain={DOMAIN}"),
            Some(&s.other_sdk),
            None,
            Refused(403, "no application"),
        ),
        (
            "another company's domain: lock",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"domain": OTHER_DOMAIN, "userAccountId": "bea"})),
            Refused(403, "no application"),
        ),
        (
            "another company's domain: import",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": OTHER_DOMAIN, "userAccountId": "planted"}])),
            Refused(400, "1 invalid rows"),
        ),
        (
            "unknown domain: lock",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"domain": "nowhere.example", "userAccountId": "ann"})),
            Refused(403, "no application"),
        ),
        (
            "unknown domain: import",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": "nowhere.example", "userAccountId": "x"}])),
            Refused(400, "1 invalid rows"),
        ),
        (
            "NUL in the domain",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"domain": "shop\u{0}.example.com", "userAccountId": "ann"})),
            Refused(403, "no application"),
        ),
        // Import bodies.
        (
            "import: not JSON",
            Method::POST,
            p("importUsers"),
            sdk,
            Some(b"first_name=ann".to_vec()),
            Refused(400, "invalid request body"),
        ),
        (
            "import: an object",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "x"})),
            Refused(400, "invalid request body"),
        ),
        (
            "import: no body",
            Method::POST,
            p("importUsers"),
            sdk,
            None,
            Refused(400, "invalid request body"),
        ),
        (
            "import: userAccountId a number",
            Method::POST,
            p("importUsers"),
            sdk,
            j(row(json!(5))),
            Refused(400, "invalid request body"),
        ),
        (
            "import: userAccountId null",
            Method::POST,
            p("importUsers"),
            sdk,
            j(row(Value::Null)),
            Refused(400, "invalid request body"),
        ),
        (
            "import: userAccountId missing",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": DOMAIN}])),
            Refused(400, "invalid request body"),
        ),
        (
            "import: email an object",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": DOMAIN, "userAccountId": "x", "email": {"a": 1}}])),
            Refused(400, "invalid request body"),
        ),
        (
            "import: unknown field",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": DOMAIN, "userAccountId": "x", "admin": true}])),
            Refused(400, "invalid request body"),
        ),
        (
            "import: rows nested in a row",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([[{"domain": DOMAIN, "userAccountId": "x"}]])),
            Refused(400, "invalid request body"),
        ),
        (
            "import: deeply nested",
            Method::POST,
            p("importUsers"),
            sdk,
            Some(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
            Refused(400, "invalid request body"),
        ),
        (
            "import: userAccountId empty",
            Method::POST,
            p("importUsers"),
            sdk,
            j(row(json!(""))),
            Refused(400, "invalid rows"),
        ),
        (
            "import: userAccountId 3,000 characters",
            Method::POST,
            p("importUsers"),
            sdk,
            j(row(json!("a".repeat(3000)))),
            Refused(400, "invalid rows"),
        ),
        (
            "import: NUL in userAccountId",
            Method::POST,
            p("importUsers"),
            sdk,
            j(row(json!("x\u{0}y"))),
            Refused(400, "invalid rows"),
        ),
        (
            "import: a bad email",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": DOMAIN, "userAccountId": "x", "email": "<script>@"}])),
            Refused(400, "invalid rows"),
        ),
        (
            "import: 100,001 rows",
            Method::POST,
            p("importUsers"),
            sdk,
            Some(many),
            Refused(400, "at most 100000 rows"),
        ),
        (
            "import: nothing",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([])),
            Success(200),
        ),
        // Lock, unlock, status, attempts.
        (
            "lock: no body",
            Method::POST,
            p("lock"),
            sdk,
            None,
            Refused(400, "invalid request body"),
        ),
        (
            "lock: a list",
            Method::POST,
            p("lock"),
            sdk,
            j(json!([DOMAIN, "ann"])),
            Refused(400, "expected a JSON object"),
        ),
        (
            "import: a row as a list",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([[
                "Ann",
                "Lee",
                "ann@example.com",
                DOMAIN,
                "+1",
                "planted"
            ]])),
            Refused(400, "row 0: invalid request body: expected a JSON object"),
        ),
        (
            "import: NUL in first_name",
            Method::POST,
            p("importUsers"),
            sdk,
            j(
                json!([{"domain": DOMAIN, "userAccountId": "new", "email": "new@example.com", "first_name": "A\u{0}"}]),
            ),
            Refused(400, "1 invalid rows"),
        ),
        (
            "import: escape codes in last_name",
            Method::POST,
            p("importUsers"),
            sdk,
            j(json!([{"domain": DOMAIN, "userAccountId": "new", "last_name": "\u{1b}[31mred"}])),
            Refused(400, "1 invalid rows"),
        ),
        (
            "lock: userAccountId missing",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"domain": DOMAIN})),
            Refused(400, "userAccountId"),
        ),
        (
            "lock: domain missing",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"userAccountId": "ann"})),
            Refused(400, "domain"),
        ),
        (
            "lock: domain a number",
            Method::POST,
            p("lock"),
            sdk,
            j(json!({"domain": 1, "userAccountId": "ann"})),
            Refused(400, "invalid request body"),
        ),
        (
            "lock: not enrolled",
            Method::POST,
            p("lock"),
            sdk,
            Some(target("nobody")),
            Refused(404, "not found"),
        ),
        (
            "lock: NUL in userAccountId",
            Method::POST,
            p("lock"),
            sdk,
            Some(target("ann\u{0}")),
            Refused(404, "not found"),
        ),
        (
            "lock: 3,000 characters",
            Method::POST,
            p("lock"),
            sdk,
            Some(target(&"a".repeat(3000))),
            Refused(404, "not found"),
        ),
        (
            "lock: over 64 KiB",
            Method::POST,
            p("lock"),
            sdk,
            Some(target(&"a".repeat(70_000))),
            Refused(413, "over the limit"),
        ),
        (
            "unlock: minutes 0",
            Method::POST,
            p("unlock"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann", "minutes": 0})),
            Refused(400, "minutes"),
        ),
        (
            "unlock: minutes negative",
            Method::POST,
            p("unlock"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann", "minutes": -5})),
            Refused(400, "minutes"),
        ),
        (
            "unlock: minutes huge",
            Method::POST,
            p("unlock"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann", "minutes": i64::MAX})),
            Refused(400, "minutes"),
        ),
        (
            "unlock: minutes 1e300",
            Method::POST,
            p("unlock"),
            sdk,
            Some(
                br#"{"domain":"shop.example.com","userAccountId":"ann","minutes":1e300}"#.to_vec(),
            ),
            Refused(400, "invalid request body"),
        ),
        (
            "unlock: minutes fractional",
            Method::POST,
            p("unlock"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann", "minutes": 1.5})),
            Refused(400, "invalid request body"),
        ),
        (
            "unlock: minutes a string",
            Method::POST,
            p("unlock"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann", "minutes": "10"})),
            Refused(400, "invalid request body"),
        ),
        (
            "unlock: not enrolled",
            Method::POST,
            p("unlock"),
            sdk,
            Some(target("nobody")),
            Refused(404, "not found"),
        ),
        (
            "status: no parameters",
            Method::GET,
            p("status"),
            sdk,
            None,
            Refused(400, "domain"),
        ),
        (
            "status: userAccountId missing",
            Method::GET,
            format!("status?domain={DOMAIN}"),
            sdk,
            None,
            Refused(400, "userAccountId"),
        ),
        (
            "status: unknown domain",
            Method::GET,
            p("status?domain=nowhere.example&userAccountId=ann"),
            sdk,
            None,
            Refused(403, "no application"),
        ),
        (
            "status: NUL in userAccountId",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=ann%00"),
            sdk,
            None,
            Success(200),
        ),
        // Read as U+FFFD: a name nobody enrolled.
        (
            "status: bad percent-encoding",
            Method::GET,
            format!("status?domain={DOMAIN}&userAccountId=%ff%fe"),
            sdk,
            None,
            Success(200),
        ),
        (
            "attempts: no domain",
            Method::GET,
            p("attempts"),
            sdk,
            None,
            Refused(400, "domain"),
        ),
        (
            "attempts: limit a word",
            Method::GET,
            format!("attempts?domain={DOMAIN}&limit=many"),
            sdk,
            None,
            Refused(400, "limit"),
        ),
        (
            "attempts: limit huge",
            Method::GET,
            format!("attempts?domain={DOMAIN}&limit=99999999999999999999"),
            sdk,
            None,
            Refused(400, "limit"),
        ),
        (
            "attempts: since garbage",
            Method::GET,
            format!("attempts?domain={DOMAIN}&since=yesterday"),
            sdk,
            None,
            Refused(400, "since"),
        ),
        (
            "attempts: since out of range",
            Method::GET,
            format!("attempts?domain={DOMAIN}&since=9223372036854775807"),
            sdk,
            None,
            Refused(400, "out of range"),
        ),
        (
            "pair: a list",
            Method::POST,
            p("pair"),
            sdk,
            j(json!(["ABCD-EFGH", DOMAIN, "ann"])),
            Refused(400, "expected a JSON object"),
        ),
        (
            "pair: no code",
            Method::POST,
            p("pair"),
            sdk,
            j(json!({"domain": DOMAIN, "userAccountId": "ann"})),
            Refused(400, "code"),
        ),
        (
            "pair: unknown code",
            Method::POST,
            p("pair"),
            sdk,
            j(json!({"code": "ZZZZ-ZZZZ", "domain": DOMAIN, "userAccountId": "ann"})),
            Refused(404, "pairing code"),
        ),
        (
            "pair: NUL in the code",
            Method::POST,
            p("pair"),
            sdk,
            j(json!({"code": "\u{0}", "domain": DOMAIN, "userAccountId": "ann"})),
            Refused(404, "pairing code"),
        ),
        (
            "pair: another company's domain",
            Method::POST,
            p("pair"),
            sdk,
            j(json!({"code": "ZZZZ-ZZZZ", "domain": OTHER_DOMAIN, "userAccountId": "bea"})),
            Refused(403, "no application"),
        ),
        (
            "pair: another company's key",
            Method::POST,
            p("pair"),
            Some(&s.other_sdk),
            j(json!({"code": "ZZZZ-ZZZZ", "domain": DOMAIN, "userAccountId": "ann"})),
            Refused(403, "no application"),
        ),
        (
            "GET on lock",
            Method::GET,
            p("lock"),
            sdk,
            None,
            Refused(405, "method not allowed"),
        ),
        (
            "DELETE on importUsers",
            Method::DELETE,
            p("importUsers"),
            sdk,
            None,
            Refused(405, "method not allowed"),
        ),
        (
            "unknown SDK path",
            Method::POST,
            p("deleteEverything"),
            sdk,
            Some(target("ann")),
            Refused(404, "not found"),
        ),
    ];
    assert!(rows.len() >= 20, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (name, method, path, token, body, want) in rows {
        let got = sdk_call(t, method, &path, token, body).await;
        failures.extend(mismatch(name, &got, want));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing changed: ann still locked, bea still unlocked, nothing planted or imported.
    assert!(t.locked(DOMAIN, &s.key, "ann").await);
    let a = t
        .store
        .application_by_issuer(DOMAIN)
        .await
        .unwrap()
        .unwrap();
    let b = t
        .store
        .application_by_issuer(OTHER_DOMAIN)
        .await
        .unwrap()
        .unwrap();
    let names =
        |v: Vec<deadbolt_store::Account>| v.into_iter().map(|a| a.account).collect::<Vec<_>>();
    assert_eq!(
        names(t.store.accounts(&a.id, None, 1000).await.unwrap()),
        ["ann"]
    );
    assert_eq!(
        names(t.store.accounts(&b.id, None, 1000).await.unwrap()),
        ["bea"]
    );
    assert_eq!(
        t.service.account(&b.id, "bea").await.unwrap().state,
        deadbolt_core::AccountState::Unlocked
    );
    assert_eq!(
        t.sdk(
            Method::GET,
            &format!("status?domain={DOMAIN}&userAccountId=ann"),
            &s.sdk,
            None
        )
        .await,
        (200, json!({"locked": true, "reason": "account_locked"}))
    );
}

#[tokio::test]
async fn hostile_sdk_requests_sqlite() {
    hostile_sdk_table(TestApp::spawn().await).await;
}

#[tokio::test]
async fn hostile_sdk_requests_postgres() {
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    hostile_sdk_table(t).await;
}

#[tokio::test]
async fn nul_in_names_on_postgres() {
    // Names PostgreSQL refuses to store (NUL) must not turn into a 503.
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    let app = t.app(ISS).await;
    let key = t.key(&app).await;
    for sub in ["alice\u{0}", "\u{0}"] {
        let got = t.check_raw(Some(&t.token(ISS, &key, sub)), "{}").await;
        assert_eq!(got, (200, json!({"locked": false})), "{sub:?}");
    }
    let got = t
        .check_raw(Some(&t.token("app\u{0}.example.com", &key, "alice")), "{}")
        .await;
    assert_refused(&got, 401);
    let got = t
        .check_raw(
            Some(&t.token(ISS, &key, "alice")),
            r#"{"userDevice":"a\u0000b","integrationData":{"k\u0000":"\u0000"}}"#,
        )
        .await;
    assert_eq!(got, (200, json!({"locked": false})));
    assert!(!t.locked(ISS, &key, "alice").await);
}

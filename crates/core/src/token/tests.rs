//! The token matrix: shapes real clients send, and hostile tokens.

use super::*;
use chrono::TimeZone;
use serde_json::json;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_764_230_400, 0).unwrap()
}
fn t() -> f64 {
    now().timestamp() as f64
}
fn policy() -> TokenPolicy {
    TokenPolicy::new(["https://api.example.com"])
}
fn keys() -> Vec<VerifyingKey<u32>> {
    vec![VerifyingKey::new(1, KEY)]
}
fn raw(header: &Value, claims: &Value, key: &[u8]) -> String {
    let h = B64URL.encode(header.to_string());
    let c = B64URL.encode(claims.to_string());
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B64URL.encode(mac.finalize().into_bytes()))
}
fn check(token: &str) -> Result<Verified<u32>, TokenError> {
    let p = parse(token)?;
    assert_eq!(p.issuer(), "app.example.com");
    p.verify(&keys(), &policy(), now())
}
/// PyJWT as the vendor sample uses it: fractional iat/exp, no nbf.
fn pyjwt() -> Value {
    json!({"iss": "app.example.com", "aud": "https://api.example.com", "sub": "alice",
           "iat": t() - 60.0 + 0.123456, "exp": t() + 300.0 + 0.123456})
}
fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

#[test]
fn pyjwt_shape_is_accepted() {
    let v = check(&sign_hs256(&pyjwt(), KEY)).unwrap();
    assert_eq!(
        v,
        Verified {
            key_id: 1,
            subject: "alice".into()
        }
    );
}

#[test]
fn njwt_shape_with_nbf_jti_integer_dates() {
    let c = json!({"iss": "https://app.example.com", "aud": "api.example.com", "sub": "bob",
                   "jti": "5a6b1c2d-0000-4000-8000-000000000000",
                   "iat": t() as i64 - 60, "nbf": t() as i64 - 60, "exp": t() as i64 + 300});
    assert_eq!(check(&raw(&hs256(), &c, KEY)).unwrap().subject, "bob");
}

#[test]
fn issuer_and_audience_variants() {
    for (iss, aud) in [
        ("app.example.com", "https://api.example.com"),
        ("https://app.example.com/", "api.example.com"),
        ("HTTP://APP.example.com", "https://API.example.com/"),
    ] {
        let mut c = pyjwt();
        c["iss"] = json!(iss);
        c["aud"] = json!(aud);
        assert!(check(&sign_hs256(&c, KEY)).is_ok(), "{iss} {aud}");
    }
    let mut c = pyjwt();
    c["aud"] = json!(["https://other", "api.example.com"]);
    assert!(check(&sign_hs256(&c, KEY)).is_ok());
}

#[test]
fn only_exp_no_iat_nbf() {
    let c =
        json!({"iss": "app.example.com", "aud": "api.example.com", "sub": "x", "exp": t() + 60.0});
    assert!(check(&sign_hs256(&c, KEY)).is_ok());
}

#[test]
fn padded_base64_and_bearer_prefix_are_tolerated() {
    let tok = sign_hs256(&pyjwt(), KEY);
    assert!(check(&format!("Bearer {tok}")).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let h = B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let c = B64URL.encode(pyjwt().to_string());
    assert_eq!(
        parse(&format!("{h}.{c}.")).unwrap_err(),
        TokenError::Algorithm
    );
    let h = B64URL.encode(r#"{"alg":"None"}"#);
    assert_eq!(
        parse(&format!("{h}.{c}.")).unwrap_err(),
        TokenError::Algorithm
    );
}

#[test]
fn other_algorithms_are_refused_even_with_a_valid_hmac() {
    for alg in [
        "HS384", "HS512", "RS256", "ES256", "PS256", "hs256", "EdDSA",
    ] {
        let tok = raw(&json!({"alg": alg, "typ": "JWT"}), &pyjwt(), KEY);
        assert_eq!(parse(&tok).unwrap_err(), TokenError::Algorithm, "{alg}");
    }
    let tok = raw(&json!({"typ": "JWT"}), &pyjwt(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Algorithm);
    let tok = raw(&json!({"alg": ["HS256"]}), &pyjwt(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Algorithm);
}

#[test]
fn rsa_label_on_hmac_signature_is_refused() {
    // Algorithm confusion: an HMAC made with a (public) key, labelled RS256.
    let tok = raw(&json!({"alg": "RS256"}), &pyjwt(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Algorithm);
}

#[test]
fn crit_header_is_refused() {
    let tok = raw(&json!({"alg": "HS256", "crit": ["exp"]}), &pyjwt(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
}

#[test]
fn wrong_key_is_refused() {
    assert_eq!(
        check(&sign_hs256(&pyjwt(), OTHER)).unwrap_err(),
        TokenError::Signature
    );
}

#[test]
fn any_active_key_verifies_and_is_named() {
    let ks = vec![VerifyingKey::new(1, KEY), VerifyingKey::new(2, OTHER)];
    let tok = sign_hs256(&pyjwt(), OTHER);
    let v = parse(&tok).unwrap().verify(&ks, &policy(), now()).unwrap();
    assert_eq!(v.key_id, 2);
    let none: Vec<VerifyingKey<u32>> = vec![];
    assert_eq!(
        parse(&tok)
            .unwrap()
            .verify(&none, &policy(), now())
            .unwrap_err(),
        TokenError::Signature
    );
}

#[test]
fn tampered_claims_or_signature_are_refused() {
    let tok = sign_hs256(&pyjwt(), KEY);
    let mut parts: Vec<String> = tok.split('.').map(String::from).collect();
    let mut c = pyjwt();
    c["sub"] = json!("mallory");
    parts[1] = B64URL.encode(c.to_string());
    assert_eq!(check(&parts.join(".")).unwrap_err(), TokenError::Signature);

    let mut sig = B64URL.decode(tok.rsplit('.').next().unwrap()).unwrap();
    sig[0] ^= 1;
    let (head, _) = tok.rsplit_once('.').unwrap();
    assert_eq!(
        check(&format!("{head}.{}", B64URL.encode(&sig))).unwrap_err(),
        TokenError::Signature
    );
    // A truncated signature is refused before any comparison.
    assert_eq!(
        check(&format!("{head}.{}", B64URL.encode(&sig[..16]))).unwrap_err(),
        TokenError::Signature
    );
}

#[test]
fn expiry_with_leeway() {
    let mut c = pyjwt();
    c["exp"] = json!(t() - 59.0);
    assert!(
        check(&sign_hs256(&c, KEY)).is_ok(),
        "within the 60 s leeway"
    );
    c["exp"] = json!(t() - 61.5);
    c["iat"] = json!(t() - 400.0);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn not_yet_valid() {
    let mut c = pyjwt();
    c["nbf"] = json!(t() + 120.0);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::NotYetValid
    );
    let mut c = pyjwt();
    c["iat"] = json!(t() + 120.0);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::NotYetValid
    );
    let mut c = pyjwt();
    c["nbf"] = json!(t() + 30.0);
    assert!(
        check(&sign_hs256(&c, KEY)).is_ok(),
        "30 s of skew is within leeway"
    );
}

#[test]
fn too_long_lived() {
    let mut c = pyjwt();
    c["exp"] = json!(t() + 30.0 * 60.0);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::TooLongLived
    );
    c["exp"] = json!(t() + 15.0 * 60.0);
    assert!(check(&sign_hs256(&c, KEY)).is_ok());
    c["exp"] = json!(1e300);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::TooLongLived
    );
}

#[test]
fn missing_claims() {
    for name in ["exp", "sub", "aud"] {
        let mut c = pyjwt();
        c.as_object_mut().unwrap().remove(name);
        assert_eq!(
            check(&sign_hs256(&c, KEY)).unwrap_err(),
            TokenError::Claim(name),
            "{name}"
        );
    }
    let mut c = pyjwt();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        parse(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Claim("iss")
    );
}

#[test]
fn claims_of_the_wrong_type() {
    for (name, v) in [
        ("exp", json!("tomorrow")),
        ("exp", json!(null)),
        ("iat", json!("now")),
        ("nbf", json!([1])),
        ("sub", json!(42)),
        ("sub", json!("")),
        ("aud", json!(7)),
    ] {
        let mut c = pyjwt();
        c[name] = v.clone();
        assert_eq!(
            check(&sign_hs256(&c, KEY)).unwrap_err(),
            TokenError::Claim(name),
            "{name}={v}"
        );
    }
    let mut c = pyjwt();
    c["iss"] = json!({"x": 1});
    assert_eq!(
        parse(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Claim("iss")
    );
}

#[test]
fn wrong_audience() {
    let mut c = pyjwt();
    c["aud"] = json!("https://api.example.com.evil.net");
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Audience
    );
    c["aud"] = json!([]);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Audience
    );
}

#[test]
fn garbage_is_refused_without_panic() {
    for g in [
        "",
        "   ",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "e30.e30.",
        "e30.e30.e30",
        "!!!.###.$$$",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA",
        "\u{0}\u{1}",
        "eyJhbGciOiJIUzI1NiJ9..",
    ] {
        assert!(parse(g).is_err(), "{g:?}");
    }
    assert_eq!(parse("").unwrap_err(), TokenError::Missing);
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(parse(&huge).unwrap_err(), TokenError::Malformed);
    // Claims that are JSON but not an object.
    let h = B64URL.encode(r#"{"alg":"HS256"}"#);
    let tok = format!(
        "{h}.{}.{}",
        B64URL.encode("[1,2]"),
        B64URL.encode([0u8; 32])
    );
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
}

/// Signs `header` and `claims` given as JSON text, exactly as written (duplicates and all).
fn raw_text(header: &str, claims: &str, key: &[u8]) -> String {
    let h = B64URL.encode(header);
    let c = B64URL.encode(claims);
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

#[test]
fn a_claim_named_twice_is_malformed() {
    let exp = t() + 300.0;
    // Two readers could see two different subjects (or issuers, or expiries) in one token.
    for claims in [
        format!(
            r#"{{"iss":"app.example.com","aud":"api.example.com","sub":"alice","sub":"bob","exp":{exp}}}"#
        ),
        format!(
            r#"{{"iss":"app.example.com","iss":"other.example.com","aud":"api.example.com","sub":"alice","exp":{exp}}}"#
        ),
        format!(
            r#"{{"iss":"app.example.com","aud":"api.example.com","sub":"alice","exp":{exp},"exp":1e12}}"#
        ),
    ] {
        let tok = raw_text(r#"{"alg":"HS256"}"#, &claims, KEY);
        assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed, "{claims}");
    }
    let tok = raw_text(r#"{"alg":"none","alg":"HS256"}"#, &pyjwt().to_string(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
}

#[test]
fn header_and_claims_must_be_objects() {
    let exp = t() + 300.0;
    // An array would otherwise fill the fields in order.
    let tok = raw_text(r#"["HS256"]"#, &pyjwt().to_string(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
    let claims = format!(r#"["app.example.com","api.example.com","alice",{exp}]"#);
    let tok = raw_text(r#"{"alg":"HS256"}"#, &claims, KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
    // A null crit is still a crit.
    let tok = raw(&json!({"alg": "HS256", "crit": null}), &pyjwt(), KEY);
    assert_eq!(parse(&tok).unwrap_err(), TokenError::Malformed);
}

#[test]
fn escaped_strings_and_audience_lists() {
    // JSON escapes in the issuer and subject are read as the text they stand for.
    let exp = t() + 300.0;
    let claims = format!(
        r#"{{"iss":"app.example\u002ecom","aud":["x",7,null,"https:\/\/api.example.com"],"sub":"al\u00efce \"q\"","exp":{exp}}}"#
    );
    let v = check(&raw_text(r#"{"alg":"HS256"}"#, &claims, KEY)).unwrap();
    assert_eq!(v.subject, "alïce \"q\"");
    // A list with no accepted audience is the wrong audience, not a malformed token.
    let mut c = pyjwt();
    c["aud"] = json!([7, {"a": 1}, "elsewhere.example.com"]);
    assert_eq!(
        check(&sign_hs256(&c, KEY)).unwrap_err(),
        TokenError::Audience
    );
    // A signature that decodes to other than 32 bytes is not an HS256 signature.
    let tok = sign_hs256(&pyjwt(), KEY);
    let (input, _) = tok.rsplit_once('.').unwrap();
    for sig in [
        B64URL.encode([1u8; 31]),
        B64URL.encode([1u8; 33]),
        B64URL.encode([1u8; 64]),
    ] {
        assert_eq!(
            check(&format!("{input}.{sig}")).unwrap_err(),
            TokenError::Signature
        );
    }
}

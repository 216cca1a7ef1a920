//! Check tokens: HS256 JWTs as real NL3 clients sign them (PyJWT, njwt, jose, …).
//!
//! Only HS256 is accepted. The issuer is read before the signature is checked, because it names
//! the application whose keys verify the token; nothing else is trusted until a key matches.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use thiserror::Error;

use crate::normalize::normalize_name;

type HmacSha256 = Hmac<Sha256>;

/// Base64url that tolerates padding, as some JWT libraries emit it.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Tokens larger than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm: only HS256 is accepted")]
    Algorithm,
    #[error("token claim {0} is missing or has the wrong type")]
    Claim(&'static str),
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("wrong audience")]
    Audience,
    #[error("invalid signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token lifetime too long")]
    TooLongLived,
}

/// How strictly tokens are checked.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// Accepted audiences, already normalised.
    pub audiences: Vec<String>,
    pub leeway_secs: f64,
    pub max_lifetime_secs: f64,
}

impl TokenPolicy {
    pub fn new<S: AsRef<str>>(audiences: impl IntoIterator<Item = S>) -> Self {
        Self {
            audiences: audiences
                .into_iter()
                .map(|a| normalize_name(a.as_ref()))
                .collect(),
            leeway_secs: 60.0,
            max_lifetime_secs: 15.0 * 60.0,
        }
    }
}

/// An HMAC key prepared once (the key schedule is computed at load, not per check).
#[derive(Clone)]
pub struct VerifyingKey<Id> {
    pub id: Id,
    mac: HmacSha256,
}

impl<Id> VerifyingKey<Id> {
    pub fn new(id: Id, secret: &[u8]) -> Self {
        #[allow(clippy::expect_used)] // HMAC accepts keys of any length
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        Self { id, mac }
    }
}

impl<Id: std::fmt::Debug> std::fmt::Debug for VerifyingKey<Id> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    signing_input: &'a [u8],
    signature: Vec<u8>,
    issuer: String,
    claims: Map<String, Value>,
}

/// The claims Deadbolt uses, from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<Id> {
    pub key_id: Id,
    pub subject: String,
}

/// Splits and decodes a token and checks its header; the signature is checked by [`UnverifiedToken::verify`].
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Map<String, Value> = decode_json(h)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    // A critical extension we do not understand must not be ignored (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    let claims: Map<String, Value> = decode_json(c)?;
    let signature = B64URL.decode(s).map_err(|_| TokenError::Malformed)?;
    if signature.len() != 32 {
        return Err(TokenError::Signature);
    }
    let issuer = match claims.get("iss") {
        Some(Value::String(s)) if !s.trim().is_empty() => normalize_name(s),
        _ => return Err(TokenError::Claim("iss")),
    };
    Ok(UnverifiedToken {
        signing_input: &token.as_bytes()[..h.len() + 1 + c.len()],
        signature,
        issuer,
        claims,
    })
}

fn decode_json(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = B64URL.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

impl UnverifiedToken<'_> {
    /// The normalised issuer, used to find the application.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks the signature against every key (in constant time each), then audience and times.
    pub fn verify<Id: Clone>(
        &self,
        keys: &[VerifyingKey<Id>],
        policy: &TokenPolicy,
        now: DateTime<Utc>,
    ) -> Result<Verified<Id>, TokenError> {
        let mut matched = None;
        for key in keys {
            let mut mac = key.mac.clone();
            mac.update(self.signing_input);
            // verify_slice compares in constant time.
            if mac.verify_slice(&self.signature).is_ok() && matched.is_none() {
                matched = Some(key.id.clone());
            }
        }
        let key_id = matched.ok_or(TokenError::Signature)?;

        let aud_ok = match self.claims.get("aud") {
            Some(Value::String(a)) => policy.audiences.contains(&normalize_name(a)),
            Some(Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| policy.audiences.contains(&normalize_name(a)))
            }),
            Some(_) => return Err(TokenError::Claim("aud")),
            None => return Err(TokenError::Claim("aud")),
        };
        if !aud_ok {
            return Err(TokenError::Audience);
        }

        let now = now.timestamp_micros() as f64 / 1e6;
        let leeway = policy.leeway_secs;
        let exp = self.numeric_date("exp")?.ok_or(TokenError::Claim("exp"))?;
        if now > exp + leeway {
            return Err(TokenError::Expired);
        }
        if exp - now > policy.max_lifetime_secs + leeway {
            return Err(TokenError::TooLongLived);
        }
        if let Some(nbf) = self.numeric_date("nbf")? {
            if nbf > now + leeway {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(iat) = self.numeric_date("iat")? {
            if iat > now + leeway {
                return Err(TokenError::NotYetValid);
            }
        }
        let subject = match self.claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => s.clone(),
            _ => return Err(TokenError::Claim("sub")),
        };
        Ok(Verified { key_id, subject })
    }

    /// A NumericDate: integer or fractional seconds (PyJWT writes `1764230400.123456`).
    fn numeric_date(&self, name: &'static str) -> Result<Option<f64>, TokenError> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or(TokenError::Claim(name)),
            Some(_) => Err(TokenError::Claim(name)),
        }
    }
}

/// Signs claims as HS256, the way the Cognito trigger and `deadbolt check` do.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64URL.encode(claims.to_string().as_bytes());
    let input = format!("{header}.{body}");
    #[allow(clippy::expect_used)] // HMAC accepts keys of any length
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    let sig = B64URL.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

#[cfg(test)]
mod tests;

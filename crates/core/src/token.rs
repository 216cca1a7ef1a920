//! Check tokens: HS256 JWTs as real NL3 clients sign them (PyJWT, njwt, jose, …).
//!
//! Only HS256 is accepted. The issuer is read before the signature is checked, because it names
//! the application whose keys verify the token; nothing else is trusted until a key matches.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::borrow::Cow;
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
    signature: [u8; 32],
    issuer: String,
    claims: Claims,
}

/// The claims Deadbolt uses, from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<Id> {
    pub key_id: Id,
    pub subject: String,
}

/// One claim as the token wrote it. Claims are read into exactly the shapes Deadbolt uses, with
/// no tree of the whole token: a wrong type is remembered and refused, by name, in
/// [`UnverifiedToken::verify`], after the signature is checked.
#[derive(Debug, Default)]
enum Claim<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Num(f64),
    /// An array: its string elements (an `aud` list); other elements are not names.
    List(Vec<Cow<'a, str>>),
    /// `null`, a boolean or an object: present, never valid for the claims read here.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Claim<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Claim<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Claim<'a>, E> {
                Ok(Claim::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Claim<'a>, E> {
                Ok(Claim::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Claim<'a>, E> {
                Ok(Claim::Str(Cow::Owned(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Claim<'a>, E> {
                Ok(Claim::Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Claim<'a>, E> {
                Ok(Claim::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Claim<'a>, E> {
                Ok(Claim::Num(v as f64))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Claim<'a>, E> {
                Ok(Claim::Other)
            }
            fn visit_unit<E>(self) -> Result<Claim<'a>, E> {
                Ok(Claim::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'a>, A::Error> {
                let mut names = Vec::new();
                while let Some(item) = seq.next_element::<Claim<'a>>()? {
                    if let Claim::Str(s) = item {
                        names.push(s);
                    }
                }
                Ok(Claim::List(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claim<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Claim::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The JOSE header. A claim named twice (here or in the claims) makes the token malformed:
/// two readers must never see two different tokens in one.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    alg: Claim<'a>,
    #[serde(borrow, default)]
    crit: Claim<'a>,
}

#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    iss: Claim<'a>,
    #[serde(borrow, default)]
    aud: Claim<'a>,
    #[serde(borrow, default)]
    sub: Claim<'a>,
    #[serde(borrow, default)]
    exp: Claim<'a>,
    #[serde(borrow, default)]
    nbf: Claim<'a>,
    #[serde(borrow, default)]
    iat: Claim<'a>,
}

/// The claims, owned and checked for type (errors are kept for [`UnverifiedToken::verify`]).
#[derive(Debug)]
struct Claims {
    /// Normalised audiences; `Err` when `aud` is missing or not a string or list.
    audiences: Result<Vec<String>, TokenError>,
    subject: Result<String, TokenError>,
    exp: Result<Option<f64>, TokenError>,
    nbf: Result<Option<f64>, TokenError>,
    iat: Result<Option<f64>, TokenError>,
}

impl Claims {
    fn read(raw: RawClaims<'_>) -> Self {
        let audiences = match raw.aud {
            Claim::Str(a) => Ok(vec![normalize_name(&a)]),
            Claim::List(list) => Ok(list.iter().map(|a| normalize_name(a)).collect()),
            _ => Err(TokenError::Claim("aud")),
        };
        let subject = match raw.sub {
            Claim::Str(s) if !s.is_empty() && s.len() <= 512 => Ok(s.into_owned()),
            _ => Err(TokenError::Claim("sub")),
        };
        Self {
            audiences,
            subject,
            exp: numeric_date("exp", raw.exp),
            nbf: numeric_date("nbf", raw.nbf),
            iat: numeric_date("iat", raw.iat),
        }
    }
}

/// A NumericDate: integer or fractional seconds (PyJWT writes `1764230400.123456`).
fn numeric_date(name: &'static str, c: Claim<'_>) -> Result<Option<f64>, TokenError> {
    match c {
        Claim::Absent => Ok(None),
        Claim::Num(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(TokenError::Claim(name)),
    }
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
    let header_json = decode(h)?;
    let header: RawHeader<'_> = json(&header_json)?;
    if !matches!(&header.alg, Claim::Str(a) if a == "HS256") {
        return Err(TokenError::Algorithm);
    }
    // A critical extension we do not understand must not be ignored (RFC 7515 §4.1.11).
    if !matches!(header.crit, Claim::Absent) {
        return Err(TokenError::Malformed);
    }
    let claims_json = decode(c)?;
    let raw: RawClaims<'_> = json(&claims_json)?;
    // 32 bytes are 43 base64 characters (44 padded); anything else is not an HS256 signature.
    let mut signature = [0u8; 32];
    let mut buf = [0u8; 36];
    match B64URL.decode_slice(s, &mut buf) {
        Ok(32) => signature.copy_from_slice(&buf[..32]),
        Ok(_) => return Err(TokenError::Signature),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Err(TokenError::Signature),
        Err(_) => return Err(TokenError::Malformed),
    }
    let issuer = match &raw.iss {
        Claim::Str(s) if !s.trim().is_empty() => normalize_name(s),
        _ => return Err(TokenError::Claim("iss")),
    };
    Ok(UnverifiedToken {
        signing_input: &token.as_bytes()[..h.len() + 1 + c.len()],
        signature,
        issuer,
        claims: Claims::read(raw),
    })
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    B64URL.decode(part).map_err(|_| TokenError::Malformed)
}

/// A JSON object (an array must not fill the fields in order, as serde would let it).
fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, TokenError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)
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

        let c = &self.claims;
        let audiences = c.audiences.as_ref().map_err(Clone::clone)?;
        if !audiences.iter().any(|a| policy.audiences.contains(a)) {
            return Err(TokenError::Audience);
        }

        let now = now.timestamp_micros() as f64 / 1e6;
        let leeway = policy.leeway_secs;
        let exp = c.exp.clone()?.ok_or(TokenError::Claim("exp"))?;
        if now > exp + leeway {
            return Err(TokenError::Expired);
        }
        if exp - now > policy.max_lifetime_secs + leeway {
            return Err(TokenError::TooLongLived);
        }
        if let Some(nbf) = c.nbf.clone()? {
            if nbf > now + leeway {
                return Err(TokenError::NotYetValid);
            }
        }
        if let Some(iat) = c.iat.clone()? {
            if iat > now + leeway {
                return Err(TokenError::NotYetValid);
            }
        }
        let subject = c.subject.clone()?;
        Ok(Verified { key_id, subject })
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

//! The check request body: a JSON object whose fields are all optional and, in the wild, oddly typed.

use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;

/// Deepest JSON nesting accepted in a check body.
pub const MAX_DEPTH: usize = 32;
/// Longest text kept of a context field (IP, device, location, integration type).
pub const MAX_FIELD: usize = 512;
/// Longest serialised `integrationData` kept with an attempt.
pub const MAX_INTEGRATION_DATA: usize = 4096;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("body must be a JSON object")]
    NotObject,
    #[error("field {0} must be a string")]
    FieldType(&'static str),
}

/// The sign-in context a client sends with a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckContext {
    pub ip: Option<String>,
    pub device: Option<String>,
    pub location: Option<String>,
    pub integration_type: Option<String>,
    /// `integrationData` re-serialised as JSON, bounded.
    pub integration_data: Option<String>,
}

/// Parses a check body. An empty body means no context. Strings, numbers and booleans are
/// accepted for the text fields (clients send `"userIP": 0` and such); objects and arrays are not.
pub fn parse_check_body(bytes: &[u8]) -> Result<CheckContext, BodyError> {
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Ok(CheckContext::default());
    };
    check_depth(bytes)?;
    // JSON is UTF-8 (RFC 8259); serde_json does not check the strings it skips (unknown fields).
    if std::str::from_utf8(bytes).is_err() {
        return Err(BodyError::NotJson);
    }
    if *first != b'{' {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => BodyError::NotObject,
                Err(_) => BodyError::NotJson,
            },
        );
    }
    // Fields are kept raw and read one by one: no tree is built for what is not used.
    let body: RawBody<'_> = serde_json::from_slice(bytes).map_err(|_| BodyError::NotJson)?;
    let integration_data = body
        .integration_data
        .filter(|v| v.get() != "null")
        .map(|v| {
            let s = v.get();
            if s.len() > MAX_INTEGRATION_DATA {
                Value::String(format!("(truncated: {} bytes)", s.len())).to_string()
            } else {
                s.to_string()
            }
        });
    Ok(CheckContext {
        ip: text("userIP", body.ip)?,
        device: text("userDevice", body.device)?,
        location: text("userLocation", body.location)?,
        integration_type: text("integrationType", body.integration_type)?,
        integration_data,
    })
}

#[derive(serde::Deserialize)]
struct RawBody<'a> {
    #[serde(rename = "userIP", borrow, default)]
    ip: Option<&'a RawValue>,
    #[serde(rename = "userDevice", borrow, default)]
    device: Option<&'a RawValue>,
    #[serde(rename = "userLocation", borrow, default)]
    location: Option<&'a RawValue>,
    #[serde(rename = "integrationType", borrow, default)]
    integration_type: Option<&'a RawValue>,
    #[serde(rename = "integrationData", borrow, default)]
    integration_data: Option<&'a RawValue>,
}

/// A text field: a string (bounded), or a number or boolean as written; null is absent.
fn text(name: &'static str, raw: Option<&RawValue>) -> Result<Option<String>, BodyError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => {
            // The parser validated the string: without escapes, its text is what is quoted.
            let quoted = &s[1..s.len() - 1];
            if !quoted.contains('\\') {
                return Ok(Some(bounded(quoted, MAX_FIELD)));
            }
            let mut v: String = serde_json::from_str(s).map_err(|_| BodyError::NotJson)?;
            v.truncate(floor_char_boundary(&v, MAX_FIELD));
            Ok(Some(v))
        }
        Some(b'n') => Ok(None),
        Some(b'{' | b'[') | None => Err(BodyError::FieldType(name)),
        Some(_) => Ok(Some(bounded(s, MAX_FIELD))),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn bounded(s: &str, max: usize) -> String {
    s[..floor_char_boundary(s, max)].to_string()
}

/// The largest index at most `max` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Refuses nesting deeper than [`MAX_DEPTH`] before the parser recurses into it.
fn check_depth(bytes: &[u8]) -> Result<(), BodyError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BodyError::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_client_body() {
        let b = br#"{"userIP":"203.0.113.9","userDevice":"Mozilla/5.0","userLocation":"48.85,2.35",
                     "integrationType":"cognito","integrationData":{"loc":"48.85,2.35","n":[1,2]}}"#;
        let c = parse_check_body(b).unwrap();
        assert_eq!(c.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(c.device.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(c.location.as_deref(), Some("48.85,2.35"));
        assert_eq!(c.integration_type.as_deref(), Some("cognito"));
        assert_eq!(
            c.integration_data.as_deref(),
            Some(r#"{"loc":"48.85,2.35","n":[1,2]}"#)
        );
    }

    #[test]
    fn odd_but_possible_types() {
        let c = parse_check_body(
            br#"{"userIP":null,"userDevice":7,"userLocation":true,"integrationData":"plain"}"#,
        )
        .unwrap();
        assert_eq!(c.ip, None);
        assert_eq!(c.device.as_deref(), Some("7"));
        assert_eq!(c.location.as_deref(), Some("true"));
        assert_eq!(c.integration_data.as_deref(), Some(r#""plain""#));
        assert_eq!(parse_check_body(b"").unwrap(), CheckContext::default());
        assert_eq!(parse_check_body(b"{}").unwrap(), CheckContext::default());
        let c = parse_check_body(br#"{"integrationData":null,"unknown":{"a":1}}"#).unwrap();
        assert_eq!(c.integration_data, None);
    }

    #[test]
    fn impossible_types_and_shapes() {
        assert_eq!(
            parse_check_body(br#"{"userIP":{"a":1}}"#).unwrap_err(),
            BodyError::FieldType("userIP")
        );
        assert_eq!(
            parse_check_body(br#"{"integrationType":[1]}"#).unwrap_err(),
            BodyError::FieldType("integrationType")
        );
        assert_eq!(
            parse_check_body(b"[1,2]").unwrap_err(),
            BodyError::NotObject
        );
        assert_eq!(
            parse_check_body(b"\"x\"").unwrap_err(),
            BodyError::NotObject
        );
        assert_eq!(
            parse_check_body(b"userIP=1").unwrap_err(),
            BodyError::NotJson
        );
        assert_eq!(
            parse_check_body(b"{\"a\":").unwrap_err(),
            BodyError::NotJson
        );
        assert_eq!(
            parse_check_body(&[0xff, 0xfe]).unwrap_err(),
            BodyError::NotJson
        );
        assert_eq!(
            parse_check_body(b"{\"unknown\":\"\xff\"}").unwrap_err(),
            BodyError::NotJson,
            "invalid UTF-8 in a field nobody reads is still not JSON"
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!(
            "{{\"integrationData\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse_check_body(ok.as_bytes()).is_ok());
        let deep = format!(
            "{{\"integrationData\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(
            parse_check_body(deep.as_bytes()).unwrap_err(),
            BodyError::TooDeep
        );
        let bomb = "[".repeat(100_000);
        assert_eq!(
            parse_check_body(bomb.as_bytes()).unwrap_err(),
            BodyError::TooDeep
        );
        // Brackets inside strings do not count.
        let s = format!(
            "{{\"userDevice\":\"{}\\\"{}\"}}",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(parse_check_body(s.as_bytes()).is_ok());
    }

    #[test]
    fn fields_are_bounded() {
        let long = "é".repeat(MAX_FIELD);
        let c = parse_check_body(format!("{{\"userDevice\":\"{long}\"}}").as_bytes()).unwrap();
        assert!(c.device.unwrap().len() <= MAX_FIELD);
        let big = format!(
            "{{\"integrationData\":\"{}\"}}",
            "x".repeat(MAX_INTEGRATION_DATA * 2)
        );
        let c = parse_check_body(big.as_bytes()).unwrap();
        assert!(c.integration_data.unwrap().contains("truncated"));
        // An escaped string is bounded after unescaping, on a character boundary.
        let escaped = "\\u00e9".repeat(MAX_FIELD);
        let c = parse_check_body(format!("{{\"userDevice\":\"{escaped}\"}}").as_bytes()).unwrap();
        let d = c.device.unwrap();
        assert_eq!(d, "é".repeat(MAX_FIELD / 2));
    }

    #[test]
    fn escapes_are_read_as_text() {
        let c = parse_check_body(
            br#"{"userIP":"203.0.113.9","userDevice":"Mozilla \"X\" \u00e9\/1","userLocation":"a\\b"}"#,
        )
        .unwrap();
        assert_eq!(c.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(c.device.as_deref(), Some("Mozilla \"X\" é/1"));
        assert_eq!(c.location.as_deref(), Some("a\\b"));
    }
}

//! Reading a Cognito Pre authentication event: who signs in, through which app client, and the
//! sign-in context the app passed as `ClientMetadata` (it arrives as `request.validationData`).

use aws_lambda_events::event::cognito::CognitoEventUserPoolsPreAuthentication;
use deadbolt_client::SignIn;
use deadbolt_core::body::{bounded, MAX_DEPTH, MAX_FIELD, MAX_INTEGRATION_DATA};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// What the trigger needs from one event.
#[derive(Debug, Clone, Default)]
pub struct PreAuthentication {
    /// `userName`: the account's name in the application, the token's `sub`.
    pub user_name: Option<String>,
    /// `callerContext.clientId`: the app client the user signs in through.
    pub client_id: Option<String>,
    pub sign_in: SignIn,
}

impl PreAuthentication {
    /// Reads an event. Never fails: what is missing or oddly typed is simply not sent.
    pub fn read(event: &Value) -> Self {
        // The documented shape first; a shape the type refuses (a number in validationData, an
        // unexpected trigger source) is read field by field instead.
        match CognitoEventUserPoolsPreAuthentication::deserialize(event) {
            Ok(typed) => {
                let header = typed.cognito_event_user_pools_header;
                let data = typed.request.validation_data;
                Self {
                    user_name: header.user_name,
                    client_id: header.caller_context.client_id,
                    sign_in: sign_in(|k| data.get(k).cloned()),
                }
            }
            Err(_) => Self::read_leniently(event),
        }
    }

    fn read_leniently(event: &Value) -> Self {
        let data: HashMap<&str, String> = event
            .pointer("/request/validationData")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| text(v).map(|t| (k.as_str(), t)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            user_name: event.get("userName").and_then(text),
            client_id: event.pointer("/callerContext/clientId").and_then(text),
            sign_in: sign_in(|k| data.get(k).cloned()),
        }
    }
}

/// A JSON value as text: strings as they are, other scalars and structures as JSON.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Maps `validationData` to the check's context. Every value is bounded so that the body stays
/// well inside what the API accepts: a request the API refuses would be a missing answer, and
/// with `FAIL_OPEN` a missing answer lets the sign-in through.
fn sign_in(get: impl Fn(&str) -> Option<String>) -> SignIn {
    let field = |k: &str| get(k).map(|v| bounded(&v, MAX_FIELD));
    let integration_data = get("additionalData").map(|raw| integration_data(&raw));
    let device_location = integration_data
        .as_ref()
        .and_then(|d| d.get("loc"))
        .and_then(location_header);
    SignIn {
        ip: field("ip"),
        device: field("device"),
        location: field("location"),
        integration_type: Some("cognito".to_string()),
        integration_data,
        forwarded_for: field("ip"),
        user_agent: field("device"),
        device_location,
    }
}

/// `additionalData` parsed as JSON, or kept as a string when it is not JSON (or is too large or
/// too deep to send as it is).
fn integration_data(raw: &str) -> Value {
    if raw.len() > MAX_INTEGRATION_DATA {
        return Value::String(format!("(truncated: {} bytes)", raw.len()));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v) if depth(&v) < MAX_DEPTH / 2 => v,
        _ => Value::String(raw.to_string()),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `additionalData.loc` as the `x-nl3-device-location` header ("lat,long"): a string, or a
/// pair of numbers.
fn location_header(loc: &Value) -> Option<String> {
    match loc {
        Value::String(s) if !s.trim().is_empty() => Some(bounded(s.trim(), MAX_FIELD)),
        Value::Array(pair) => match pair.as_slice() {
            [Value::Number(lat), Value::Number(long)] => Some(format!("{lat},{long}")),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A Pre authentication event as the Cognito developer guide shows it, with the sign-in
    /// context an app passes as `ClientMetadata`.
    pub(crate) fn documented_event() -> Value {
        json!({
            "version": "1",
            "region": "us-east-1",
            "userPoolId": "us-east-1_EXAMPLE",
            "userName": "alice",
            "callerContext": {
                "awsSdkVersion": "aws-sdk-unknown-unknown",
                "clientId": "1example23456789"
            },
            "triggerSource": "PreAuthentication_Authentication",
            "request": {
                "userAttributes": {
                    "sub": "4a7b5f3c-8d8e-4c8b-9a41-4f3a1f0b9e21",
                    "email_verified": "true",
                    "cognito:user_status": "CONFIRMED",
                    "email": "alice@example.com"
                },
                "validationData": {
                    "ip": "203.0.113.7",
                    "device": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                    "location": "Berlin, DE",
                    "additionalData": "{\"loc\":\"52.52,13.40\",\"session\":\"s-1\"}"
                },
                "userNotFound": false
            },
            "response": {}
        })
    }

    #[test]
    fn a_documented_event_maps_to_the_check_context() {
        let e = PreAuthentication::read(&documented_event());
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.client_id.as_deref(), Some("1example23456789"));
        let s = &e.sign_in;
        assert_eq!(s.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(
            s.device.as_deref(),
            Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        );
        assert_eq!(s.location.as_deref(), Some("Berlin, DE"));
        assert_eq!(s.integration_type.as_deref(), Some("cognito"));
        assert_eq!(
            s.integration_data,
            Some(json!({"loc": "52.52,13.40", "session": "s-1"}))
        );
        assert_eq!(s.forwarded_for.as_deref(), Some("203.0.113.7"));
        assert_eq!(
            s.user_agent.as_deref(),
            Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        );
        assert_eq!(s.device_location.as_deref(), Some("52.52,13.40"));

        let body = serde_json::to_value(s).unwrap();
        assert_eq!(
            body,
            json!({
                "userIP": "203.0.113.7",
                "userDevice": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                "userLocation": "Berlin, DE",
                "integrationType": "cognito",
                "integrationData": {"loc": "52.52,13.40", "session": "s-1"}
            })
        );
    }

    #[test]
    fn the_sample_event_of_the_event_types_is_read() {
        // The fixture aws_lambda_events ships for this trigger, placeholders and all.
        let e = PreAuthentication::read(&json!({
            "version": "1",
            "triggerSource": "PreAuthentication_Authentication",
            "region": "<region>",
            "userPoolId": "<userPoolId>",
            "userName": "<userName>",
            "callerContext": {
                "awsSdkVersion": "<calling aws sdk with version>",
                "clientId": "<apps client id>"
            },
            "request": {
                "userAttributes": {"email": "<email>"},
                "validationData": {"k1": "v1", "k2": "v2"}
            },
            "response": {}
        }));
        assert_eq!(e.user_name.as_deref(), Some("<userName>"));
        assert_eq!(e.client_id.as_deref(), Some("<apps client id>"));
        assert_eq!(e.sign_in.ip, None);
        assert_eq!(e.sign_in.integration_data, None);
        assert_eq!(e.sign_in.integration_type.as_deref(), Some("cognito"));
    }

    #[test]
    fn missing_or_null_validation_data_is_not_an_error() {
        for data in [json!({}), Value::Null] {
            let mut event = documented_event();
            event["request"]["validationData"] = data;
            let e = PreAuthentication::read(&event);
            assert_eq!(e.user_name.as_deref(), Some("alice"));
            let body = serde_json::to_value(&e.sign_in).unwrap();
            assert_eq!(body, json!({"integrationType": "cognito"}));
            assert_eq!(e.sign_in.forwarded_for, None);
        }
        let mut event = documented_event();
        event["request"]
            .as_object_mut()
            .unwrap()
            .remove("validationData");
        let e = PreAuthentication::read(&event);
        assert_eq!(e.sign_in.ip, None);
        // Nothing at all: still read, with nobody to check.
        let e = PreAuthentication::read(&json!({}));
        assert_eq!(e.user_name, None);
        assert_eq!(e.client_id, None);
    }

    #[test]
    fn additional_data_that_is_not_json_is_sent_as_a_string() {
        let mut event = documented_event();
        event["request"]["validationData"] = json!({"additionalData": "plain {text"});
        let e = PreAuthentication::read(&event);
        assert_eq!(e.sign_in.integration_data, Some(json!("plain {text")));
        assert_eq!(e.sign_in.device_location, None);
    }

    #[test]
    fn oddly_typed_validation_data_is_read_leniently() {
        let mut event = documented_event();
        event["request"]["validationData"] = json!({
            "ip": 2130706433,
            "device": true,
            "location": null,
            "additionalData": {"loc": [52.52, 13.4]}
        });
        event["triggerSource"] = json!("PreAuthentication_SomethingNew");
        let e = PreAuthentication::read(&event);
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.client_id.as_deref(), Some("1example23456789"));
        assert_eq!(e.sign_in.ip.as_deref(), Some("2130706433"));
        assert_eq!(e.sign_in.device.as_deref(), Some("true"));
        assert_eq!(e.sign_in.location, None);
        assert_eq!(
            e.sign_in.integration_data,
            Some(json!({"loc": [52.52, 13.4]}))
        );
        assert_eq!(e.sign_in.device_location.as_deref(), Some("52.52,13.4"));
    }

    #[test]
    fn oversized_or_deep_context_is_bounded_to_what_the_api_accepts() {
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let mut event = documented_event();
        event["request"]["validationData"] = json!({
            "ip": "1".repeat(5000),
            "additionalData": deep,
        });
        let e = PreAuthentication::read(&event);
        assert_eq!(e.sign_in.ip.as_ref().map(String::len), Some(MAX_FIELD));
        assert_eq!(e.sign_in.integration_data, Some(Value::String(deep)));

        event["request"]["validationData"] = json!({"additionalData": "x".repeat(70_000)});
        let e = PreAuthentication::read(&event);
        assert_eq!(
            e.sign_in.integration_data,
            Some(json!("(truncated: 70000 bytes)"))
        );
    }
}

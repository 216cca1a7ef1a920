//! The signing key from AWS Secrets Manager, read once at init through the AWS Parameters and
//! Secrets Lambda Extension (a local HTTP cache: no SDK in the binary, no cold-start cost).

use crate::config::ConfigError;
use serde_json::Value;
use std::time::Duration;

/// The extension may still be starting when the function initialises: retry this long in all.
const READY_WAIT: Duration = Duration::from_secs(3);
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Fetches the secret and returns the signing key in base64, as `SIGNING_KEY` would hold it.
///
/// The secret is either the base64 key itself (a plain-text secret), a JSON object with a
/// `SIGNING_KEY` field (a key/value secret), or binary (the raw key bytes).
pub async fn fetch_signing_key(
    secret_id: &str,
    port: u16,
    session_token: Option<&str>,
) -> Result<String, ConfigError> {
    let mut url = reqwest::Url::parse(&format!("http://localhost:{port}/secretsmanager/get"))
        .map_err(|e| ConfigError::Secret(e.to_string()))?;
    url.query_pairs_mut().append_pair("secretId", secret_id);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| ConfigError::Secret(e.to_string()))?;

    let started = tokio::time::Instant::now();
    loop {
        let mut req = http.get(url.clone());
        if let Some(token) = session_token {
            req = req.header("X-Aws-Parameters-Secrets-Token", token);
        }
        let failure = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| ConfigError::Secret(e.without_url().to_string()))?;
                return key_from_secret_value(&body);
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                format!("the extension answered {status}: {text}")
            }
            Err(e) => format!("the extension did not answer: {}", e.without_url()),
        };
        if started.elapsed() + RETRY_EVERY > READY_WAIT {
            return Err(ConfigError::Secret(failure));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Takes the key out of a `GetSecretValue` answer.
pub fn key_from_secret_value(body: &[u8]) -> Result<String, ConfigError> {
    let unusable = |why: &str| ConfigError::Secret(why.to_string());
    let answer: Value =
        serde_json::from_slice(body).map_err(|_| unusable("the answer is not JSON"))?;
    if let Some(s) = answer.get("SecretString").and_then(Value::as_str) {
        let s = s.trim();
        if s.starts_with('{') {
            let fields: Value = serde_json::from_str(s)
                .map_err(|_| unusable("the secret looks like JSON but does not parse"))?;
            return ["SIGNING_KEY", "signingKey", "signing_key"]
                .iter()
                .find_map(|k| fields.get(k).and_then(Value::as_str))
                .map(|k| k.trim().to_string())
                .ok_or_else(|| unusable("the JSON secret has no SIGNING_KEY field"));
        }
        if s.is_empty() {
            return Err(unusable("the secret is empty"));
        }
        return Ok(s.to_string());
    }
    // SecretBinary is the raw bytes in base64: exactly the form SIGNING_KEY takes.
    if let Some(b) = answer.get("SecretBinary").and_then(Value::as_str) {
        return Ok(b.trim().to_string());
    }
    Err(unusable(
        "the answer has neither SecretString nor SecretBinary",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_plain_text_secret_is_the_key() {
        let body = answer(json!({
            "ARN": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:deadbolt-AbCdEf",
            "Name": "deadbolt",
            "SecretString": " c2VjcmV0LWtleS1ieXRlcw==\n",
            "VersionId": "v1",
            "VersionStages": ["AWSCURRENT"]
        }));
        assert_eq!(
            key_from_secret_value(&body).unwrap(),
            "c2VjcmV0LWtleS1ieXRlcw=="
        );
    }

    #[test]
    fn a_key_value_secret_holds_the_key_under_signing_key() {
        let inner = json!({"SIGNING_KEY": "c2VjcmV0LWtleS1ieXRlcw=="}).to_string();
        let body = answer(json!({"Name": "deadbolt", "SecretString": inner}));
        assert_eq!(
            key_from_secret_value(&body).unwrap(),
            "c2VjcmV0LWtleS1ieXRlcw=="
        );
        let inner = json!({"other": "x"}).to_string();
        let body = answer(json!({"SecretString": inner}));
        assert!(key_from_secret_value(&body).is_err());
    }

    #[test]
    fn a_binary_secret_is_the_key_already_in_base64() {
        let body = answer(json!({"SecretBinary": "c2VjcmV0LWtleS1ieXRlcw=="}));
        assert_eq!(
            key_from_secret_value(&body).unwrap(),
            "c2VjcmV0LWtleS1ieXRlcw=="
        );
    }

    #[test]
    fn errors_never_repeat_the_secret() {
        let inner = "{not json c2VjcmV0LWtleS1ieXRlcw==";
        let body = answer(json!({"SecretString": inner}));
        let err = key_from_secret_value(&body).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}

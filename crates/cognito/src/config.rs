//! The trigger's settings, read from the Lambda environment (and nothing else).

use deadbolt_client::DEFAULT_API_PATH;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// Deadline of one check when `TIMEOUT_MS` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);
/// Cognito gives a trigger 5 s in all; a check may take at most this much of it.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(4500);
/// Shown to the user (after Cognito's `PreAuthentication failed with error `) when locked.
pub const DEFAULT_LOCKED_MESSAGE: &str = "This account is locked.";
/// Shown to the user when the check gave no answer and `FAIL_OPEN` is false.
pub const DEFAULT_UNAVAILABLE_MESSAGE: &str = "The sign-in could not be checked. Try again later.";
/// Port of the AWS Parameters and Secrets Lambda Extension when the environment does not say.
pub const DEFAULT_EXTENSION_PORT: u16 = 2773;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("set either SIGNING_KEY or SIGNING_KEY_SECRET_ID/SIGNING_KEY_SECRET_ARN, not both")]
    TwoKeySources,
    #[error("the signing key could not be read from Secrets Manager: {0}")]
    Secret(String),
    #[error("the signing key is not usable: {0}")]
    Key(#[from] deadbolt_client::ClientError),
}

/// Where the signing key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SIGNING_KEY`: the base64 key itself.
    Environment(String),
    /// `SIGNING_KEY_SECRET_ID` (or `_ARN`), read at init through the Parameters and Secrets
    /// Lambda Extension, which needs no SDK and answers from its cache.
    SecretsManager {
        secret_id: String,
        port: u16,
        session_token: Option<String>,
    },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment(_) => f.write_str("Environment(<redacted>)"),
            Self::SecretsManager {
                secret_id, port, ..
            } => f
                .debug_struct("SecretsManager")
                .field("secret_id", secret_id)
                .field("port", port)
                .finish_non_exhaustive(),
        }
    }
}

/// The app clients whose sign-ins are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppClients {
    /// `CLIENT_ID=*`: every app client of the pool.
    All,
    Listed(Vec<String>),
}

impl AppClients {
    pub fn covers(&self, client_id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Listed(ids) => ids.iter().any(|id| id == client_id),
        }
    }
}

/// Everything the trigger is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key: KeySource,
    /// The application's issuer as registered in Deadbolt (`APP_FQDN`, or `APP_URI`).
    pub issuer: String,
    pub clients: AppClients,
    pub api_uri: String,
    pub api_path: String,
    pub locked_message: String,
    pub unavailable_message: String,
    /// Let the sign-in through when the check gives no answer.
    pub fail_open: bool,
    /// Deadline of one check; the Lambda deadline shortens it further.
    pub timeout: Duration,
    /// `API_CA_FILE`: PEM certificates of a private authority trusted for the API, besides
    /// the public ones (a Deadbolt serving HTTPS with a company CA's certificate).
    pub api_ca_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`. An empty value counts as unset, because a deployment
    /// template passes empty strings for parameters the user left out.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));

        let secret_id = var("SIGNING_KEY_SECRET_ID").or_else(|| var("SIGNING_KEY_SECRET_ARN"));
        let key = match (var("SIGNING_KEY"), secret_id) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoKeySources),
            (Some(key), None) => KeySource::Environment(key),
            (None, Some(secret_id)) => KeySource::SecretsManager {
                secret_id,
                port: match var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") {
                    None => DEFAULT_EXTENSION_PORT,
                    Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                        name: "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                        reason: format!("{p:?} is not a port number"),
                    })?,
                },
                session_token: var("AWS_SESSION_TOKEN"),
            },
            (None, None) => return Err(ConfigError::Missing("SIGNING_KEY")),
        };

        let issuer = var("APP_FQDN")
            .or_else(|| var("APP_URI"))
            .ok_or(ConfigError::Missing("APP_FQDN"))?;

        let clients = required("CLIENT_ID")?;
        let clients = if clients == "*" {
            AppClients::All
        } else {
            let ids: Vec<String> = clients
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(String::from)
                .collect();
            if ids.is_empty() {
                return Err(ConfigError::Missing("CLIENT_ID"));
            }
            AppClients::Listed(ids)
        };

        let api_uri = required("API_URI")?;
        if !(api_uri.starts_with("https://") || api_uri.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "API_URI",
                reason: "must start with https:// (or http://)".into(),
            });
        }

        let fail_open = match var("FAIL_OPEN") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| ConfigError::Invalid {
                name: "FAIL_OPEN",
                reason: format!("{v:?} is neither true nor false"),
            })?,
        };

        let timeout = match var("TIMEOUT_MS") {
            None => DEFAULT_TIMEOUT,
            Some(v) => {
                let ms: u64 = v.parse().map_err(|_| ConfigError::Invalid {
                    name: "TIMEOUT_MS",
                    reason: format!("{v:?} is not a number of milliseconds"),
                })?;
                let t = Duration::from_millis(ms);
                if t.is_zero() || t > MAX_TIMEOUT {
                    return Err(ConfigError::Invalid {
                        name: "TIMEOUT_MS",
                        reason: format!(
                            "must be between 1 and {} (Cognito waits 5 s in all)",
                            MAX_TIMEOUT.as_millis()
                        ),
                    });
                }
                t
            }
        };

        Ok(Self {
            key,
            issuer,
            clients,
            api_uri,
            api_path: var("API_PATH").unwrap_or_else(|| DEFAULT_API_PATH.to_string()),
            locked_message: var("LOCKED_MESSAGE")
                .unwrap_or_else(|| DEFAULT_LOCKED_MESSAGE.to_string()),
            unavailable_message: var("UNAVAILABLE_MESSAGE")
                .unwrap_or_else(|| DEFAULT_UNAVAILABLE_MESSAGE.to_string()),
            fail_open,
            timeout,
            api_ca_file: var("API_CA_FILE").map(Into::into),
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("SIGNING_KEY", "c2VjcmV0LWtleS1ieXRlcw=="),
        ("APP_FQDN", "app.example.com"),
        ("CLIENT_ID", "1example23456789"),
        ("API_URI", "https://deadbolt.example.com"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn the_samples_variables_are_enough_and_defaults_fill_the_rest() {
        let s = Settings::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(
            s.key,
            KeySource::Environment("c2VjcmV0LWtleS1ieXRlcw==".into())
        );
        assert_eq!(s.issuer, "app.example.com");
        assert_eq!(
            s.clients,
            AppClients::Listed(vec!["1example23456789".into()])
        );
        assert_eq!(s.api_path, DEFAULT_API_PATH);
        assert_eq!(s.locked_message, DEFAULT_LOCKED_MESSAGE);
        assert!(!s.fail_open, "fail-closed unless asked");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.api_ca_file, None, "the public roots only");
        let s = Settings::from_lookup(lookup(&with(&[("API_CA_FILE", "/opt/ca.pem")]))).unwrap();
        assert_eq!(s.api_ca_file, Some("/opt/ca.pem".into()));
    }

    #[test]
    fn app_uri_stands_in_for_app_fqdn() {
        let env: Vec<_> = BASE
            .iter()
            .filter(|(k, _)| *k != "APP_FQDN")
            .copied()
            .collect();
        let mut env = env;
        env.push(("APP_URI", "https://app.example.com"));
        let s = Settings::from_lookup(lookup(&env)).unwrap();
        assert_eq!(s.issuer, "https://app.example.com");
    }

    #[test]
    fn client_ids_are_a_comma_separated_list_or_a_star() {
        let s = Settings::from_lookup(lookup(&with(&[("CLIENT_ID", " a1, b2 ,,c3 ")]))).unwrap();
        assert_eq!(
            s.clients,
            AppClients::Listed(vec!["a1".into(), "b2".into(), "c3".into()])
        );
        assert!(s.clients.covers("b2"));
        assert!(!s.clients.covers("b"));
        assert!(!s.clients.covers(""));
        let s = Settings::from_lookup(lookup(&with(&[("CLIENT_ID", "*")]))).unwrap();
        assert!(s.clients.covers("anything"));
        assert!(matches!(
            Settings::from_lookup(lookup(&with(&[("CLIENT_ID", " , ")]))),
            Err(ConfigError::Missing("CLIENT_ID"))
        ));
    }

    #[test]
    fn optional_settings_are_read_and_checked() {
        let s = Settings::from_lookup(lookup(&with(&[
            ("API_PATH", "/custom/check"),
            ("LOCKED_MESSAGE", "Locked by Deadbolt"),
            ("UNAVAILABLE_MESSAGE", "Try later"),
            ("FAIL_OPEN", "TRUE"),
            ("TIMEOUT_MS", "800"),
        ])))
        .unwrap();
        assert_eq!(s.api_path, "/custom/check");
        assert_eq!(s.locked_message, "Locked by Deadbolt");
        assert_eq!(s.unavailable_message, "Try later");
        assert!(s.fail_open);
        assert_eq!(s.timeout, Duration::from_millis(800));

        for (name, value) in [
            ("FAIL_OPEN", "maybe"),
            ("TIMEOUT_MS", "0"),
            ("TIMEOUT_MS", "5000"),
            ("TIMEOUT_MS", "2s"),
            ("API_URI", "deadbolt.example.com"),
        ] {
            let err = Settings::from_lookup(lookup(&with(&[(name, value)]))).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn missing_required_settings_are_named() {
        for name in ["APP_FQDN", "CLIENT_ID", "API_URI", "SIGNING_KEY"] {
            let env: Vec<_> = BASE.iter().filter(|(k, _)| *k != name).copied().collect();
            let err = Settings::from_lookup(lookup(&env)).unwrap_err();
            assert!(matches!(err, ConfigError::Missing(n) if n == name), "{err}");
        }
        // An empty value, as a template passes for a parameter left blank, is unset.
        let err = Settings::from_lookup(lookup(&with(&[("API_URI", "")]))).unwrap_err();
        assert!(matches!(err, ConfigError::Missing("API_URI")));
    }

    #[test]
    fn the_key_may_come_from_secrets_manager_instead() {
        let env: Vec<_> = BASE
            .iter()
            .filter(|(k, _)| *k != "SIGNING_KEY")
            .copied()
            .chain([
                ("SIGNING_KEY", ""),
                (
                    "SIGNING_KEY_SECRET_ARN",
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:deadbolt-AbCdEf",
                ),
                ("AWS_SESSION_TOKEN", "session-token"),
            ])
            .collect();
        let s = Settings::from_lookup(lookup(&env)).unwrap();
        assert_eq!(
            s.key,
            KeySource::SecretsManager {
                secret_id: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:deadbolt-AbCdEf"
                    .into(),
                port: DEFAULT_EXTENSION_PORT,
                session_token: Some("session-token".into()),
            }
        );
        let err = Settings::from_lookup(lookup(&with(&[("SIGNING_KEY_SECRET_ID", "deadbolt")])))
            .unwrap_err();
        assert!(matches!(err, ConfigError::TwoKeySources));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let s = Settings::from_lookup(lookup(BASE)).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("c2VjcmV0LWtleS1ieXRlcw=="), "{shown}");
        assert!(shown.contains("redacted"));
    }
}

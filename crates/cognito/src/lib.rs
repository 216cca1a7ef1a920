//! Deadbolt as an Amazon Cognito Pre authentication trigger: reads the sign-in from the event,
//! asks Deadbolt whether the account is locked, and lets the sign-in go on or refuses it.
//!
//! The `bootstrap` binary only wires this to `lambda_runtime`; everything it decides is here.
#![deny(clippy::unwrap_used)]

pub mod config;
pub mod event;
pub mod logging;
pub mod secret;
pub mod trigger;

pub use config::{ConfigError, Settings};
pub use event::PreAuthentication;
pub use trigger::{Outcome, Refusal, Trigger};

/// Tells the Lambda service why the function could not start (`/runtime/init/error`), so the
/// reason shows in the function's status rather than only in its logs.
pub async fn report_init_error(runtime_api: &str, error: &ConfigError) {
    let url = format!("http://{runtime_api}/2018-06-01/runtime/init/error");
    let body = serde_json::json!({
        "errorMessage": error.to_string(),
        "errorType": "Deadbolt.ConfigError",
    });
    let sent = async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(2))
            .build()?
            .post(url)
            .header("Lambda-Runtime-Function-Error-Type", "Deadbolt.ConfigError")
            .json(&body)
            .send()
            .await
    };
    if let Err(e) = sent.await {
        tracing::error!(error = %e.without_url(), "could not report the init error to the runtime");
    }
}

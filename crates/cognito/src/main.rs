//! The Lambda `bootstrap`: wires the Deadbolt trigger to the Lambda Runtime API.

use deadbolt_cognito::{logging, Trigger};
use deadbolt_core::{Clock, SystemClock};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let level = logging::level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref());
    tracing::subscriber::set_global_default(logging::subscriber(std::io::stdout, level))?;

    let trigger = match Trigger::from_env().await {
        Ok(trigger) => Arc::new(trigger),
        Err(error) => {
            tracing::error!(%error, "the trigger is not configured; every sign-in fails until it is");
            if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
                deadbolt_cognito::report_init_error(&api, &error).await;
            }
            return Err(error.into());
        }
    };

    // The event is taken raw so that, when the sign-in may go on, Cognito gets back exactly the
    // bytes it sent, fields unknown to any event type included.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let trigger = Arc::clone(&trigger);
        async move {
            let now = SystemClock.now();
            let (raw, context) = event.into_parts();
            let parsed = serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
            trigger
                .handle(&parsed, &context.request_id, context.deadline, now)
                .await
                .map_err(Diagnostic::from)?;
            Ok::<_, Diagnostic>(raw)
        }
    }))
    .await
}

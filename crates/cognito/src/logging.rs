//! Structured JSON logs, one object a line on stdout, where Lambda sends them to CloudWatch.
//! Nothing secret is ever a field: the key and tokens stay inside the checker.

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// The level from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's logging controls), INFO otherwise.
pub fn level(aws_lambda_log_level: Option<&str>) -> Level {
    match aws_lambda_log_level.map(str::to_ascii_uppercase).as_deref() {
        Some("TRACE") => Level::TRACE,
        Some("DEBUG") => Level::DEBUG,
        Some("WARN") => Level::WARN,
        Some("ERROR" | "FATAL") => Level::ERROR,
        _ => Level::INFO,
    }
}

/// A JSON subscriber writing to `writer`.
pub fn subscriber<W>(writer: W, level: Level) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(level)
        .with_writer(writer)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_log_level_is_honoured() {
        assert_eq!(level(None), Level::INFO);
        assert_eq!(level(Some("debug")), Level::DEBUG);
        assert_eq!(level(Some("FATAL")), Level::ERROR);
        assert_eq!(level(Some("nonsense")), Level::INFO);
    }
}

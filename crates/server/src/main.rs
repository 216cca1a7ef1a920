use clap::Parser;

// Many small allocations per check (tokens, JSON, attempts): mimalloc serves them faster than
// the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = deadbolt::cli::Cli::parse();
    init_logs();
    match cli.run().await {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deadbolt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries the commands' JSON): human-readable by default,
/// JSON lines with DEADBOLT_LOG_FORMAT=json; the level from RUST_LOG (default info).
fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Libraries that log through `log` reach these logs through this bridge, except the
    // PostgreSQL driver, whose debug records carry statement parameters (password hashes,
    // session hashes, CSRF tokens): it is never bridged, whatever RUST_LOG says.
    let _ = tracing_log::LogTracer::builder()
        .ignore_crate("tokio_postgres")
        .ignore_crate("postgres_protocol")
        .ignore_crate("postgres_types")
        .init();
    let _ = if std::env::var("DEADBOLT_LOG_FORMAT").as_deref() == Ok("json") {
        tracing::subscriber::set_global_default(builder.json().finish())
    } else {
        tracing::subscriber::set_global_default(builder.finish())
    };
}

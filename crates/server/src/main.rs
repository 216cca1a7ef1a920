use clap::Parser;

// Many small allocations per check (tokens, JSON, attempts): mimalloc serves them faster than
// the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Write;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = deadbolt::cli::Cli::parse();
    // Logs go to stderr (stdout carries the commands' JSON); a log line never fails the process.
    let logs = deadbolt::logs::init(deadbolt::logs::LogSettings {
        format: cli.log_format,
        filter: std::env::var("RUST_LOG").ok(),
        colour: std::env::var_os("NO_COLOR").is_none(),
    });
    let result = cli.run().await;
    // Queued log lines first, so that they come before the final error message.
    drop(logs);
    match result {
        Ok(Some(out)) => match writeln!(std::io::stdout().lock(), "{out}") {
            Ok(()) => ExitCode::SUCCESS,
            // The command's answer did not reach its reader: say it failed.
            Err(_) => ExitCode::FAILURE,
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            deadbolt::logs::to_stderr(&format!("deadbolt: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}

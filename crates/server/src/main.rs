use clap::Parser;

// Many small allocations per check (tokens, JSON, attempts): mimalloc serves them faster than
// the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The config file's settings become variables before anything else runs: the environment
    // is changed while the process has one thread.
    if let Err(e) = deadbolt::cli::config_file::apply() {
        deadbolt::logs::to_stderr(&format!("deadbolt: {e:#}\n"));
        return ExitCode::FAILURE;
    }
    let cli = deadbolt::cli::Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            deadbolt::logs::to_stderr(&format!("deadbolt: cannot start: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: deadbolt::cli::Cli) -> ExitCode {
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

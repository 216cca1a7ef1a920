use clap::Parser;

// Many small allocations per check (tokens, JSON, attempts): mimalloc serves them faster than
// the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Write;
use std::process::ExitCode;

/// mimalloc's `mi_option_purge_delay`: 15 in the enum of both its v2 and v3 headers (checked
/// against libmimalloc-sys 0.1.49's sources; the crate does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once rather than a second later: under a busy check
/// load the server's peak resident memory was about a third lower, at the same CPU a check
/// (BENCHMARKS.md, "The allocator's purge delay"). An operator's own `MIMALLOC_PURGE_DELAY`
/// wins: the allocator read it at start, before `main`.
fn give_back_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of the allocator's integer options, which it reads atomically; any
        // thread may set one at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

fn main() -> ExitCode {
    give_back_freed_memory();
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

#[cfg(test)]
mod tests {
    /// The option set is the purge delay: what `MIMALLOC_PURGE_DELAY` sets (the allocator
    /// read the tests' environment at start).
    #[test]
    fn the_purge_delay_is_the_option_set() {
        // SAFETY: reads one of the allocator's integer options.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(v) => assert_eq!(get().to_string(), v, "the option the variable names"),
            Err(_) => {
                super::give_back_freed_memory();
                assert_eq!(get(), 0);
                // And the index is the variable's option: this test again, in a process started
                // with the variable set.
                let exe = std::env::current_exe().expect("the test binary");
                let out = std::process::Command::new(exe)
                    .args(["--exact", "tests::the_purge_delay_is_the_option_set"])
                    .env("MIMALLOC_PURGE_DELAY", "7")
                    .output()
                    .expect("the test binary runs");
                // A name that no longer matches would run nothing and still succeed.
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains("1 passed"),
                    "{stdout}"
                );
            }
        }
    }
}

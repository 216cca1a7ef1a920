//! The operator CLI: every command prints one JSON object on stdout and exits 0, or prints a
//! message on stderr and exits non-zero. Each command is one function returning a view type;
//! `Cli::run` only picks the function.

mod account;
mod app;
mod args;
mod backup;
mod check;
mod company;
pub mod config_file;
mod operator;
mod person;
mod serve;

pub use args::{
    AccountCmd, AppCmd, AttemptsArgs, AttemptsCmd, Cli, Command, CompanyCmd, KeyCmd, OperatorCmd,
    PersonCmd, ScheduleCmd, SdkKeyCmd,
};
pub use check::CheckArgs;
pub use serve::ServeArgs;

use deadbolt_core::SystemClock;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

use crate::service::{MasterKeySource, Service};

impl Cli {
    fn key_source(&self) -> MasterKeySource {
        MasterKeySource {
            value: self.master_key.clone().filter(|v| !v.is_empty()),
            file: self.master_key_file.clone(),
        }
    }

    /// The store for a one-shot command. It does not listen for changes (it answers no checks,
    /// and a listener would be one more session for the servers' writes to wait for); its own
    /// writes still wait for the servers' listeners to apply them.
    async fn open(&self) -> anyhow::Result<Service> {
        let options = deadbolt_store::StoreOptions {
            listen: false,
            ..deadbolt_store::StoreOptions::default()
        };
        Ok(Service::open_with(
            &self.db,
            &options,
            &self.key_source(),
            Arc::new(SystemClock),
        )
        .await?)
    }

    /// Runs the command; the JSON it prints on success.
    pub async fn run(self) -> anyhow::Result<Option<Value>> {
        let out = match &self.command {
            Command::Serve(args) => {
                self.serve(args, None).await?;
                return Ok(None);
            }
            Command::Demo(args) => {
                let service = self.open().await?;
                let demo = serve::demo_setup(&service).await?;
                drop(service);
                self.serve(args, Some(demo)).await?;
                return Ok(None);
            }
            Command::Check(args) => view(check::check(args).await?)?,
            Command::Operator(c) => operator::run(&self.open().await?, c).await?,
            Command::Company(c) => company::run(&self.open().await?, c).await?,
            Command::SdkKey(c) => company::run_sdk_key(&self.open().await?, c).await?,
            Command::App(c) => app::run(&self.open().await?, c).await?,
            Command::Key(c) => app::run_key(&self.open().await?, c).await?,
            Command::Person(c) => person::run(&self.open().await?, c).await?,
            Command::Schedule(c) => person::run_schedule(&self.open().await?, c).await?,
            Command::Account(c) => account::run(&self.open().await?, c).await?,
            Command::Attempts(a) => match (&a.cmd, &a.app) {
                (Some(AttemptsCmd::Prune { before }), _) => {
                    view(account::prune_attempts(&self.open().await?, before).await?)?
                }
                (None, Some(app)) => {
                    view(account::attempts(&self.open().await?, app, a.limit).await?)?
                }
                (None, None) => anyhow::bail!(
                    "deadbolt attempts needs --app ID (or: attempts prune --before DATE)"
                ),
            },
            Command::Backup { to } => view(backup::backup(&self, to).await?)?,
            Command::Restore { from } => view(backup::restore(&self, from).await?)?,
        };
        Ok(Some(out))
    }
}

/// A command's view as the JSON printed. Through a `Value` on purpose: serde_json (without its
/// `preserve_order` feature) prints an object's keys sorted, at every depth, records of the store
/// included, which is the order the CLI has always printed and scripts may compare.
fn view(out: impl Serialize) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(out)?)
}

/// A new signing key or SDK key: the only time its secret is shown.
#[derive(Serialize)]
struct KeyCreated {
    id: String,
    secret: String,
}

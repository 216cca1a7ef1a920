//! `deadbolt check`: asks a running Deadbolt API about an account, signing like the Cognito
//! trigger; it never opens a store.

use anyhow::{bail, Context};
use clap::Args;
use deadbolt_client::ClientError;
use deadbolt_core::duration::parse_duration;
use deadbolt_core::{Clock, SystemClock};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Base URL of the Deadbolt API (http:// or https://); also the token's audience.
    #[arg(long)]
    pub api: String,
    /// The application's issuer, as registered.
    #[arg(long)]
    pub issuer: String,
    /// The application's signing key (base64); or DEADBOLT_SIGNING_KEY.
    #[arg(long, env = "DEADBOLT_SIGNING_KEY", hide_env_values = true)]
    pub key: String,
    /// The account to ask about (the token's sub).
    #[arg(long)]
    pub account: String,
    /// The check path on the API.
    #[arg(long, default_value = deadbolt_client::DEFAULT_API_PATH)]
    pub path: String,
    /// The sign-in's IP address, sent as userIP.
    #[arg(long)]
    pub ip: Option<String>,
    /// The sign-in's device, sent as userDevice.
    #[arg(long)]
    pub device: Option<String>,
    /// The sign-in's location, sent as userLocation.
    #[arg(long)]
    pub location: Option<String>,
    /// How long to wait for the answer: 5s, 1m.
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    // `check` asks a server and never opens a store: these shadow the global store flags so that
    // its help does not offer them (an argument a subcommand defines is not propagated to it).
    #[arg(long = "db", id = "db", hide = true)]
    _db: Option<String>,
    #[arg(long = "master-key-file", id = "master_key_file", hide = true)]
    _master_key_file: Option<PathBuf>,
}

/// What the API answered. `enrolled` and `reason` come with the answers of servers that explain
/// them.
#[derive(Serialize)]
pub(super) struct Answer {
    account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enrolled: Option<bool>,
    locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub(super) async fn check(args: &CheckArgs) -> anyhow::Result<Answer> {
    let timeout = parse_duration(&args.timeout)?.to_std().context("timeout")?;
    let api = args.api.trim();
    let lower = api.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        bail!("--api {api:?} has no scheme: add http:// or https:// (for example https://{api})");
    }
    let checker = deadbolt_client::Checker::new(deadbolt_client::CheckerConfig {
        api_uri: api.to_string(),
        api_path: args.path.clone(),
        issuer: args.issuer.clone(),
        signing_key_b64: args.key.clone(),
        timeout,
        extra_roots_pem: None,
    })?;
    let sign_in = deadbolt_client::SignIn {
        ip: args.ip.clone(),
        device: args.device.clone(),
        location: args.location.clone(),
        integration_type: Some("deadbolt-cli".into()),
        ..Default::default()
    };
    let url = checker.url();
    match checker
        .check_explained(&args.account, &sign_in, SystemClock.now())
        .await
    {
        Ok((locked, reason)) => {
            // Allowed or denied only by the application's policy for accounts it has not
            // enrolled: worth saying, since a typo in --account looks like "not locked".
            let enrolled = reason.as_ref().map(|r| !r.starts_with("unenrolled"));
            if enrolled == Some(false) {
                eprintln!(
                    "note: {:?} is not enrolled in this application; the answer is its policy for unenrolled accounts",
                    args.account
                );
            }
            Ok(Answer {
                account: args.account.clone(),
                enrolled,
                locked,
                reason,
            })
        }
        Err(ClientError::Transport(e)) if plain_http_behind_https(&e) => {
            bail!("{url}: the server speaks plain HTTP, not HTTPS: use http:// in --api ({e})")
        }
        Err(ClientError::Transport(e)) => bail!("cannot reach {url}: {}", e.replace("<api>", url)),
        Err(ClientError::Timeout(d)) => bail!("{url} did not answer within {d:?}"),
        Err(e @ ClientError::Status { .. }) => bail!("{url}: {e}"),
        Err(e) => bail!("{e}"),
    }
}

/// Whether a failed TLS handshake means the server answered in plain HTTP.
fn plain_http_behind_https(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "invalidcontenttype",
        "corrupt message",
        "wrong version number",
        "http request",
    ]
    .iter()
    .any(|s| e.contains(s))
}

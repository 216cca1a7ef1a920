//! `deadbolt serve` and `deadbolt demo`: the server's flags, the line it prints once it listens,
//! and the demo's company, application and accounts.

use clap::Args;
use deadbolt_core::duration::parse_duration;
use deadbolt_core::{AccountState, SystemClock, UnenrolledPolicy};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;

use super::Cli;
use crate::service::{By, Service};
use crate::{Config, Server};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DEADBOLT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The API's public URL (host:port, with or without scheme): the audience tokens must name.
    #[arg(long, env = "DEADBOLT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Checks per second per application (bursts of twice that); 0 for no limit.
    #[arg(long, env = "DEADBOLT_RATE_LIMIT", default_value_t = 10_000)]
    pub rate_limit: u32,
    /// How long a request may wait on the store before it is answered 503 (`2s`, `500ms`).
    #[arg(long, env = "DEADBOLT_STORE_TIMEOUT", default_value = "2s", value_parser = parse_store_timeout)]
    pub store_timeout: std::time::Duration,
    /// PostgreSQL: connections in the pool, per server process (the change listener takes one
    /// more). Keep replicas × (this + 1) under the database's max_connections.
    #[arg(long, env = "DEADBOLT_PG_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub pg_pool_size: u16,
    /// PostgreSQL: how long opening a connection may take (`5s`); a `connect_timeout` in the
    /// URL wins.
    #[arg(long, env = "DEADBOLT_PG_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub pg_connect_timeout: std::time::Duration,
    /// Serve Prometheus metrics at /metrics on this address (such as 127.0.0.1:9090); off
    /// when not given. Never on the public address.
    #[arg(long, env = "DEADBOLT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Open connections at most (lowered to fit the open-files limit); more are answered 503.
    #[arg(long, env = "DEADBOLT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64), at most half the above; 0 for no
    /// such cap (behind a load balancer, every connection comes from it).
    #[arg(long, env = "DEADBOLT_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's head once it began (a new connection: its first
    /// request).
    #[arg(long, env = "DEADBOLT_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: std::time::Duration,
    /// Time a client has to send a request's body once the server waits for it.
    #[arg(long, env = "DEADBOLT_BODY_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub body_timeout: std::time::Duration,
    /// A connection with no request in progress is closed after this time.
    #[arg(long, env = "DEADBOLT_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: std::time::Duration,
    /// Serve HTTPS with this PEM certificate (the server's first, then its intermediates);
    /// needs --tls-key. Reloaded when the file changes.
    #[arg(long, env = "DEADBOLT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, env = "DEADBOLT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<String>,
    /// The SMTP relay for the portal's emails: `smtp://host:port` (no TLS),
    /// `smtp+starttls://user:password@host:587` or `smtps://user:password@host:465`; without
    /// it, emails are written to the log.
    #[arg(long, env = "DEADBOLT_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The SMTP relay's user name, when not in --smtp-url.
    #[arg(long, env = "DEADBOLT_SMTP_USER")]
    pub smtp_user: Option<String>,
    /// The SMTP relay's password, when not in --smtp-url (better in the environment).
    #[arg(long, env = "DEADBOLT_SMTP_PASSWORD", hide_env_values = true, value_parser = redacted)]
    pub smtp_password: Option<Redacted>,
    /// At most one alert email per person and account in this time; later blocked sign-ins
    /// go into one digest when it ends.
    #[arg(long, env = "DEADBOLT_ALERT_WINDOW", default_value = "10m", value_parser = duration)]
    pub alert_window: std::time::Duration,
    /// The sender of the portal's emails (`Deadbolt <deadbolt@example.com>`).
    #[arg(long, env = "DEADBOLT_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// How long attempts are kept (`90d`, `12h`); older ones are removed in the background.
    /// `0` keeps them for ever.
    #[arg(long, env = "DEADBOLT_ATTEMPTS_RETENTION", default_value = "90d", value_parser = retention)]
    pub attempts_retention: Retention,
}

/// A secret flag's value: never printed by `Debug`.
#[derive(Clone)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn redacted(s: &str) -> Result<Redacted, String> {
    Ok(Redacted(s.to_string()))
}

/// How long attempts are kept; `None`: for ever.
#[derive(Debug, Clone, Copy)]
pub struct Retention(pub Option<std::time::Duration>);

/// `0` (for ever) or a duration of at least an hour: a shorter one is more likely a typo
/// (`90m` for `90d`) than a wish to keep attempts for minutes.
fn retention(s: &str) -> Result<Retention, String> {
    if s.trim() == "0" {
        return Ok(Retention(None));
    }
    let d = duration(s)?;
    if d < std::time::Duration::from_secs(3600) {
        return Err(format!(
            "attempts retention {s:?} is under an hour: write it like 90d, or 0 to keep them for ever"
        ));
    }
    Ok(Retention(Some(d)))
}

/// A duration flag: `500ms`, `90s`, `15m`; at least a millisecond.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d = match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("invalid duration {s:?}: write it like 500ms, 90s or 15m"))?,
        None => parse_duration(s)
            .map_err(|e| e.to_string())?
            .to_std()
            .map_err(|e| e.to_string())?,
    };
    if d.is_zero() {
        return Err(format!("{s} is not a positive duration"));
    }
    Ok(d)
}

/// A store deadline: a duration from 10 ms to 10 minutes.
fn parse_store_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = duration(s)?;
    if d < std::time::Duration::from_millis(10) || d > std::time::Duration::from_secs(600) {
        return Err(format!("store timeout {s:?} out of range (10ms to 10m)"));
    }
    Ok(d)
}

impl Cli {
    pub(super) async fn serve(&self, args: &ServeArgs, demo: Option<Demo>) -> anyhow::Result<()> {
        let tls = match (given(&args.tls_cert), given(&args.tls_key)) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsConfig::new(cert, key)),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!(
                "--tls-cert (DEADBOLT_TLS_CERT) needs --tls-key (DEADBOLT_TLS_KEY): give both for HTTPS, or neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--tls-key (DEADBOLT_TLS_KEY) needs --tls-cert (DEADBOLT_TLS_CERT): give both for HTTPS, or neither"
            ),
        };
        let https = tls.is_some();
        let config = Config {
            db_url: self.db.clone(),
            listen: args.listen.clone(),
            public_url: args.public_url.clone(),
            master_key: self.key_source(),
            rate_limit: args.rate_limit,
            store_timeout: args.store_timeout,
            attempts_retention: args.attempts_retention.0,
            pg_pool_size: args.pg_pool_size.into(),
            pg_connect_timeout: args.pg_connect_timeout,
            metrics_listen: args.metrics_listen.clone(),
            connections: crate::conn::Limits {
                max_connections: args.max_connections,
                max_per_ip: args.max_connections_per_ip,
                header_timeout: args.header_timeout,
                body_timeout: args.body_timeout,
                idle_timeout: args.idle_timeout,
            },
            portal: crate::portal::PortalConfig {
                public_url: given(&args.public_url),
                mail: crate::mail::MailConfig {
                    smtp_url: given(&args.smtp_url),
                    from: given(&args.mail_from),
                    user: given(&args.smtp_user),
                    password: args.smtp_password.as_ref().map(|p| p.0.clone()),
                },
            },
            tls,
            alerts: crate::alerts::AlertsConfig {
                window: args.alert_window,
                ..crate::alerts::AlertsConfig::default()
            },
            ..Config::new(&self.db)
        };
        let app = Server::build(config, Arc::new(SystemClock)).await?;
        warn_collisions(app.deadbolt()).await;
        let url = app.url();
        let mut out = json!({"listening": app.addr().to_string(), "url": url, "audiences": app.audiences(),
                   "max_connections": app.connection_limits().max_connections,
                   "max_connections_per_ip": app.connection_limits().max_per_ip});
        if let Some(m) = app.metrics_addr() {
            out["metrics"] = json!(format!("http://{m}/metrics"));
        }
        if let Some(Demo {
            app_id,
            key,
            admin,
            person,
        }) = demo
        {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "deadbolt".into());
            let db_flag = if self.db == "sqlite://deadbolt.db" {
                String::new()
            } else {
                format!(" --db {}", self.db)
            };
            let cmd = |account: &str| {
                format!("{exe} check --api {url} --issuer {DEMO_ISSUER} --key {key} --account {account}")
            };
            let unlock =
                format!("{exe}{db_flag} account unlock --app {app_id} --account alice --for 15m");
            out["demo"] = json!({"app": app_id, "issuer": DEMO_ISSUER, "key": key,
                                 "check_locked": cmd("alice"), "check_unlocked": cmd("bob"), "unlock": unlock,
                                 "admin": {"email": admin.0, "password": admin.1},
                                 "person": {"email": person.0, "password": person.1}});
            crate::logs::to_stderr(&format!(
                "\nDeadbolt demo is running on {url}.\n\
                 alice is locked, bob is not. In another terminal:\n\n  {}\n  {}\n\n\
                 Unlock alice for 15 minutes and ask again:\n\n  {unlock}\n\n\
                 Sign in to the portal at {url}/login as the demo company's admin\n\n  \
                 email {}  password {}\n\n\
                 or as the person who holds alice and bob\n\n  \
                 email {}  password {}\n\n\
                 Stop with Ctrl-C.\n",
                cmd("alice"),
                cmd("bob"),
                admin.0,
                admin.1,
                person.0,
                person.1,
            ));
        }
        // The address line is for whoever started the server; a closed stdout must not stop it.
        let _ = writeln!(std::io::stdout().lock(), "{out}");
        let base = given(&args.public_url)
            .map(|u| crate::with_scheme(&u, https))
            .unwrap_or_else(|| url.clone());
        if let Some(link) = crate::portal::first_run_link(app.deadbolt(), &base).await? {
            crate::logs::to_stderr(&format!(
                "\nNo portal operator yet: open {link} to create one (the link works once).\n"
            ));
        }
        app.run_until(crate::shutdown_signal()).await
    }
}

const DEMO_ISSUER: &str = "demo.deadbolt.local";

pub(super) struct Demo {
    app_id: String,
    key: String,
    /// Portal logins for the demo data: its company's admin, and the person who holds alice
    /// and bob. (email, password), new passwords on every run.
    admin: (String, String),
    person: (String, String),
}

const DEMO_ADMIN: &str = "admin@demo.deadbolt.local";
const DEMO_PERSON: &str = "alice@demo.deadbolt.local";

/// A person of the demo with a new password (created, or the one from an earlier run): a login
/// that works at once, its email counted as verified (the demo sends no email).
async fn demo_login(service: &Service, email: &str) -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let password = format!(
        "demo-{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    );
    let person = match service.find_person_by_email(email).await? {
        Some(p) => p,
        None => service.create_person(email, None, None).await?,
    };
    let hash = crate::crypto::hash_password(&password)?;
    service
        .set_password_hash(&person.id, &hash, true, service.now())
        .await?;
    Ok((person.id, password))
}

/// The demo's company, application and accounts (reused on later runs), and a new key.
pub(super) async fn demo_setup(service: &Service) -> anyhow::Result<Demo> {
    let norm = deadbolt_core::normalize::normalize_name(DEMO_ISSUER);
    let app = match service.application_by_issuer(&norm).await? {
        Some(app) => app,
        None => {
            let company = service.create_company("Demo company").await?;
            service
                .create_application(
                    &company.id,
                    DEMO_ISSUER,
                    Some("Demo app"),
                    UnenrolledPolicy::Allow,
                    AccountState::Unlocked,
                )
                .await?
        }
    };
    let (admin_id, admin_password) = demo_login(service, DEMO_ADMIN).await?;
    service
        .grant_role(&admin_id, "admin", &app.company_id, service.now())
        .await?;
    let (_, person_password) = demo_login(service, DEMO_PERSON).await?;
    for account in ["alice", "bob"] {
        service
            .enroll(&By::CLI, &app.id, account, Some(DEMO_PERSON))
            .await?;
    }
    service.lock(&By::CLI, &app.id, "alice").await?;
    service.unlock(&By::CLI, &app.id, "bob", None).await?;
    let (_, key) = service.create_signing_key(&app.id).await?;
    Ok(Demo {
        app_id: app.id,
        key,
        admin: (DEMO_ADMIN.into(), admin_password),
        person: (DEMO_PERSON.into(), person_password),
    })
}

/// Names that fold together are enforced as one (locked if any is) but should be merged: say so.
async fn warn_collisions(service: &Service) {
    match service.account_collisions(None).await {
        Ok(list) if !list.is_empty() => {
            for c in &list {
                tracing::warn!(
                    application = %c.app_id, issuer = %c.issuer, names = ?c.names,
                    "enrolled names that are one account once compared without case; a check for any of them answers locked if any of them would: merge them with `deadbolt account merge`"
                );
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not list account names that fold together"),
    }
}

/// A setting given with something in it (a blank variable is as good as none).
fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|v| !v.trim().is_empty())
}

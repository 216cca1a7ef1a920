//! The operator CLI: every command prints one JSON object on stdout and exits 0, or prints a
//! message on stderr and exits non-zero.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use deadbolt_core::duration::parse_duration;
use deadbolt_core::{AccountNames, AccountState, Schedule, SystemClock, UnenrolledPolicy};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ops::{Deadbolt, MasterKeySource};
use crate::{Application, Config};

#[derive(Parser, Debug)]
#[command(
    name = "deadbolt",
    version,
    about = "Deadbolt: account protection — people lock the accounts they hold at your applications."
)]
pub struct Cli {
    /// Store URL: sqlite://FILE (the default, created on first use) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "DEADBOLT_DB",
        default_value = "sqlite://deadbolt.db"
    )]
    pub db: String,
    /// File holding the master key (base64 of 32 bytes); created when missing. The key itself can
    /// be given in DEADBOLT_MASTER_KEY. Default for SQLite: the store file's name + ".key".
    #[arg(long, global = true, env = "DEADBOLT_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (base64 of 32 bytes); give it in the environment, where other users
    /// of the host cannot list it.
    #[arg(
        long,
        global = true,
        env = "DEADBOLT_MASTER_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// Log lines on stderr: `text`, or `json` (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        env = "DEADBOLT_LOG_FORMAT",
        value_enum,
        default_value_t = crate::logs::LogFormat::Text
    )]
    pub log_format: crate::logs::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the check API, the SDK API and the portal.
    Serve(ServeArgs),
    /// Create a demo company, application, key and a locked account, then serve.
    Demo(ServeArgs),
    /// Companies: the tenants, each with its applications, admins and SDK keys.
    #[command(subcommand)]
    Company(CompanyCmd),
    /// Applications: what asks Deadbolt at sign-in, named by the issuer of its tokens.
    #[command(subcommand)]
    App(AppCmd),
    /// Signing keys of applications (the check tokens' HMAC keys).
    #[command(subcommand)]
    Key(KeyCmd),
    /// SDK keys of companies (x-nl3-server-api-token).
    #[command(subcommand, name = "sdk-key")]
    SdkKey(SdkKeyCmd),
    /// People: who lock and unlock their accounts in the portal.
    #[command(subcommand)]
    Person(PersonCmd),
    /// Enrolled accounts of an application: enrol, lock, unlock, show, merge.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Weekly lock windows of a person (all accounts) or of one account.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// An application's attempts, newest first.
    Attempts {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// How many attempts to print.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Ask a Deadbolt API whether an account is locked, signing like the Cognito trigger.
    Check(CheckArgs),
    /// The portal's operator account (creates companies, invites their admins).
    #[command(subcommand)]
    Operator(OperatorCmd),
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Create (or promote) the operator account.
    Create {
        /// The operator's email (their portal sign-in).
        #[arg(long)]
        email: String,
        /// At least 10 characters; or DEADBOLT_OPERATOR_PASSWORD.
        #[arg(long, env = "DEADBOLT_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Print a one-time link that creates the operator account.
    Invite {
        /// The operator's email (their portal sign-in).
        #[arg(long)]
        email: String,
        /// The portal's public URL, which the link starts with.
        #[arg(
            long,
            env = "DEADBOLT_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
}

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
    /// The SMTP relay for the portal's emails (`smtp://host:port`, no TLS); without it, emails
    /// are written to the log.
    #[arg(long, env = "DEADBOLT_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The sender of the portal's emails (`Deadbolt <deadbolt@example.com>`).
    #[arg(long, env = "DEADBOLT_MAIL_FROM")]
    pub mail_from: Option<String>,
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

#[derive(Subcommand, Debug)]
pub enum CompanyCmd {
    /// Create a company; prints its id.
    Create {
        /// The company's name as shown in the portal.
        #[arg(long)]
        name: String,
    },
    /// Every company.
    List,
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Create an application of a company; prints its id.
    Create {
        /// The company's id.
        #[arg(long)]
        company: String,
        /// The issuer its tokens carry: its FQDN or URI.
        #[arg(long)]
        issuer: String,
        /// A name for people to read (default: the issuer).
        #[arg(long)]
        name: Option<String>,
        /// What a check answers for accounts not enrolled: allow or deny.
        #[arg(long, default_value = "allow")]
        unenrolled: UnenrolledPolicy,
        /// The state of newly enrolled accounts: locked or unlocked.
        #[arg(long, default_value = "unlocked")]
        default_state: AccountState,
        /// How account names compare: case-insensitive (after Unicode NFC and case folding) or exact.
        #[arg(long, default_value = "case-insensitive")]
        account_names: AccountNames,
    },
    /// Every application, or a company's.
    List {
        /// Only this company's (its id).
        #[arg(long)]
        company: Option<String>,
    },
    /// One application's settings.
    Show {
        /// The application's id.
        #[arg(long)]
        id: String,
    },
    /// Change an application's settings.
    Set {
        /// The application's id.
        #[arg(long)]
        id: String,
        /// What a check answers for accounts not enrolled: allow or deny.
        #[arg(long)]
        unenrolled: Option<UnenrolledPolicy>,
        /// The state of newly enrolled accounts: locked or unlocked.
        #[arg(long)]
        default_state: Option<AccountState>,
        /// Record decisions but never enforce them.
        #[arg(long)]
        audit_mode: Option<bool>,
        /// How account names compare: case-insensitive or exact. Refused, with the names, while
        /// two enrolled names would be one account (merge them first).
        #[arg(long)]
        account_names: Option<AccountNames>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a signing key; its secret is printed once.
    Create {
        /// The application's id.
        #[arg(long)]
        app: String,
    },
    /// Revoke a signing key: tokens it signed are refused from now on.
    Revoke {
        /// The key's id.
        #[arg(long)]
        id: String,
    },
    /// An application's signing keys (ids and dates, never secrets).
    List {
        /// The application's id.
        #[arg(long)]
        app: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SdkKeyCmd {
    /// Create an SDK key; its secret is printed once.
    Create {
        /// The company's id.
        #[arg(long)]
        company: String,
    },
    /// Revoke an SDK key.
    Revoke {
        /// The key's id.
        #[arg(long)]
        id: String,
    },
    /// A company's SDK keys (ids and dates, never secrets).
    List {
        /// The company's id.
        #[arg(long)]
        company: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PersonCmd {
    /// Create a person.
    Create {
        /// Their email (their portal sign-in).
        #[arg(long)]
        email: String,
        /// Portal password (at least 10 characters); or DEADBOLT_PASSWORD.
        #[arg(long, env = "DEADBOLT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// IANA time zone their schedules are read in, e.g. Europe/Paris.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
    },
    /// One person.
    Show {
        /// Their email.
        #[arg(long)]
        email: String,
    },
    /// People, by email.
    List {
        /// How many to print.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Turn on the master lock: every account of the person is locked.
    LockAll {
        /// Their email.
        #[arg(long)]
        email: String,
    },
    /// Turn the master lock off: each account follows its own state again.
    UnlockAll {
        /// Their email.
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Enrol an account (another spelling of an enrolled name is that account).
    Enroll {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The account's name in the application (the tokens' sub).
        #[arg(long)]
        account: String,
        /// The person (email) the account belongs to.
        #[arg(long)]
        person: Option<String>,
    },
    /// Lock an account.
    Lock {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The account's name (any spelling, when names are case-insensitive).
        #[arg(long)]
        account: String,
    },
    /// Unlock an account: for good, for a while (--for) or for one sign-in (--once).
    Unlock {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The account's name (any spelling, when names are case-insensitive).
        #[arg(long)]
        account: String,
        /// Unlock only for this long (90s, 15m, 2h); it locks again by itself.
        #[arg(long = "for", conflicts_with = "once")]
        for_: Option<String>,
        /// Unlock for the next sign-in only: the check that lets it in locks it again.
        #[arg(long)]
        once: bool,
    },
    /// An account's state and what a check would answer now, and why.
    Show {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The account's name (any spelling, when names are case-insensitive).
        #[arg(long)]
        account: String,
    },
    /// An application's enrolled accounts.
    List {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// Only names or emails containing this (in any case).
        #[arg(long)]
        search: Option<String>,
        /// How many to print.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Enrolled names that are spellings of one name and not merged yet (locked if any is).
    Collisions {
        /// Only this application's (its id).
        #[arg(long)]
        app: Option<String>,
    },
    /// Merge two spellings of one name into one account: locked if either was.
    Merge {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The name that stays, exactly as enrolled.
        #[arg(long)]
        into: String,
        /// The name merged into it and removed, exactly as enrolled.
        #[arg(long)]
        from: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Add a weekly lock window, e.g. --days all --window 23:00-07:00, or --days weekends --window 00:00-00:00.
    Add {
        /// The person's email.
        #[arg(long)]
        person: String,
        /// Only this account (with --account); otherwise all the person's accounts.
        #[arg(long, requires = "account")]
        app: Option<String>,
        /// The account's name (with --app).
        #[arg(long, requires = "app")]
        account: Option<String>,
        /// mon,tue,… or weekdays, weekends, all.
        #[arg(long)]
        days: String,
        /// HH:MM-HH:MM in the person's time zone; past midnight wraps into the next day.
        #[arg(long)]
        window: String,
    },
    /// A person's schedules.
    List {
        /// The person's email.
        #[arg(long)]
        person: String,
    },
    /// Delete a schedule.
    Delete {
        /// The schedule's id.
        #[arg(long)]
        id: String,
    },
}

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

impl Cli {
    fn key_source(&self) -> MasterKeySource {
        MasterKeySource {
            value: self.master_key.clone().filter(|v| !v.is_empty()),
            file: self.master_key_file.clone(),
        }
    }

    async fn open(&self) -> anyhow::Result<Deadbolt> {
        Ok(Deadbolt::open(&self.db, &self.key_source(), Arc::new(SystemClock)).await?)
    }

    /// Runs the command; the JSON it prints on success.
    pub async fn run(self) -> anyhow::Result<Option<Value>> {
        Ok(Some(match &self.command {
            Command::Serve(args) => {
                self.serve(args, None).await?;
                return Ok(None);
            }
            Command::Demo(args) => {
                let db = self.open().await?;
                let demo = demo_setup(&db).await?;
                drop(db);
                self.serve(args, Some(demo)).await?;
                return Ok(None);
            }
            Command::Check(args) => return check(args).await.map(Some),
            Command::Operator(c) => {
                let db = self.open().await?;
                match c {
                    OperatorCmd::Create { email, password } => {
                        let p = crate::portal::create_operator(&db, email, password).await?;
                        json!({"id": p.id, "email": p.email})
                    }
                    OperatorCmd::Invite { email, public_url } => {
                        json!({"link": crate::portal::invite_operator(&db, public_url, email).await?})
                    }
                }
            }
            Command::Company(c) => {
                let db = self.open().await?;
                match c {
                    CompanyCmd::Create { name } => json!({"id": db.create_company(name).await?.id}),
                    CompanyCmd::List => json!({"companies": db.store.companies().await?}),
                }
            }
            Command::App(c) => {
                let db = self.open().await?;
                match c {
                    AppCmd::Create {
                        company,
                        issuer,
                        name,
                        unenrolled,
                        default_state,
                        account_names,
                    } => {
                        let mut app = db
                            .create_application(
                                company,
                                issuer,
                                name.as_deref(),
                                *unenrolled,
                                *default_state,
                            )
                            .await?;
                        if app.account_names != *account_names {
                            app = db.set_account_names(&app.id, *account_names).await?;
                        }
                        json!({"id": app.id, "issuer": app.issuer, "account_names": app.account_names})
                    }
                    AppCmd::List { company } => {
                        json!({"applications": db.store.applications(company.as_deref()).await?})
                    }
                    AppCmd::Show { id } => serde_json::to_value(db.application(id).await?)?,
                    AppCmd::Set {
                        id,
                        unenrolled,
                        default_state,
                        audit_mode,
                        account_names,
                    } => {
                        // Refused (nothing changed) while two enrolled names would be one account.
                        if let Some(names) = account_names {
                            db.set_account_names(id, *names).await?;
                        }
                        let app = db.application(id).await?;
                        let settings = deadbolt_store::AppSettings {
                            unenrolled: unenrolled.unwrap_or(app.unenrolled),
                            default_state: default_state.unwrap_or(app.default_state),
                            audit_mode: audit_mode.unwrap_or(app.audit_mode),
                        };
                        serde_json::to_value(db.store.update_application(id, &settings).await?)?
                    }
                }
            }
            Command::Key(c) => {
                let db = self.open().await?;
                match c {
                    KeyCmd::Create { app } => {
                        let (id, secret) = db.create_signing_key(app).await?;
                        json!({"id": id, "secret": secret})
                    }
                    KeyCmd::Revoke { id } => {
                        json!({"id": id, "app": db.revoke_signing_key(id).await?, "revoked": true})
                    }
                    KeyCmd::List { app } => {
                        let keys: Vec<Value> = db
                            .store
                            .signing_keys(app)
                            .await?
                            .into_iter()
                            .map(|k| json!({"id": k.id, "created_at": k.created_at, "revoked_at": k.revoked_at, "last_used_at": k.last_used_at}))
                            .collect();
                        json!({"keys": keys})
                    }
                }
            }
            Command::SdkKey(c) => {
                let db = self.open().await?;
                match c {
                    SdkKeyCmd::Create { company } => {
                        let (id, secret) = db.create_sdk_key(company).await?;
                        json!({"id": id, "secret": secret})
                    }
                    SdkKeyCmd::Revoke { id } => {
                        db.revoke_sdk_key(id).await?;
                        json!({"id": id, "revoked": true})
                    }
                    SdkKeyCmd::List { company } => {
                        let keys: Vec<Value> = db
                            .store
                            .sdk_keys(company)
                            .await?
                            .into_iter()
                            .map(|k| json!({"id": k.id, "created_at": k.created_at, "revoked_at": k.revoked_at}))
                            .collect();
                        json!({"keys": keys})
                    }
                }
            }
            Command::Person(c) => {
                let db = self.open().await?;
                match c {
                    PersonCmd::Create {
                        email,
                        password,
                        time_zone,
                    } => {
                        let p = db
                            .create_person(email, password.as_deref(), Some(time_zone))
                            .await?;
                        json!({"id": p.id, "email": p.email})
                    }
                    PersonCmd::Show { email } => {
                        serde_json::to_value(db.person_by_email(email).await?)?
                    }
                    PersonCmd::List { limit } => {
                        json!({"persons": db.store.persons(*limit).await?})
                    }
                    PersonCmd::LockAll { email } => {
                        json!({"email": db.set_master_lock(email, true).await?.email, "master_lock": true})
                    }
                    PersonCmd::UnlockAll { email } => {
                        json!({"email": db.set_master_lock(email, false).await?.email, "master_lock": false})
                    }
                }
            }
            Command::Account(c) => {
                let db = self.open().await?;
                match c {
                    AccountCmd::Enroll {
                        app,
                        account,
                        person,
                    } => {
                        let (acc, created) = db.enroll(app, account, person.as_deref()).await?;
                        json!({"id": acc.id, "account": acc.account, "state": acc.state, "created": created})
                    }
                    AccountCmd::Lock { app, account } => {
                        db.lock(app, account).await?;
                        json!({"app": app, "account": account, "locked": true})
                    }
                    AccountCmd::Unlock {
                        app,
                        account,
                        once: true,
                        ..
                    } => {
                        db.unlock_once(app, account).await?;
                        json!({"app": app, "account": account, "locked": false, "relock_after_use": true})
                    }
                    AccountCmd::Unlock {
                        app, account, for_, ..
                    } => {
                        let window = for_.as_deref().map(parse_duration).transpose()?;
                        let until = db.unlock(app, account, window).await?;
                        json!({"app": app, "account": account, "locked": false, "unlocked_until": until})
                    }
                    AccountCmd::Show { app, account } => {
                        let application = db.application(app).await?;
                        let acc = db.account(app, account).await?;
                        let d = db.status(&application, account).await?;
                        json!({"account": acc, "locked": d.locked, "reason": d.reason.as_str()})
                    }
                    AccountCmd::List { app, search, limit } => {
                        db.application(app).await?;
                        json!({"accounts": db.store.accounts(app, search.as_deref(), (*limit).clamp(1, 10_000)).await?})
                    }
                    AccountCmd::Collisions { app } => {
                        json!({"collisions": db.account_collisions(app.as_deref()).await?})
                    }
                    AccountCmd::Merge { app, into, from } => {
                        let acc = db.merge_accounts(app, into, from).await?;
                        json!({"account": acc, "merged": from})
                    }
                }
            }
            Command::Schedule(c) => {
                let db = self.open().await?;
                match c {
                    ScheduleCmd::Add {
                        person,
                        app,
                        account,
                        days,
                        window,
                    } => {
                        let schedule = Schedule::parse(days, window)?;
                        let target = app.as_deref().zip(account.as_deref());
                        let s = db.add_schedule(person, target, schedule).await?;
                        json!({"id": s.id, "account_id": s.account_id, "days": days, "window": window})
                    }
                    ScheduleCmd::List { person } => {
                        let p = db.person_by_email(person).await?;
                        let list: Vec<Value> = db
                            .store
                            .person_schedules(&p.id)
                            .await?
                            .into_iter()
                            .map(|s| json!({"id": s.id, "account_id": s.account_id, "days": s.schedule.days,
                                            "start": hhmm(s.schedule.start_minute), "end": hhmm(s.schedule.end_minute)}))
                            .collect();
                        json!({"schedules": list})
                    }
                    ScheduleCmd::Delete { id } => {
                        db.store.delete_schedule(id).await?;
                        json!({"id": id, "deleted": true})
                    }
                }
            }
            Command::Attempts { app, limit } => {
                let db = self.open().await?;
                db.application(app).await?;
                let list: Vec<Value> = db
                    .attempts(app, *limit)
                    .await?
                    .into_iter()
                    .map(|a| json!({"at": a.at, "account": a.account, "locked": a.locked, "reason": a.reason, "ip": a.ip,
                                    "device": a.device, "location": a.location, "integration_type": a.integration_type}))
                    .collect();
                json!({"attempts": list})
            }
        }))
    }

    async fn serve(&self, args: &ServeArgs, demo: Option<Demo>) -> anyhow::Result<()> {
        let config = Config {
            db_url: self.db.clone(),
            listen: args.listen.clone(),
            public_url: args.public_url.clone(),
            master_key: self.key_source(),
            rate_limit: args.rate_limit,
            store_timeout: args.store_timeout,
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
                mail: crate::portal::MailConfig {
                    smtp_url: given(&args.smtp_url),
                    from: given(&args.mail_from),
                },
            },
            ..Config::new(&self.db)
        };
        let app = Application::build(config, Arc::new(SystemClock)).await?;
        warn_collisions(app.deadbolt()).await;
        let url = format!("http://{}", app.addr());
        let mut out = json!({"listening": app.addr().to_string(), "url": url, "audiences": app.audiences(),
                   "max_connections": app.connection_limits().max_connections,
                   "max_connections_per_ip": app.connection_limits().max_per_ip});
        if let Some(m) = app.metrics_addr() {
            out["metrics"] = json!(format!("http://{m}/metrics"));
        }
        if let Some(Demo { app_id, key }) = demo {
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
                                 "check_locked": cmd("alice"), "check_unlocked": cmd("bob"), "unlock": unlock});
            crate::logs::to_stderr(&format!(
                "\nDeadbolt demo is running on {url}.\n\
                 alice is locked, bob is not. In another terminal:\n\n  {}\n  {}\n\n\
                 Unlock alice for 15 minutes and ask again:\n\n  {unlock}\n\n\
                 Stop with Ctrl-C.\n",
                cmd("alice"),
                cmd("bob"),
            ));
        }
        // The address line is for whoever started the server; a closed stdout must not stop it.
        let _ = writeln!(std::io::stdout().lock(), "{out}");
        let base = args.public_url.clone().unwrap_or_else(|| url.clone());
        if let Some(link) = crate::portal::first_run_link(app.deadbolt(), &base).await? {
            crate::logs::to_stderr(&format!(
                "\nNo portal operator yet: open {link} to create one (the link works once).\n"
            ));
        }
        app.run_until(crate::shutdown_signal()).await
    }
}

/// A setting given with something in it (a blank variable is as good as none).
fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|v| !v.trim().is_empty())
}

const DEMO_ISSUER: &str = "demo.deadbolt.local";

struct Demo {
    app_id: String,
    key: String,
}

/// The demo's company, application and accounts (reused on later runs), and a new key.
async fn demo_setup(db: &Deadbolt) -> anyhow::Result<Demo> {
    let norm = deadbolt_core::normalize::normalize_name(DEMO_ISSUER);
    let app = match db.store.application_by_issuer(&norm).await? {
        Some(app) => app,
        None => {
            let company = db.create_company("Demo company").await?;
            db.create_application(
                &company.id,
                DEMO_ISSUER,
                Some("Demo app"),
                UnenrolledPolicy::Allow,
                AccountState::Unlocked,
            )
            .await?
        }
    };
    for account in ["alice", "bob"] {
        db.enroll(&app.id, account, None).await?;
    }
    db.lock(&app.id, "alice").await?;
    db.unlock(&app.id, "bob", None).await?;
    let (_, key) = db.create_signing_key(&app.id).await?;
    Ok(Demo {
        app_id: app.id,
        key,
    })
}

async fn check(args: &CheckArgs) -> anyhow::Result<Value> {
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
    })?;
    let sign_in = deadbolt_client::SignIn {
        ip: args.ip.clone(),
        device: args.device.clone(),
        location: args.location.clone(),
        integration_type: Some("deadbolt-cli".into()),
        ..Default::default()
    };
    use deadbolt_client::ClientError;
    use deadbolt_core::Clock;
    let url = checker.url();
    match checker
        .check_explained(&args.account, &sign_in, SystemClock.now())
        .await
    {
        Ok((locked, reason)) => {
            let mut out = json!({"account": args.account, "locked": locked});
            if let Some(reason) = reason {
                // Allowed or denied only by the application's policy for accounts it has not
                // enrolled: worth saying, since a typo in --account looks like "not locked".
                let enrolled = !reason.starts_with("unenrolled");
                if !enrolled {
                    eprintln!(
                        "note: {:?} is not enrolled in this application; the answer is its policy for unenrolled accounts",
                        args.account
                    );
                }
                out["enrolled"] = json!(enrolled);
                out["reason"] = json!(reason);
            }
            Ok(out)
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

/// Names that fold together are enforced as one (locked if any is) but should be merged: say so.
async fn warn_collisions(db: &Deadbolt) {
    match db.account_collisions(None).await {
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

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

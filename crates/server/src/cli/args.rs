//! The command line: the global store flags and every command with its flags and help.

use clap::{Parser, Subcommand};
use deadbolt_core::{AccountNames, AccountState, UnenrolledPolicy};
use std::path::PathBuf;

use super::check::CheckArgs;
use super::serve::ServeArgs;

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
    /// A file of settings (`deadbolt.toml`: the flags' names as keys). Flags and `DEADBOLT_*`
    /// variables take precedence over it.
    #[arg(long, global = true, env = "DEADBOLT_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// An application's attempts, newest first; `attempts prune` removes old ones.
    Attempts(AttemptsArgs),
    /// Ask a Deadbolt API whether an account is locked, signing like the Cognito trigger.
    Check(CheckArgs),
    /// The portal's operator account (creates companies, invites their admins).
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Write a consistent copy of the SQLite store (and its master key file) while it serves.
    Backup {
        /// The new file to write; its master key goes beside it as FILE.key.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new SQLite store (`--db`), with its master key. The server must
    /// not be running on that store: restore into a new file, then start the server on it.
    Restore {
        /// The backup file (written by `deadbolt backup`); FILE.key beside it is its key.
        #[arg(long)]
        from: PathBuf,
    },
}

/// `deadbolt attempts --app ID` lists; `deadbolt attempts prune --before DATE` removes.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AttemptsArgs {
    #[command(subcommand)]
    pub cmd: Option<AttemptsCmd>,
    /// The application's id.
    #[arg(long)]
    pub app: Option<String>,
    /// How many attempts to print.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

#[derive(Subcommand, Debug)]
pub enum AttemptsCmd {
    /// Remove every attempt recorded before a date (`2026-09-01` or an RFC 3339 time), of every
    /// application; the server's retention (`--attempts-retention`) does this on its own.
    Prune {
        /// Attempts recorded before this are removed: `2026-09-01` (midnight UTC) or an RFC 3339
        /// time.
        #[arg(long)]
        before: String,
    },
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

//! What the store keeps, as the rest of Deadbolt sees it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use deadbolt_core::{
    AccountNames, AccountState, Enrolment, PersonLocks, Reason, Schedule, UnenrolledPolicy,
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApplication {
    pub company_id: String,
    pub name: String,
    pub issuer: String,
    pub unenrolled: UnenrolledPolicy,
    pub default_state: AccountState,
    pub account_names: AccountNames,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Application {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub issuer: String,
    pub unenrolled: UnenrolledPolicy,
    pub default_state: AccountState,
    /// Decisions are recorded but never enforced (answers say not locked).
    pub audit_mode: bool,
    pub created_at: DateTime<Utc>,
    /// How account names compare: case-insensitive (the default) or exact.
    pub account_names: AccountNames,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSettings {
    pub unenrolled: UnenrolledPolicy,
    pub default_state: AccountState,
    pub audit_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub id: String,
    pub app_id: String,
    /// Encrypted under the server master key.
    pub secret_enc: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// What its admin called it at creation (empty for keys made before labels).
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkKeyRecord {
    pub id: String,
    pub company_id: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewPerson {
    pub email: String,
    pub password_hash: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub time_zone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    #[serde(serialize_with = "tz_name")]
    pub time_zone: Tz,
    pub master_locked: bool,
    pub created_at: DateTime<Utc>,
}

fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    pub app_id: String,
    pub account: String,
    pub person_id: Option<String>,
    pub person_email: Option<String>,
    pub state: AccountState,
    pub unlocked_until: Option<DateTime<Utc>>,
    /// Unlocked for one sign-in: the next check that lets it in locks it again.
    pub relock_after_use: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Who a schedule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOwner {
    /// All of the person's accounts.
    Person(String),
    /// One account (of a person, or of nobody yet).
    Account {
        person_id: Option<String>,
        account_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub id: String,
    pub person_id: Option<String>,
    pub account_id: Option<String>,
    pub schedule: Schedule,
    pub created_at: DateTime<Utc>,
}

/// One row of the change log: what a change changed (see migration 0008_change_log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub app_id: Option<String>,
    pub account_key: Option<String>,
    pub person_id: Option<String>,
}

/// Everything [`deadbolt_core::decide`] needs about one account, besides the application's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockInputs {
    /// The account's name as first enrolled (`None`: not enrolled).
    pub name: Option<String>,
    pub enrolment: Option<Enrolment>,
    pub person: Option<PersonLocks>,
    /// Whose account it is: a change to that person changes these inputs.
    pub person_id: Option<String>,
    pub schedules: Vec<Schedule>,
    /// The account locks again after the next sign-in it lets through.
    pub relock_after_use: bool,
    /// Other accounts whose names fold to the same key and are not merged yet: any of them
    /// that would lock locks this one too.
    pub colliding: Vec<LockInputs>,
}

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub at: DateTime<Utc>,
    pub app_id: String,
    pub key_id: Option<String>,
    pub account: String,
    pub locked: bool,
    pub reason: Reason,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub location: Option<String>,
    pub integration_type: Option<String>,
    pub integration_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub app_id: String,
    #[serde(skip)]
    pub key_id: Option<String>,
    pub account: String,
    pub locked: bool,
    pub reason: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub location: Option<String>,
    pub integration_type: Option<String>,
    pub integration_data: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ImportRow {
    pub app_id: String,
    pub account: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
}

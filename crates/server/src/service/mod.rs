//! The service: Deadbolt's operations on its data, shared by the operator CLI, the SDK API and
//! the portal. The rules about who may do what live in the callers (an SDK key's company, a
//! portal session's roles); the rules about how (valid names, the decision, what a lock or an
//! unlock writes) live here. The store is private to it: `records.rs` and `portal.rs` are the
//! plain look-ups and keeps the surfaces need, this file the operations with rules.
//!
//! Over 600 lines on purpose: every operation that changes an account is here, beside the
//! others, so that a rule (validation, the audit trail, what a lock writes) is seen whole.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use deadbolt_core::{
    decide, AccountKey, AccountNames, AccountState, Clock, Decision, Schedule, UnenrolledPolicy,
};
use deadbolt_store::{
    Account, Application, Attempt, AuditAction, Collision, Company, ImportRow, LockInputs,
    NewApplication, NewPerson, Person, ScheduleOwner, ScheduleRecord, Store, StoreOptions,
};
use std::path::PathBuf;
use std::sync::Arc;

use crate::crypto::{self, MasterKey};

mod alerts;
mod audit;
mod passkeys;
mod portal;
mod records;
use crate::error::{Error, Result};
pub use alerts::{valid_webhook_url, AlertLinkPurpose, ALERT_LINK_DAYS, MAX_WEBHOOK_URL};
pub use audit::{Actor, By, AUDIT_PAGE_MAX};

/// Longest account name (`sub`) accepted.
pub const MAX_ACCOUNT_LEN: usize = 512;

/// Where the master key comes from, in order: the value, a file, a file beside the SQLite store.
#[derive(Debug, Clone, Default)]
pub struct MasterKeySource {
    pub value: Option<String>,
    pub file: Option<PathBuf>,
}

/// Deadbolt's rules over its store: who and what may be created, looked up and changed, and
/// how. The HTTP surfaces and the CLI go through it; the store is private to it. Two readers
/// get the store itself from the composition ([`Service::store`], allowed in `lib.rs` only):
/// the check path, whose cache and decision are its own rules and which must not pay for an
/// indirection, and the attempt writer, which only appends.
#[derive(Clone)]
pub struct Service {
    store: Arc<Store>,
    master_key: MasterKey,
    clock: Arc<dyn Clock>,
}

impl Service {
    /// The store underneath, for the composition and the tests' look inside (a clippy rule
    /// refuses it anywhere else: `clippy.toml`).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub async fn open(db_url: &str, key: &MasterKeySource, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(db_url, &StoreOptions::default(), key, clock).await
    }

    /// [`Deadbolt::open`] with the store's options (PostgreSQL pool size and connect timeout).
    pub async fn open_with(
        db_url: &str,
        options: &StoreOptions,
        key: &MasterKeySource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let store = Store::open_with(db_url, options).await?;
        let master_key = if let Some(v) = &key.value {
            MasterKey::from_base64(v)?
        } else if let Some(f) = &key.file {
            MasterKey::load_or_create_file(f)?
        } else if let Some(path) = store.sqlite_path() {
            let mut p = path.as_os_str().to_owned();
            p.push(".key");
            MasterKey::load_or_create_file(&PathBuf::from(p))?
        } else if store.is_postgres() {
            return Err(Error::Invalid(
                "a PostgreSQL store needs the master key shared by all replicas: set DEADBOLT_MASTER_KEY or DEADBOLT_MASTER_KEY_FILE".into(),
            ));
        } else {
            // In-memory store: nothing outlives the process, neither does the key.
            MasterKey::generate().0
        };
        Ok(Self {
            store: Arc::new(store),
            master_key,
            clock,
        })
    }

    /// A key derived from the master key for one purpose: the same on every replica and
    /// across restarts, and unrelated to the key of any other purpose.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        self.master_key.derive(purpose)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub async fn create_company(&self, name: &str) -> Result<Company> {
        let name = non_empty("company name", name, 200)?;
        Ok(self.store.create_company(name, self.now()).await?)
    }

    pub async fn rename_company(&self, id: &str, name: &str) -> Result<()> {
        let name = non_empty("company name", name, 200)?;
        Ok(self.store.rename_company(id, name).await?)
    }

    /// Deletes a company and everything that is only its (see the store's `delete_company`).
    pub async fn delete_company(&self, id: &str) -> Result<()> {
        Ok(self.store.delete_company(id).await?)
    }

    /// Deletes an application, its accounts, keys and attempts; its issuer is unknown to the
    /// next check.
    pub async fn delete_application(&self, id: &str) -> Result<()> {
        Ok(self.store.delete_application(id).await?)
    }

    /// Takes the admin role of a company from `email`; refused for its last admin.
    pub async fn remove_admin(&self, company_id: &str, email: &str) -> Result<()> {
        if self.store.remove_admin(company_id, email).await? {
            return Ok(());
        }
        let email = deadbolt_store::normalize_email(email);
        if self
            .store
            .company_admins(company_id)
            .await?
            .contains(&email)
        {
            return Err(Error::Refused(
                "A company keeps at least one admin: invite another before removing this one."
                    .into(),
            ));
        }
        Err(Error::NotFound("admin".into()))
    }

    pub async fn company(&self, id: &str) -> Result<Company> {
        self.store
            .company(id)
            .await?
            .ok_or_else(|| Error::NotFound("company".into()))
    }

    pub async fn create_application(
        &self,
        company_id: &str,
        issuer: &str,
        name: Option<&str>,
        unenrolled: UnenrolledPolicy,
        default_state: AccountState,
    ) -> Result<Application> {
        let issuer = valid_issuer(issuer)?;
        self.company(company_id).await?;
        let new = NewApplication {
            company_id: company_id.to_string(),
            name: name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .unwrap_or(issuer)
                .to_string(),
            issuer: issuer.to_string(),
            unenrolled,
            default_state,
            account_names: AccountNames::default(),
        };
        Ok(self.store.create_application(&new, self.now()).await?)
    }

    /// Switches how an application compares account names; refused (409, with the names) when
    /// case-insensitive names would make two enrolled accounts one.
    pub async fn set_account_names(
        &self,
        app_id: &str,
        names: AccountNames,
    ) -> Result<Application> {
        self.store.set_account_names(app_id, names).await?;
        self.application(app_id).await
    }

    /// Names that fold together and are not merged yet (of one application, or of all).
    pub async fn account_collisions(&self, app_id: Option<&str>) -> Result<Vec<Collision>> {
        if let Some(id) = app_id {
            self.application(id).await?;
        }
        Ok(self.store.account_collisions(app_id).await?)
    }

    /// Merges the account named `from` into `into` (spellings of one name, as enrolled).
    pub async fn merge_accounts(
        &self,
        by: &By,
        app_id: &str,
        into: &str,
        from: &str,
    ) -> Result<Account> {
        self.application(app_id).await?;
        Ok(self
            .store
            .merge_accounts(app_id, into, from, self.now(), &by.record())
            .await?)
    }

    /// The application and the key `account` is found by in it.
    async fn key(&self, app_id: &str, account: &str) -> Result<(Application, AccountKey)> {
        let app = self.application(app_id).await?;
        let key = app.account_names.key(account);
        Ok((app, key))
    }

    pub async fn application(&self, id: &str) -> Result<Application> {
        self.store
            .application(id)
            .await?
            .ok_or_else(|| Error::NotFound("application".into()))
    }

    /// A company's application named by its issuer (`domain` in the SDK API). Another company's
    /// application is reported exactly like a missing one.
    pub async fn company_application(&self, company_id: &str, domain: &str) -> Result<Application> {
        let app = match issuer_norm(domain) {
            Some(norm) => self.store.application_by_issuer(&norm).await?,
            None => None,
        };
        in_company(app, company_id, domain)
    }

    /// Creates a signing key; the secret (base64) is returned once and stored only encrypted.
    pub async fn create_signing_key(&self, app_id: &str) -> Result<(String, String)> {
        self.create_labelled_signing_key(app_id, "").await
    }

    /// Creates a signing key with a label (which hook holds it: up to 100 printable
    /// characters, may be empty).
    pub async fn create_labelled_signing_key(
        &self,
        app_id: &str,
        label: &str,
    ) -> Result<(String, String)> {
        let label = label.trim();
        if label.chars().count() > 100 || label.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "a key's label must be at most 100 printable characters".into(),
            ));
        }
        self.application(app_id).await?;
        let (bytes, b64) = crypto::new_signing_secret();
        // The ciphertext is bound to the key's id, so the id is chosen before encrypting.
        let id = uuid::Uuid::new_v4().to_string();
        let enc = self.master_key.encrypt(&id, &bytes)?;
        self.store
            .create_labelled_signing_key(&id, app_id, label, &enc, self.now())
            .await?;
        Ok((id, b64))
    }

    /// The secrets of an application's active signing keys, decrypted: what a token of it may
    /// be signed with.
    pub async fn signing_secrets(&self, app_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for (id, enc) in self.store.active_signing_keys(app_id).await? {
            let secret = self.master_key.decrypt(&id, &enc)?;
            out.push((id, secret));
        }
        Ok(out)
    }

    pub async fn revoke_signing_key(&self, key_id: &str) -> Result<String> {
        Ok(self.store.revoke_signing_key(key_id, self.now()).await?)
    }

    /// Creates an SDK key; the token `<id>.<secret>` is returned once, only its hash is stored.
    pub async fn create_sdk_key(&self, company_id: &str) -> Result<(String, String)> {
        self.company(company_id).await?;
        let (secret, hash) = crypto::new_sdk_secret();
        let id = self
            .store
            .create_sdk_key(company_id, &hash, self.now())
            .await?;
        let token = format!("{id}.{secret}");
        Ok((id, token))
    }

    pub async fn revoke_sdk_key(&self, id: &str) -> Result<()> {
        Ok(self.store.revoke_sdk_key(id, self.now()).await?)
    }

    /// The company an SDK key acts for, and the key's id.
    pub async fn authenticate_sdk(&self, token: Option<&str>) -> Result<(String, String)> {
        let (id, secret) = split_sdk_token(token)?;
        verify_sdk_key(secret, self.store.sdk_key(id).await?)
    }

    /// [`Service::authenticate_sdk`] and [`Service::company_application`] in one read of the
    /// store, for an SDK call that names its application: the key's company and id, and the
    /// application. A bad key is refused before the application is considered.
    pub async fn authenticate_sdk_for(
        &self,
        token: Option<&str>,
        domain: &str,
    ) -> Result<(String, String, Application)> {
        let (id, secret) = split_sdk_token(token)?;
        let (key, app) = self
            .store
            .sdk_key_and_application(id, issuer_norm(domain).as_deref())
            .await?;
        let (company, key_id) = verify_sdk_key(secret, key)?;
        let app = in_company(app, &company, domain)?;
        Ok((company, key_id, app))
    }

    pub async fn create_person(
        &self,
        email: &str,
        password: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<Person> {
        let email = valid_email(email)?;
        let time_zone = parse_time_zone(time_zone.unwrap_or("UTC"))?;
        let password_hash = password.map(crypto::hash_password).transpose()?;
        let new = NewPerson {
            email,
            password_hash,
            first_name: None,
            last_name: None,
            phone: None,
            time_zone,
        };
        Ok(self.store.create_person(&new, self.now()).await?)
    }

    pub async fn person_by_email(&self, email: &str) -> Result<Person> {
        self.store
            .person_by_email(email)
            .await?
            .ok_or_else(|| Error::NotFound("person".into()))
    }

    pub async fn enroll(
        &self,
        by: &By,
        app_id: &str,
        account: &str,
        person_email: Option<&str>,
    ) -> Result<(Account, bool)> {
        let account = valid_account(account)?;
        let person_id = match person_email {
            Some(e) => Some(self.person_by_email(e).await?.id),
            None => None,
        };
        Ok(self
            .store
            .enroll(
                app_id,
                account,
                person_id.as_deref(),
                self.now(),
                &by.record(),
            )
            .await?)
    }

    pub async fn account(&self, app_id: &str, account: &str) -> Result<Account> {
        let (_, key) = self.key(app_id, account).await?;
        self.store
            .account(app_id, &key)
            .await?
            .ok_or_else(|| Error::NotFound("enrolled account".into()))
    }

    /// Locks an enrolled account (closing any unlock window). Durable when it returns, and in
    /// the audit trail.
    pub async fn lock(&self, by: &By, app_id: &str, account: &str) -> Result<()> {
        let app = self.application(app_id).await?;
        self.lock_in(by, &app, account).await
    }

    /// [`Service::lock`] in an application the caller has just read (the SDK API reads it by
    /// its issuer to check the company): no second read of it.
    pub async fn lock_in(&self, by: &By, app: &Application, account: &str) -> Result<()> {
        let (app_id, key) = (app.id.as_str(), app.account_names.key(account));
        enrollable(account)?;
        self.refuse_under_master_lock(by).await?;
        self.store
            .set_account_state(
                app_id,
                &key,
                AccountState::Locked,
                None,
                self.now(),
                AuditAction::Lock,
                &by.record(),
            )
            .await?
            .ok_or_else(|| Error::NotFound("enrolled account".into()))
    }

    /// Unlocks an enrolled account: for good, or for a window that closes by itself (the account
    /// stays locked underneath). Returns the end of the window. Durable when it returns, and in
    /// the audit trail.
    pub async fn unlock(
        &self,
        by: &By,
        app_id: &str,
        account: &str,
        window: Option<Duration>,
    ) -> Result<Option<DateTime<Utc>>> {
        let app = self.application(app_id).await?;
        self.unlock_in(by, &app, account, window).await
    }

    /// [`Service::unlock`] in an application the caller has just read.
    pub async fn unlock_in(
        &self,
        by: &By,
        app: &Application,
        account: &str,
        window: Option<Duration>,
    ) -> Result<Option<DateTime<Utc>>> {
        let (app_id, key) = (app.id.as_str(), app.account_names.key(account));
        enrollable(account)?;
        self.refuse_under_master_lock(by).await?;
        let now = self.now();
        let (state, until, action) = match window {
            Some(d) => (
                AccountState::Locked,
                Some(now + d),
                AuditAction::UnlockWindow,
            ),
            None => (AccountState::Unlocked, None, AuditAction::Unlock),
        };
        self.store
            .set_account_state(app_id, &key, state, until, now, action, &by.record())
            .await?
            .ok_or_else(|| Error::NotFound("enrolled account".into()))?;
        Ok(until)
    }

    /// Unlocks an account for its next sign-in only: the check that lets it in locks it again.
    pub async fn unlock_once(&self, by: &By, app_id: &str, account: &str) -> Result<()> {
        let (_, key) = self.key(app_id, account).await?;
        enrollable(account)?;
        self.refuse_under_master_lock(by).await?;
        self.store
            .unlock_once(app_id, &key, self.now(), &by.record())
            .await?
            .ok_or_else(|| Error::NotFound("enrolled account".into()))
    }

    /// A person's own change to one account while their master lock is on is refused: it
    /// would do nothing now and surprise them when lock everything is turned off (an unlock
    /// the person no longer remembers). A company's change is its own business, and recorded.
    async fn refuse_under_master_lock(&self, by: &By) -> Result<()> {
        let Some(person_id) = by.person_id() else {
            return Ok(());
        };
        if self
            .store
            .person(person_id)
            .await?
            .is_some_and(|p| p.master_locked)
        {
            return Err(Error::Refused(
                "Lock everything is on: every account stays locked until you turn it off. \
                 Turn it off first to lock or unlock accounts one by one."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Turns a person's master lock on or off (by email: the command line's way).
    pub async fn set_master_lock(&self, by: &By, email: &str, on: bool) -> Result<Person> {
        let p = self.person_by_email(email).await?;
        self.set_master_lock_of(by, &p.id, on).await?;
        self.person_by_email(email).await
    }

    /// Turns a person's master lock on or off. Durable when it returns, and in the trail.
    pub async fn set_master_lock_of(&self, by: &By, person_id: &str, on: bool) -> Result<()> {
        Ok(self
            .store
            .set_master_lock(person_id, on, self.now(), &by.record())
            .await?)
    }

    /// The decision a check would make for `account` now.
    pub async fn status(&self, app: &Application, account: &str) -> Result<Decision> {
        // A name enrolment would refuse is no account's (and PostgreSQL refuses some outright).
        if valid_account(account).is_err() {
            return Ok(decide_inputs(self.now(), app, &LockInputs::default()));
        }
        let key = app.account_names.key(account);
        let inputs = self.store.lock_inputs(&app.id, &key).await?;
        Ok(decide_inputs(self.now(), app, &inputs))
    }

    pub async fn add_schedule(
        &self,
        by: &By,
        person_email: &str,
        target: Option<(&str, &str)>,
        schedule: Schedule,
    ) -> Result<ScheduleRecord> {
        let person = self.person_by_email(person_email).await?;
        let owner = match target {
            None => ScheduleOwner::Person(person.id),
            Some((app_id, account)) => {
                let acc = self.account(app_id, account).await?;
                if acc.person_id.as_deref() != Some(person.id.as_str()) {
                    return Err(Error::Invalid(
                        "that account does not belong to this person".into(),
                    ));
                }
                ScheduleOwner::Account {
                    person_id: Some(person.id),
                    account_id: acc.id,
                }
            }
        };
        Ok(self
            .store
            .add_schedule(&owner, schedule, self.now(), &by.record())
            .await?)
    }

    pub async fn attempts(&self, app_id: &str, limit: i64) -> Result<Vec<Attempt>> {
        Ok(self
            .store
            .recent_attempts(app_id, limit.clamp(1, 1000))
            .await?)
    }

    /// Enrols the rows' accounts (and creates their people) in one transaction; each new
    /// account is in the audit trail.
    pub async fn import(&self, by: &By, rows: &[ImportRow]) -> Result<Vec<bool>> {
        Ok(self.store.import(rows, self.now(), &by.record()).await?)
    }
}

fn non_empty<'a>(what: &str, s: &'a str, max: usize) -> Result<&'a str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::Invalid(format!("{what} must not be empty")));
    }
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} must be at most {max} printable characters"
        )));
    }
    Ok(s)
}

/// An application's issuer as its tokens name it: a host name or a URI. Refused: whitespace,
/// control characters and `<>"'`, which no host name or URI holds and which would only make
/// trouble where the issuer is shown or written into a hook's configuration.
pub fn valid_issuer(issuer: &str) -> Result<&str> {
    let issuer = issuer.trim();
    // Before the length check, which would call a control character "not printable" only.
    if let Some(c) = issuer
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\''))
    {
        let what = if c.is_whitespace() {
            "a space".to_string()
        } else if c.is_control() {
            format!("the control character U+{:04X}", u32::from(c))
        } else {
            format!("{c:?}")
        };
        return Err(Error::Invalid(format!(
            "An issuer is a host name or URI (app.example.com, https://app.example.com): it cannot contain {what}."
        )));
    }
    non_empty("issuer", issuer, 255)
}

/// The decision for an account's inputs: DESIGN.md's rules, and for names that fold together
/// and are not merged yet, locked if any of them would lock.
pub fn decide_inputs(now: DateTime<Utc>, app: &Application, inputs: &LockInputs) -> Decision {
    let one = |i: &LockInputs| {
        decide(
            now,
            app.unenrolled,
            i.enrolment.as_ref(),
            i.person.as_ref(),
            &i.schedules,
        )
    };
    let decision = one(inputs);
    if decision.locked {
        return decision;
    }
    inputs
        .colliding
        .iter()
        .map(one)
        .find(|d| d.locked)
        .unwrap_or(decision)
}

/// A name enrolment would refuse was never enrolled: "not found", without asking a store that
/// may refuse the name outright (PostgreSQL and NUL).
fn enrollable(account: &str) -> Result<&str> {
    valid_account(account).map_err(|_| Error::NotFound("enrolled account".into()))
}

/// An account name as the application knows it (the token's `sub`): 1 to 512 bytes, without
/// control, bidirectional or invisible characters (the message names the one found).
/// A pairing code as typed: case, spaces and dashes do not matter.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn sdk_unauthorized() -> Error {
    Error::Unauthorized("missing or invalid x-nl3-server-api-token".into())
}

/// An SDK token's key id and secret; refused when it is missing or not of that form.
pub(crate) fn split_sdk_token(token: Option<&str>) -> Result<(&str, &str)> {
    token
        .and_then(crypto::split_sdk_token)
        .ok_or_else(sdk_unauthorized)
}

/// The company and id of the SDK key read for a token, if its secret matches and it is not
/// revoked.
fn verify_sdk_key(
    secret: &str,
    key: Option<deadbolt_store::SdkKeyRecord>,
) -> Result<(String, String)> {
    // Hash even when the id is unknown, so both paths cost the same.
    let stored = key.as_ref().map_or("", |k| k.secret_hash.as_str());
    let matches = crypto::sdk_secret_matches(secret, stored);
    match key {
        Some(k) if matches && k.revoked_at.is_none() => Ok((k.company_id, k.id)),
        _ => Err(sdk_unauthorized()),
    }
}

/// The normalised issuer an SDK call's `domain` names; `None` for a name with a control
/// character, which is no application's (and PostgreSQL refuses NUL).
fn issuer_norm(domain: &str) -> Option<String> {
    let norm = deadbolt_core::normalize::normalize_name(domain);
    (!norm.chars().any(char::is_control)).then_some(norm)
}

/// The application read for `domain`, if it is the company's: another company's application
/// is reported exactly like a missing one.
fn in_company(app: Option<Application>, company_id: &str, domain: &str) -> Result<Application> {
    match app {
        Some(app) if app.company_id == company_id => Ok(app),
        _ => Err(Error::Forbidden(format!(
            "no application with domain {domain:?} in this company"
        ))),
    }
}

pub fn valid_account(account: &str) -> Result<&str> {
    if account.is_empty() || account.len() > MAX_ACCOUNT_LEN {
        return Err(Error::Invalid(format!(
            "account name must be 1 to {MAX_ACCOUNT_LEN} bytes"
        )));
    }
    if let Some(c) = deadbolt_core::account::refused_char(account) {
        return Err(Error::Invalid(format!("account name contains {c}")));
    }
    Ok(account)
}

pub fn password_problem(password: &str, confirm: &str) -> Option<String> {
    if password != confirm {
        Some("The two passwords differ.".into())
    } else if password.chars().count() < 10 {
        Some("Choose a password of at least 10 characters.".into())
    } else if password.len() > 1024 {
        Some("That password is too long.".into())
    } else {
        None
    }
}

pub fn valid_email(email: &str) -> Result<String> {
    let e = deadbolt_store::normalize_email(email);
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(Error::Invalid(format!("invalid email address {email:?}")));
    }
    Ok(e)
}

pub fn parse_time_zone(tz: &str) -> Result<Tz> {
    tz.parse().map_err(|_| {
        Error::Invalid(format!(
            "unknown time zone {tz:?} (use an IANA name like Europe/Paris)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_validation() {
        assert_eq!(valid_email(" A@B.example ").unwrap(), "a@b.example");
        for bad in ["", "a", "@b", "a@", "a@b@c", "a b@c", "a@b\u{7}c"] {
            assert!(valid_email(bad).is_err(), "{bad:?}");
        }
        assert!(valid_account("alice").is_ok());
        assert!(valid_account("").is_err());
        assert!(valid_account(&"x".repeat(MAX_ACCOUNT_LEN + 1)).is_err());
        assert!(valid_account("a\u{0}b").is_err());
        assert!(parse_time_zone("Europe/Paris").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(non_empty("x", "  ", 10).is_err());
        assert_eq!(
            valid_issuer(" https://app.example.com/ ").unwrap(),
            "https://app.example.com/"
        );
        for bad in [
            "app example.com",
            "<script>",
            "a\"b",
            "a'b",
            "a\tb",
            "a\u{0}b",
        ] {
            assert!(valid_issuer(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_code(" abcd-2345 "), "ABCD2345");
    }
}

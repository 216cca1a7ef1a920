//! Records as stored, for the surfaces that list and show them (the portal's pages, the CLI,
//! the SDK's attempts feed), and the writes whose rules the caller has already applied. The
//! rules of a change live in `service/mod.rs`; these only look things up and keep them, with
//! the service's error.

use chrono::{DateTime, Utc};
use deadbolt_core::{AccountKey, Schedule};
use deadbolt_store::{
    Account, AppSettings, Application, Attempt, AttemptFilter, Company, NotReady, PendingLink,
    Person, ScheduleOwner, ScheduleRecord, SdkKeyRecord, SigningKeyRecord,
};

use super::{By, Service};
use crate::error::Result;

/// The purpose the portal names its admin invitations by (`portal::links`).
const ADMIN_INVITE: &str = "admin_invite";

impl Service {
    /// Whether the store can answer and take changes now (`/readyz`).
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.readiness().await
    }

    /// Writes a consistent copy of an SQLite store to the new file `dest` while it serves.
    pub async fn backup_to(&self, dest: &std::path::Path) -> Result<u64> {
        Ok(self.store.backup_to(dest).await?)
    }

    /// Removes every attempt older than `before` (whole stored runs), a few hundred runs a
    /// transaction with a pause between: a backlog (retention turned on over a store of years)
    /// is worked off without holding the store's writer for long at a time, so checks and the
    /// attempt writer go on. How many attempts went. For the server's retention and the CLI.
    pub async fn remove_attempts_before(&self, before: DateTime<Utc>) -> Result<u64> {
        /// Runs a transaction, and the pause between two.
        const RUNS: i64 = 500;
        const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
        let mut removed = 0;
        loop {
            match self.store.prune_attempts(before, RUNS).await? {
                0 => return Ok(removed),
                n => removed += n,
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// An application's attempts with ids above `after`, oldest first (the SDK's feed).
    pub async fn attempts_after(
        &self,
        app_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self.store.attempts_after(app_id, after, limit).await?)
    }

    /// Forgets all but the last `keep` rows of the change log; how many went.
    pub async fn prune_changes(&self, keep: i64) -> Result<u64> {
        Ok(self.store.prune_changes(keep).await?)
    }

    /// The change log's position: grows with every change to what a check reads.
    pub async fn version(&self) -> Result<i64> {
        Ok(self.store.version().await?)
    }

    pub async fn find_person_by_email(&self, email: &str) -> Result<Option<Person>> {
        Ok(self.store.person_by_email(email).await?)
    }

    pub async fn person(&self, id: &str) -> Result<Option<Person>> {
        Ok(self.store.person(id).await?)
    }

    pub async fn persons(&self, limit: i64) -> Result<Vec<Person>> {
        Ok(self.store.persons(limit).await?)
    }

    pub async fn find_company(&self, id: &str) -> Result<Option<Company>> {
        Ok(self.store.company(id).await?)
    }

    pub async fn companies(&self) -> Result<Vec<Company>> {
        Ok(self.store.companies().await?)
    }

    pub async fn companies_page(&self, offset: i64, limit: i64) -> Result<Vec<Company>> {
        Ok(self.store.companies_page(offset, limit).await?)
    }

    pub async fn company_count(&self) -> Result<i64> {
        Ok(self.store.company_count().await?)
    }

    /// The addresses invited to administer a company who have not accepted yet.
    pub async fn pending_invitations(&self, company_id: &str) -> Result<Vec<PendingLink>> {
        Ok(self
            .store
            .pending_links(ADMIN_INVITE, company_id, self.now())
            .await?)
    }

    /// Cancels the invitations to administer a company sent to `email`: their links no longer
    /// work. How many there were.
    pub async fn cancel_invitations(&self, company_id: &str, email: &str) -> Result<u64> {
        Ok(self
            .store
            .cancel_links(ADMIN_INVITE, company_id, email)
            .await?)
    }

    pub async fn sdk_key(&self, id: &str) -> Result<Option<SdkKeyRecord>> {
        Ok(self.store.sdk_key(id).await?)
    }

    pub async fn sdk_keys(&self, company_id: &str) -> Result<Vec<SdkKeyRecord>> {
        Ok(self.store.sdk_keys(company_id).await?)
    }

    pub async fn account_by_id(&self, id: &str) -> Result<Option<Account>> {
        Ok(self.store.account_by_id(id).await?)
    }

    pub async fn enroll_key(
        &self,
        by: &By,
        app_id: &str,
        account: &str,
        person_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Account, bool)> {
        Ok(self
            .store
            .enroll(app_id, account, person_id, now, &by.record())
            .await?)
    }

    pub async fn find_account(&self, app_id: &str, key: &AccountKey) -> Result<Option<Account>> {
        Ok(self.store.account(app_id, key).await?)
    }

    pub async fn accounts(
        &self,
        app_id: &str,
        search: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Account>> {
        Ok(self.store.accounts(app_id, search, limit).await?)
    }

    pub async fn accounts_page(
        &self,
        app_id: &str,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Account>> {
        Ok(self
            .store
            .accounts_page(app_id, search, offset, limit)
            .await?)
    }

    pub async fn account_count(&self, app_id: &str, search: Option<&str>) -> Result<i64> {
        Ok(self.store.account_count(app_id, search).await?)
    }

    pub async fn attempts_page(
        &self,
        app_id: &str,
        filter: &AttemptFilter,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self
            .store
            .attempts_page(app_id, filter, before_id, limit)
            .await?)
    }

    pub async fn attempt_count_of(&self, app_id: &str, filter: &AttemptFilter) -> Result<i64> {
        Ok(self.store.attempt_count_of(app_id, filter).await?)
    }

    pub async fn person_accounts(&self, person_id: &str) -> Result<Vec<Account>> {
        Ok(self.store.person_accounts(person_id).await?)
    }

    pub async fn recent_attempts(&self, app_id: &str, limit: i64) -> Result<Vec<Attempt>> {
        Ok(self.store.recent_attempts(app_id, limit).await?)
    }

    pub async fn attempts_since(
        &self,
        app_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self.store.attempts_since(app_id, since, limit).await?)
    }

    pub async fn person_blocked_attempts(
        &self,
        person_id: &str,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self.store.person_blocked_attempts(person_id, limit).await?)
    }

    pub async fn person_blocked_attempts_after(
        &self,
        person_id: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self
            .store
            .person_blocked_attempts_after(person_id, after_id, limit)
            .await?)
    }

    pub async fn attempt(&self, id: i64) -> Result<Option<Attempt>> {
        Ok(self.store.attempt(id).await?)
    }

    pub async fn find_application(&self, id: &str) -> Result<Option<Application>> {
        Ok(self.store.application(id).await?)
    }

    pub async fn application_by_issuer(&self, issuer_norm: &str) -> Result<Option<Application>> {
        Ok(self.store.application_by_issuer(issuer_norm).await?)
    }

    pub async fn applications(&self, company_id: Option<&str>) -> Result<Vec<Application>> {
        Ok(self.store.applications(company_id).await?)
    }

    pub async fn update_application(
        &self,
        id: &str,
        settings: &AppSettings,
    ) -> Result<Application> {
        Ok(self.store.update_application(id, settings).await?)
    }

    pub async fn signing_keys(&self, app_id: &str) -> Result<Vec<SigningKeyRecord>> {
        Ok(self.store.signing_keys(app_id).await?)
    }

    pub async fn add_schedule_for(
        &self,
        by: &By,
        owner: &ScheduleOwner,
        s: Schedule,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord> {
        Ok(self.store.add_schedule(owner, s, now, &by.record()).await?)
    }

    pub async fn person_schedules(&self, person_id: &str) -> Result<Vec<ScheduleRecord>> {
        Ok(self.store.person_schedules(person_id).await?)
    }

    pub async fn delete_schedule(&self, by: &By, id: &str) -> Result<()> {
        Ok(self
            .store
            .delete_schedule(id, self.now(), &by.record())
            .await?)
    }

    pub async fn filtered_attempts(
        &self,
        app_id: &str,
        account: Option<&str>,
        locked: Option<bool>,
        range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Attempt>> {
        Ok(self
            .store
            .filtered_attempts(app_id, account, locked, range, after_id, limit)
            .await?)
    }
}

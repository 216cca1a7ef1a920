//! What the portal keeps in the store: sessions, emailed links, roles, password hashes and
//! pairing codes. Their rules (lifetimes, one use, who may) live in the portal's modules that
//! use them (`session`, `links`, `password`); these only keep them, with the service's error.

use chrono::{DateTime, Utc};
use deadbolt_store::{Person, PortalLink, RoleRecord, SessionRecord};

use super::Service;
use crate::error::Result;

impl Service {
    pub async fn password_hash(&self, email: &str) -> Result<Option<(String, Option<String>)>> {
        Ok(self.store.password_hash(email).await?)
    }

    pub async fn grant_role(
        &self,
        person_id: &str,
        role: &str,
        company_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .grant_role(person_id, role, company_id, now)
            .await?)
    }

    pub async fn roles(&self, person_id: &str) -> Result<Vec<RoleRecord>> {
        Ok(self.store.roles(person_id).await?)
    }

    pub async fn company_admins(&self, company_id: &str) -> Result<Vec<String>> {
        Ok(self.store.company_admins(company_id).await?)
    }

    pub async fn has_operator(&self) -> Result<bool> {
        Ok(self.store.has_operator().await?)
    }

    pub async fn set_password_hash(
        &self,
        person_id: &str,
        hash: &str,
        verified: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .set_password_hash(person_id, hash, verified, now)
            .await?)
    }

    pub async fn set_time_zone(&self, person_id: &str, tz: chrono_tz::Tz) -> Result<()> {
        Ok(self.store.set_time_zone(person_id, tz).await?)
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        person_id: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .create_session(id_hash, person_id, csrf, now, expires_at)
            .await?)
    }

    pub async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>> {
        Ok(self.store.session(id_hash, now).await?)
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        Ok(self.store.delete_session(id_hash).await?)
    }

    pub async fn delete_other_sessions(
        &self,
        person_id: &str,
        keep: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .delete_other_sessions(person_id, keep, now)
            .await?)
    }

    pub async fn create_link(
        &self,
        token_hash: &str,
        purpose: &str,
        email: &str,
        company_id: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .create_link(token_hash, purpose, email, company_id, now, expires_at)
            .await?)
    }

    pub async fn link(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<PortalLink>> {
        Ok(self.store.link(token_hash, now).await?)
    }

    pub async fn take_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalLink>> {
        Ok(self.store.take_link(token_hash, now).await?)
    }

    pub async fn create_first_operator(
        &self,
        token_hash: &str,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Person>> {
        Ok(self
            .store
            .create_first_operator(token_hash, email, password_hash, now)
            .await?)
    }

    pub async fn create_pairing_code(
        &self,
        code_hash: &str,
        person_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .create_pairing_code(code_hash, person_id, now, expires_at)
            .await?)
    }

    pub async fn take_pairing_code(
        &self,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        Ok(self.store.take_pairing_code(code_hash, now).await?)
    }

    /// Records that a form was sent: true the first time, false when it was sent before.
    pub async fn use_form_token(&self, id_hash: &str, expires_at: DateTime<Utc>) -> Result<bool> {
        Ok(self.store.use_form_token(id_hash, expires_at).await?)
    }

    /// Forgets the tokens of forms whose sessions have expired.
    pub async fn prune_form_tokens(&self, now: DateTime<Utc>) -> Result<u64> {
        Ok(self.store.prune_form_tokens(now).await?)
    }
}

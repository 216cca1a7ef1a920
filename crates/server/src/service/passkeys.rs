//! Passkeys, their ceremonies and the second-factor setting, as the portal keeps them. The
//! WebAuthn rules (challenges, signatures, who may remove what) live in `portal/passkeys.rs`.

use chrono::{DateTime, Utc};
use deadbolt_store::{AuditEntry, Ceremony, NewPasskey, PasskeyRecord, SecondFactor};

use super::{By, Service};
use crate::error::Result;

impl Service {
    pub async fn add_passkey(&self, by: &By, new: &NewPasskey<'_>) -> Result<PasskeyRecord> {
        Ok(self
            .store
            .add_passkey(new, &by.record(), self.now())
            .await?)
    }

    pub async fn passkeys(&self, person_id: &str) -> Result<Vec<PasskeyRecord>> {
        Ok(self.store.passkeys(person_id).await?)
    }

    pub async fn passkeys_by_user_handle(&self, user_handle: &str) -> Result<Vec<PasskeyRecord>> {
        Ok(self.store.passkeys_by_user_handle(user_handle).await?)
    }

    /// Removes a passkey of `person_id`; false when they have none with that id.
    pub async fn remove_passkey(&self, by: &By, person_id: &str, id: &str) -> Result<bool> {
        Ok(self
            .store
            .remove_passkey(person_id, id, &by.record(), self.now())
            .await?)
    }

    /// Records a passkey sign-in; false (refused) when its counter did not move forward.
    pub async fn use_passkey(&self, id: &str, counter: i64, credential: &str) -> Result<bool> {
        Ok(self
            .store
            .use_passkey(id, counter, credential, self.now())
            .await?)
    }

    pub async fn second_factor(&self, person_id: &str) -> Result<SecondFactor> {
        Ok(self.store.second_factor(person_id).await?)
    }

    pub async fn set_second_factor_required(&self, by: &By, on: bool) -> Result<bool> {
        Ok(self
            .store
            .set_second_factor_required(on, &by.record(), self.now())
            .await?)
    }

    pub async fn settings_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(self.store.settings_audit(limit).await?)
    }

    pub async fn put_ceremony(&self, id_hash: &str, c: &Ceremony) -> Result<()> {
        Ok(self.store.put_ceremony(id_hash, c, self.now()).await?)
    }

    pub async fn ceremony(&self, id_hash: &str, kind: &str) -> Result<Option<Ceremony>> {
        Ok(self.store.ceremony(id_hash, kind, self.now()).await?)
    }

    pub async fn set_ceremony_state(&self, id_hash: &str, kind: &str, state: &str) -> Result<bool> {
        Ok(self
            .store
            .set_ceremony_state(id_hash, kind, state, self.now())
            .await?)
    }

    pub async fn take_ceremony(&self, id_hash: &str, kind: &str) -> Result<Option<Ceremony>> {
        Ok(self.store.take_ceremony(id_hash, kind, self.now()).await?)
    }

    /// When a passkey ceremony started now ends.
    pub fn ceremony_expiry(&self, minutes: i64) -> DateTime<Utc> {
        self.now() + chrono::Duration::minutes(minutes)
    }
}

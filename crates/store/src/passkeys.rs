//! Passkeys: the WebAuthn credentials of portal users, the state of a ceremony between its two
//! requests, and the operator's portal settings (whether admins need a second factor), whose
//! changes are written to the audit trail in the same transaction.

use chrono::{DateTime, Utc};

use crate::audit::{self, Record};
use crate::engine::Row;
use crate::{ms, opt_time, time, AuditAction, AuditBy, AuditEntry, AuditState, Result, Store};

#[cfg(test)]
#[path = "passkeys_tests.rs"]
mod passkeys_tests;

/// A registered passkey. `credential` is the verifier's record of it (JSON), opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub person_id: String,
    pub user_handle: String,
    /// base64url, unique across everyone.
    pub credential_id: String,
    pub name: String,
    pub credential: String,
    /// The authenticator's signature counter as last seen; 0 for those that keep none.
    pub counter: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A passkey about to be registered.
#[derive(Debug, Clone)]
pub struct NewPasskey<'a> {
    pub person_id: &'a str,
    pub user_handle: &'a str,
    pub credential_id: &'a str,
    pub name: &'a str,
    pub credential: &'a str,
    pub counter: i64,
}

/// A ceremony between its two requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub kind: String,
    pub person_id: Option<String>,
    /// What the ceremony carries besides its state (a passkey's name, where a sign-in leads).
    pub detail: Option<String>,
    /// The verifier's state (JSON), once the challenge was made.
    pub state: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Whether a person must have a second factor and how many passkeys they have: what every
/// signed-in page of an admin or the operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondFactor {
    pub required: bool,
    pub passkeys: i64,
}

const SECOND_FACTOR_KEY: &str = "second_factor_required";

const COLS: &str = "id, person_id, user_handle, credential_id, name, credential, counter, created_at, last_used_at";

fn passkey(r: &Row) -> Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        id: r.text(0)?,
        person_id: r.text(1)?,
        user_handle: r.text(2)?,
        credential_id: r.text(3)?,
        name: r.text(4)?,
        credential: r.text(5)?,
        counter: r.int(6)?,
        created_at: time(r.int(7)?)?,
        last_used_at: opt_time(r.opt_int(8)?)?,
    })
}

fn ceremony(r: &Row) -> Result<Ceremony> {
    Ok(Ceremony {
        kind: r.text(0)?,
        person_id: r.opt_text(1)?,
        detail: r.opt_text(2)?,
        state: r.opt_text(3)?,
        expires_at: time(r.int(4)?)?,
    })
}

impl Store {
    // ---- passkeys ----

    /// Registers a passkey, with its row in the person's trail. `Conflict` when its credential
    /// is registered already (to anyone).
    pub async fn add_passkey(
        &self,
        new: &NewPasskey<'_>,
        by: &AuditBy,
        now: DateTime<Utc>,
    ) -> Result<PasskeyRecord> {
        let id = crate::new_id();
        self.engine
            .transaction(vec![
                (
                    "INSERT INTO passkeys (id, person_id, user_handle, credential_id, name, credential, counter, created_at, last_used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
                    vec![
                        (&id).into(),
                        new.person_id.into(),
                        new.user_handle.into(),
                        new.credential_id.into(),
                        new.name.into(),
                        new.credential.into(),
                        new.counter.into(),
                        ms(now),
                    ],
                ),
                audit::insert(&Record {
                    at: now,
                    app_id: None,
                    account_id: None,
                    account: None,
                    person_id: Some(new.person_id),
                    action: AuditAction::PasskeyAdded,
                    by,
                    old: None,
                    new: None,
                    detail: Some(new.name),
                }),
            ])
            .await
            .map_err(|e| match e {
                crate::StoreError::Conflict(_) => {
                    crate::StoreError::Conflict("that passkey".into())
                }
                e => e,
            })?;
        self.one(
            sql!("SELECT ", COLS, " FROM passkeys WHERE id = $1"),
            vec![id.into()],
            passkey,
        )
        .await?
        .ok_or(crate::StoreError::NotFound("passkey"))
    }

    /// A person's passkeys, oldest first.
    pub async fn passkeys(&self, person_id: &str) -> Result<Vec<PasskeyRecord>> {
        self.all(
            sql!(
                "SELECT ",
                COLS,
                " FROM passkeys WHERE person_id = $1 ORDER BY created_at, id"
            ),
            vec![person_id.into()],
            passkey,
        )
        .await
    }

    /// The passkeys of the person whose authenticators know them by `user_handle`.
    pub async fn passkeys_by_user_handle(&self, user_handle: &str) -> Result<Vec<PasskeyRecord>> {
        self.all(
            sql!(
                "SELECT ",
                COLS,
                " FROM passkeys WHERE user_handle = $1 ORDER BY created_at, id"
            ),
            vec![user_handle.into()],
            passkey,
        )
        .await
    }

    /// Removes a passkey of `person_id` (only theirs: another person's id removes nothing),
    /// with its row in their trail. Whether one was removed.
    pub async fn remove_passkey(
        &self,
        person_id: &str,
        id: &str,
        by: &AuditBy,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(name) = self
            .passkeys(person_id)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.name)
        else {
            return Ok(false);
        };
        let out = self
            .engine
            .transaction(vec![
                (
                    "DELETE FROM passkeys WHERE id = $1 AND person_id = $2 RETURNING id",
                    vec![id.into(), person_id.into()],
                ),
                audit::insert(&Record {
                    at: now,
                    app_id: None,
                    account_id: None,
                    account: None,
                    person_id: Some(person_id),
                    action: AuditAction::PasskeyRemoved,
                    by,
                    old: None,
                    new: None,
                    detail: Some(&name),
                }),
            ])
            .await?;
        Ok(out.first().is_some_and(|rows| !rows.is_empty()))
    }

    /// Records a sign-in with a passkey: its new counter and verifier record. Refused (false,
    /// nothing changes) when the counter does not move forward: an authenticator that counts
    /// and shows a count already seen is a copy. Authenticators that keep no counter show 0
    /// every time and stay at 0. Decided by the update itself, so that two sign-ins with one
    /// count on two replicas cannot both pass.
    pub async fn use_passkey(
        &self,
        id: &str,
        counter: i64,
        credential: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "UPDATE passkeys SET counter = $1, credential = $2, last_used_at = $3 \
                 WHERE id = $4 AND (counter < $1 OR (counter = 0 AND $1 = 0)) RETURNING id",
                vec![counter.into(), credential.into(), ms(now), id.into()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Whether the operator requires a second factor, and how many passkeys `person_id` has.
    pub async fn second_factor(&self, person_id: &str) -> Result<SecondFactor> {
        let rows = self
            .engine
            .query(
                "SELECT (SELECT value FROM portal_settings WHERE key = $1), \
                 (SELECT count(*) FROM passkeys WHERE person_id = $2)",
                vec![SECOND_FACTOR_KEY.into(), person_id.into()],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(SecondFactor {
                required: false,
                passkeys: 0,
            });
        };
        Ok(SecondFactor {
            required: r.opt_text(0)?.as_deref() == Some("on"),
            passkeys: r.int(1)?,
        })
    }

    /// Turns the second-factor requirement on or off, with its row in the trail; whether it
    /// changed (setting it to what it is writes nothing).
    pub async fn set_second_factor_required(
        &self,
        on: bool,
        by: &AuditBy,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let was = self.second_factor("").await?.required;
        if was == on {
            return Ok(false);
        }
        let state = |b: bool| AuditState::new(if b { "on" } else { "off" }, None, false);
        let (old, new) = (state(was), state(on));
        let value = if on { "on" } else { "off" };
        self.engine
            .transaction(vec![
                (
                    "INSERT INTO portal_settings (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    vec![SECOND_FACTOR_KEY.into(), value.into(), ms(now)],
                ),
                audit::insert(&Record {
                    at: now,
                    app_id: None,
                    account_id: None,
                    account: None,
                    person_id: None,
                    action: AuditAction::SecondFactorRequired,
                    by,
                    old: Some(&old),
                    new: Some(&new),
                    detail: None,
                }),
            ])
            .await?;
        Ok(true)
    }

    /// The trail of the operator's settings: newest first.
    pub async fn settings_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.audit_of_action(AuditAction::SecondFactorRequired, limit)
            .await
    }

    // ---- ceremonies ----

    /// Keeps a ceremony under the hash of its one-time id until `expires_at`.
    pub async fn put_ceremony(
        &self,
        id_hash: &str,
        c: &Ceremony,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .transaction(vec![
                // Expired ones go as new ones come: the table holds minutes' worth at most.
                (
                    "DELETE FROM passkey_ceremonies WHERE expires_at <= $1",
                    vec![ms(now)],
                ),
                (
                    "INSERT INTO passkey_ceremonies (id_hash, kind, person_id, detail, state, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    vec![
                        id_hash.into(),
                        c.kind.as_str().into(),
                        c.person_id.as_deref().into(),
                        c.detail.as_deref().into(),
                        c.state.as_deref().into(),
                        ms(c.expires_at),
                    ],
                ),
            ])
            .await?;
        Ok(())
    }

    /// A ceremony of `kind` that has not expired, left in place.
    pub async fn ceremony(
        &self,
        id_hash: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Ceremony>> {
        self.one(
            "SELECT kind, person_id, detail, state, expires_at FROM passkey_ceremonies \
             WHERE id_hash = $1 AND kind = $2 AND expires_at > $3",
            vec![id_hash.into(), kind.into(), ms(now)],
            ceremony,
        )
        .await
    }

    /// Sets the verifier's state of a ceremony that has not expired; whether it had one.
    pub async fn set_ceremony_state(
        &self,
        id_hash: &str,
        kind: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "UPDATE passkey_ceremonies SET state = $1 WHERE id_hash = $2 AND kind = $3 AND expires_at > $4 \
                 RETURNING id_hash",
                vec![state.into(), id_hash.into(), kind.into(), ms(now)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Takes a ceremony of `kind`: only the first caller gets it, and only before it expires.
    pub async fn take_ceremony(
        &self,
        id_hash: &str,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Ceremony>> {
        let rows = self
            .engine
            .write(
                "DELETE FROM passkey_ceremonies WHERE id_hash = $1 AND kind = $2 \
                 RETURNING kind, person_id, detail, state, expires_at",
                vec![id_hash.into(), kind.into()],
            )
            .await?;
        Ok(rows
            .first()
            .map(ceremony)
            .transpose()?
            .filter(|c| c.expires_at > now))
    }
}

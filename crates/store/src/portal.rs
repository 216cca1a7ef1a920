//! What the portal keeps: roles, sessions, one-time links, pairing codes, and the portal's
//! reads of accounts and attempts.

use chrono::{DateTime, Utc};
use const_format::concatcp;

use crate::engine::Row;
use crate::{
    account_row, ms, normalize_email, opt_time, time, Account, Person, Result, Store, StoreError,
    ACCOUNT_COLS,
};

#[cfg(test)]
#[path = "portal_tests.rs"]
mod portal_tests;

/// A role of a person, with its company's name for display. (The store's types are reached
/// through its methods; the portal keeps its own role type.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// `operator` or `admin`.
    pub role: String,
    /// Empty for the operator.
    pub company_id: String,
    pub company_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub person_id: String,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLink {
    /// Why it was sent, as the portal named it.
    pub purpose: String,
    pub email: String,
    pub company_id: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// An address with a usable emailed link (an invitation not yet accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    pub email: String,
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const LINK_COLS: &str = "purpose, email, company_id, expires_at";

fn link(r: &Row) -> Result<PortalLink> {
    Ok(PortalLink {
        purpose: r.text(0)?,
        email: r.text(1)?,
        company_id: r.opt_text(2)?,
        expires_at: time(r.int(3)?)?,
    })
}

impl Store {
    // ---- roles ----

    /// Grants a role (`operator` with an empty company, or `admin` of `company_id`);
    /// granting it twice is not an error.
    pub async fn grant_role(
        &self,
        person_id: &str,
        role: &str,
        company_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let valid = match role {
            "operator" => company_id.is_empty(),
            "admin" => !company_id.is_empty(),
            _ => false,
        };
        if !valid {
            return Err(StoreError::Config(format!("invalid role {role:?}")));
        }
        // Checked first: the engines report a missing referenced row differently.
        if self.person(person_id).await?.is_none() {
            return Err(StoreError::NotFound("person"));
        }
        self.engine
            .write(
                "INSERT INTO portal_roles (person_id, role, company_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (person_id, role, company_id) DO NOTHING",
                vec![person_id.into(), role.into(), company_id.into(), ms(now)],
            )
            .await?;
        Ok(())
    }

    pub async fn roles(&self, person_id: &str) -> Result<Vec<RoleRecord>> {
        let rows = self
            .engine
            .query(
                "SELECT r.role, r.company_id, c.name FROM portal_roles r LEFT JOIN companies c ON c.id = r.company_id \
                 WHERE r.person_id = $1 ORDER BY r.role DESC, c.name, r.company_id",
                vec![person_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleRecord {
                    role: r.text(0)?,
                    company_id: r.text(1)?,
                    company_name: r.opt_text(2)?,
                })
            })
            .collect()
    }

    /// The emails of a company's admins.
    pub async fn company_admins(&self, company_id: &str) -> Result<Vec<String>> {
        let rows = self
            .engine
            .query(
                "SELECT p.email FROM portal_roles r JOIN persons p ON p.id = r.person_id \
                 WHERE r.role = 'admin' AND r.company_id = $1 ORDER BY p.email",
                vec![company_id.into()],
            )
            .await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    /// Takes the admin role of company `company_id` from the person with `email`, unless they
    /// are its last admin (a company nobody can administer is left to the operator only).
    /// `Ok(false)` when nothing was taken: they were not its admin, or were its last.
    pub async fn remove_admin(&self, company_id: &str, email: &str) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "DELETE FROM portal_roles WHERE role = 'admin' AND company_id = $1 \
                 AND person_id = (SELECT id FROM persons WHERE email = $2) \
                 AND (SELECT count(*) FROM portal_roles WHERE role = 'admin' AND company_id = $1) > 1 \
                 RETURNING person_id",
                vec![company_id.into(), normalize_email(email).into()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub async fn has_operator(&self) -> Result<bool> {
        let rows = self
            .engine
            .query(
                "SELECT count(*) FROM portal_roles WHERE role = 'operator'",
                vec![],
            )
            .await?;
        Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0)
    }

    // ---- passwords ----

    /// Sets a person's password hash; `verified` also marks their email as verified.
    pub async fn set_password_hash(
        &self,
        person_id: &str,
        hash: &str,
        verified: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let verified_at = verified.then(|| now.timestamp_millis());
        let rows = self
            .engine
            .write(
                "UPDATE persons SET password_hash = $1, email_verified_at = COALESCE(email_verified_at, $2) \
                 WHERE id = $3 RETURNING id",
                vec![hash.into(), verified_at.into(), person_id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("person"));
        }
        Ok(())
    }

    pub async fn set_time_zone(&self, person_id: &str, tz: chrono_tz::Tz) -> Result<()> {
        let rows = self
            .engine
            .write(
                "UPDATE persons SET time_zone = $1 WHERE id = $2 RETURNING id",
                vec![tz.name().into(), person_id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("person"));
        }
        Ok(())
    }

    // ---- sessions ----

    pub async fn create_session(
        &self,
        id_hash: &str,
        person_id: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO portal_sessions (id_hash, person_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                vec![id_hash.into(), person_id.into(), csrf.into(), ms(now), ms(expires_at)],
            )
            .await?;
        Ok(())
    }

    /// The session with that hashed id, unless it has expired.
    pub async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>> {
        let rows = self
            .engine
            .query(
                "SELECT person_id, csrf, created_at, expires_at FROM portal_sessions WHERE id_hash = $1 AND expires_at > $2",
                vec![id_hash.into(), ms(now)],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(SessionRecord {
                    person_id: r.text(0)?,
                    csrf: r.text(1)?,
                    created_at: time(r.int(2)?)?,
                    expires_at: time(r.int(3)?)?,
                })
            })
            .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.engine
            .write(
                "DELETE FROM portal_sessions WHERE id_hash = $1",
                vec![id_hash.into()],
            )
            .await?;
        Ok(())
    }

    /// Ends every session of a person but `keep` (after a password change), and expired ones.
    pub async fn delete_other_sessions(
        &self,
        person_id: &str,
        keep: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .transaction(vec![
                (
                    "DELETE FROM portal_sessions WHERE person_id = $1 AND id_hash <> $2",
                    vec![person_id.into(), keep.into()],
                ),
                (
                    "DELETE FROM portal_sessions WHERE expires_at <= $1",
                    vec![ms(now)],
                ),
            ])
            .await?;
        Ok(())
    }

    // ---- one-time form tokens ----

    /// Records that the form whose nonce hashes to `id_hash` was sent: true the first time,
    /// false when it was sent before (a refresh, a second click, a replay).
    pub async fn use_form_token(&self, id_hash: &str, expires_at: DateTime<Utc>) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "INSERT INTO form_tokens (id_hash, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (id_hash) DO NOTHING RETURNING id_hash",
                vec![id_hash.into(), ms(expires_at)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Forgets the tokens of forms whose sessions have expired; how many went.
    pub async fn prune_form_tokens(&self, now: DateTime<Utc>) -> Result<u64> {
        let rows = self
            .engine
            .write(
                "DELETE FROM form_tokens WHERE expires_at <= $1 RETURNING id_hash",
                vec![ms(now)],
            )
            .await?;
        Ok(rows.len() as u64)
    }

    // ---- emailed links ----

    pub async fn create_link(
        &self,
        token_hash: &str,
        purpose: &str,
        email: &str,
        company_id: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO portal_links (token_hash, purpose, email, company_id, created_at, expires_at, used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                vec![
                    token_hash.into(),
                    purpose.into(),
                    normalize_email(email).into(),
                    company_id.into(),
                    ms(now),
                    ms(expires_at),
                ],
            )
            .await?;
        Ok(())
    }

    /// The addresses with a usable link of `purpose` for `company_id`: each address once, with
    /// when its latest was sent and when its last expires.
    pub async fn pending_links(
        &self,
        purpose: &str,
        company_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<PendingLink>> {
        self.all(
            "SELECT email, max(created_at), max(expires_at) FROM portal_links \
             WHERE purpose = $1 AND company_id = $2 AND used_at IS NULL AND expires_at > $3 \
             GROUP BY email ORDER BY email",
            vec![purpose.into(), company_id.into(), ms(now)],
            |r| {
                Ok(PendingLink {
                    email: r.text(0)?,
                    sent_at: time(r.int(1)?)?,
                    expires_at: time(r.int(2)?)?,
                })
            },
        )
        .await
    }

    /// Deletes the unused links of `purpose` for `company_id` sent to `email`: they no longer
    /// work. How many there were.
    pub async fn cancel_links(&self, purpose: &str, company_id: &str, email: &str) -> Result<u64> {
        let rows = self
            .engine
            .write(
                "DELETE FROM portal_links WHERE purpose = $1 AND company_id = $2 AND email = $3 \
                 AND used_at IS NULL RETURNING token_hash",
                vec![
                    purpose.into(),
                    company_id.into(),
                    normalize_email(email).into(),
                ],
            )
            .await?;
        Ok(rows.len() as u64)
    }

    /// A link that is still usable, without using it.
    pub async fn link(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<PortalLink>> {
        self.one(
            concatcp!(
                "SELECT ",
                LINK_COLS,
                " FROM portal_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
            ),
            vec![token_hash.into(), ms(now)],
            link,
        )
        .await
    }

    /// Uses a link: only the first caller gets it.
    pub async fn take_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalLink>> {
        let rows = self
            .engine
            .write(
                concatcp!(
                    "UPDATE portal_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING ",
                    LINK_COLS
                ),
                vec![ms(now), token_hash.into()],
            )
            .await?;
        rows.first().map(link).transpose()
    }

    /// Uses a first-run link (`operator_setup`) to create the first operator: a new person with
    /// that email and password hash, granted the operator role. All or nothing, and only while
    /// no operator exists: two uses at once (of one link or of two) make exactly one operator.
    /// `None` when the link is unusable (used, expired, for another email) or an operator exists;
    /// `Conflict` when a person already has the email (nothing changed, the link still works).
    pub async fn create_first_operator(
        &self,
        token_hash: &str,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Person>> {
        let id = crate::new_id();
        let email = normalize_email(email);
        // Serialises first-operator creation across replicas; SQLite's writer is one already.
        let lock = if self.engine.is_postgres() {
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(7262736503)) AS l"
        } else {
            "SELECT 1"
        };
        // The conditions are checked by the insert itself, inside the transaction: nothing can
        // slip between a check and the write.
        let out = self
            .engine
            .transaction(vec![
                (lock, vec![]),
                (
                    "INSERT INTO persons (id, email, password_hash, time_zone, master_locked, created_at, email_verified_at) \
                     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), 'UTC', 0, CAST($4 AS BIGINT), CAST($4 AS BIGINT) \
                     WHERE EXISTS (SELECT 1 FROM portal_links WHERE token_hash = $5 AND purpose = 'operator_setup' \
                                   AND used_at IS NULL AND expires_at > $4 AND (email = '' OR email = $2)) \
                       AND NOT EXISTS (SELECT 1 FROM portal_roles WHERE role = 'operator') \
                     RETURNING id",
                    vec![(&id).into(), (&email).into(), password_hash.into(), ms(now), token_hash.into()],
                ),
                (
                    "INSERT INTO portal_roles (person_id, role, company_id, created_at) \
                     SELECT id, 'operator', '', created_at FROM persons WHERE id = $1",
                    vec![(&id).into()],
                ),
                // Every first-run link dies with the first operator.
                (
                    "UPDATE portal_links SET used_at = $1 WHERE purpose = 'operator_setup' AND used_at IS NULL \
                     AND EXISTS (SELECT 1 FROM persons WHERE id = $2)",
                    vec![ms(now), (&id).into()],
                ),
            ])
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a person with email {email}")),
                e => e,
            })?;
        if out.get(1).is_none_or(|rows| rows.is_empty()) {
            return Ok(None);
        }
        self.person(&id).await
    }

    // ---- pairing ----

    pub async fn create_pairing_code(
        &self,
        code_hash: &str,
        person_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO pairing_codes (code_hash, person_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, NULL)",
                vec![code_hash.into(), person_id.into(), ms(now), ms(expires_at)],
            )
            .await?;
        Ok(())
    }

    /// Uses a pairing code; returns its person. A code works once, before it expires.
    pub async fn take_pairing_code(
        &self,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let rows = self
            .engine
            .write(
                "UPDATE pairing_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING person_id",
                vec![ms(now), code_hash.into()],
            )
            .await?;
        rows.first().map(|r| r.text(0)).transpose()
    }

    // ---- reads for the pages ----

    pub async fn account_by_id(&self, id: &str) -> Result<Option<Account>> {
        self.one(
            concatcp!(
                "SELECT ",
                ACCOUNT_COLS,
                " FROM accounts a LEFT JOIN persons p ON p.id = a.person_id WHERE a.id = $1"
            ),
            vec![id.into()],
            account_row,
        )
        .await
    }

    /// When a person verified their email, if they did.
    pub async fn email_verified_at(&self, person_id: &str) -> Result<Option<DateTime<Utc>>> {
        let rows = self
            .engine
            .query(
                "SELECT email_verified_at FROM persons WHERE id = $1",
                vec![person_id.into()],
            )
            .await?;
        match rows.first() {
            Some(r) => opt_time(r.opt_int(0)?),
            None => Err(StoreError::NotFound("person")),
        }
    }
}

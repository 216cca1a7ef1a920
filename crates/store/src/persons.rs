//! People: who they are, their passwords' hashes and their master lock.

use chrono::{DateTime, Utc};

use crate::audit::{self, AuditAction, AuditBy, AuditState};
use crate::engine::Row;
use crate::{
    ms, new_id, normalize_email, parse, time, NewPerson, Person, Result, Store, StoreError,
    PERSON_COLS,
};

impl Store {
    pub async fn create_person(&self, new: &NewPerson, now: DateTime<Utc>) -> Result<Person> {
        let id = new_id();
        let email = normalize_email(&new.email);
        self.engine
            .write(
                "INSERT INTO persons (id, email, password_hash, first_name, last_name, phone, time_zone, master_locked, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
                vec![
                    (&id).into(),
                    (&email).into(),
                    new.password_hash.as_deref().into(),
                    new.first_name.as_deref().into(),
                    new.last_name.as_deref().into(),
                    new.phone.as_deref().into(),
                    new.time_zone.name().into(),
                    ms(now),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!("a person with email {email}")),
                e => e,
            })?;
        self.person_by_email(&email)
            .await?
            .ok_or(StoreError::NotFound("person"))
    }

    pub async fn person_by_email(&self, email: &str) -> Result<Option<Person>> {
        self.one(
            sql!("SELECT ", PERSON_COLS, " FROM persons WHERE email = $1"),
            vec![normalize_email(email).into()],
            person,
        )
        .await
    }

    pub async fn person(&self, id: &str) -> Result<Option<Person>> {
        self.one(
            sql!("SELECT ", PERSON_COLS, " FROM persons WHERE id = $1"),
            vec![id.into()],
            person,
        )
        .await
    }

    pub async fn persons(&self, limit: i64) -> Result<Vec<Person>> {
        self.all(
            sql!(
                "SELECT ",
                PERSON_COLS,
                " FROM persons ORDER BY email LIMIT $1"
            ),
            vec![limit.into()],
            person,
        )
        .await
    }

    pub async fn password_hash(&self, email: &str) -> Result<Option<(String, Option<String>)>> {
        let rows = self
            .engine
            .query(
                "SELECT id, password_hash FROM persons WHERE email = $1",
                vec![normalize_email(email).into()],
            )
            .await?;
        rows.first()
            .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
            .transpose()
    }

    /// Turns the master lock ("lock everything") on or off, and records the change in the
    /// audit trail (the person row is read and, on PostgreSQL, locked first: the state recorded
    /// as before is the one replaced). Turning on what is on is recorded too: someone asked.
    pub async fn set_master_lock(
        &self,
        person_id: &str,
        on: bool,
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<()> {
        const READ: &str = "SELECT master_locked FROM persons WHERE id = $1";
        let read = if self.is_postgres() {
            sql!(READ, " FOR UPDATE")
        } else {
            READ
        };
        let (person, by) = (person_id.to_string(), by.clone());
        let onoff = |b: bool| AuditState::new(if b { "on" } else { "off" }, None, false);
        self.engine
            .read_modify_write(vec![(read, vec![person_id.into()])], move |rows| {
                let Some(row) = rows.first().and_then(|r| r.first()) else {
                    return Err(StoreError::NotFound("person"));
                };
                let was = row.flag(0)?;
                let action = if on {
                    AuditAction::LockAllOn
                } else {
                    AuditAction::LockAllOff
                };
                let record = audit::insert(&audit::Record {
                    at: now,
                    app_id: None,
                    account_id: None,
                    account: None,
                    person_id: Some(&person),
                    action,
                    by: &by,
                    old: Some(&onoff(was)),
                    new: Some(&onoff(on)),
                    detail: None,
                });
                let update = (
                    "UPDATE persons SET master_locked = $1 WHERE id = $2",
                    vec![on.into(), person.as_str().into()],
                );
                Ok((vec![update, record], ()))
            })
            .await
    }
}

pub(crate) fn person(r: &Row) -> Result<Person> {
    Ok(Person {
        id: r.text(0)?,
        email: r.text(1)?,
        first_name: r.opt_text(2)?,
        last_name: r.opt_text(3)?,
        phone: r.opt_text(4)?,
        time_zone: parse(&r.text(5)?)?,
        master_locked: r.flag(6)?,
        created_at: time(r.int(7)?)?,
    })
}

//! Lock schedules of a person or of one account.

use chrono::{DateTime, Utc};
use deadbolt_core::Schedule;

use crate::audit::{self, AuditAction, AuditBy};
use crate::engine::Row;
use crate::{ms, new_id, time, Result, ScheduleOwner, ScheduleRecord, Store, StoreError};

impl Store {
    /// Adds a weekly lock window to a person (all their accounts) or to one account, and
    /// records it in the audit trail (with the account's application and name, read in the
    /// same transaction).
    pub async fn add_schedule(
        &self,
        owner: &ScheduleOwner,
        s: Schedule,
        now: DateTime<Utc>,
        by: &AuditBy,
    ) -> Result<ScheduleRecord> {
        let id = new_id();
        let (person_id, account_id) = match owner {
            ScheduleOwner::Person(p) => (Some(p.clone()), None),
            ScheduleOwner::Account {
                person_id,
                account_id,
            } => (person_id.clone(), Some(account_id.clone())),
        };
        let read = match &account_id {
            Some(a) => vec![(
                "SELECT app_id, account, person_id FROM accounts WHERE id = $1",
                vec![a.as_str().into()],
            )],
            None => vec![],
        };
        let (sid, pid, aid, by) = (
            id.clone(),
            person_id.clone(),
            account_id.clone(),
            by.clone(),
        );
        self.engine
            .read_modify_write(read, move |rows| {
                let account = rows.first().and_then(|r| r.first());
                if aid.is_some() && account.is_none() {
                    return Err(StoreError::NotFound("person or account"));
                }
                let (app_id, name, owner) = match account {
                    Some(r) => (Some(r.text(0)?), Some(r.text(1)?), r.opt_text(2)?),
                    None => (None, None, None),
                };
                let insert = (
                    "INSERT INTO schedules (id, person_id, account_id, days, start_minute, end_minute, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    vec![
                        sid.as_str().into(),
                        pid.as_deref().into(),
                        aid.as_deref().into(),
                        i64::from(s.days).into(),
                        i64::from(s.start_minute).into(),
                        i64::from(s.end_minute).into(),
                        ms(now),
                    ],
                );
                let record = audit::insert(&audit::Record {
                    at: now,
                    app_id: app_id.as_deref(),
                    account_id: aid.as_deref(),
                    account: name.as_deref(),
                    person_id: pid.as_deref().or(owner.as_deref()),
                    action: AuditAction::ScheduleAdded,
                    by: &by,
                    old: None,
                    new: None,
                    detail: Some(&s.to_string()),
                });
                Ok((vec![insert, record], ()))
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("person or account"),
                e => e,
            })?;
        Ok(ScheduleRecord {
            id,
            person_id,
            account_id,
            schedule: s,
            created_at: now,
        })
    }

    /// A person's schedules and those of their accounts.
    pub async fn person_schedules(&self, person_id: &str) -> Result<Vec<ScheduleRecord>> {
        let rows = self
            .engine
            .query(
                "SELECT id, person_id, account_id, days, start_minute, end_minute, created_at FROM schedules \
                 WHERE person_id = $1 OR account_id IN (SELECT id FROM accounts WHERE person_id = $1) ORDER BY created_at, id",
                vec![person_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleRecord {
                    id: r.text(0)?,
                    person_id: r.opt_text(1)?,
                    account_id: r.opt_text(2)?,
                    schedule: schedule_at(r, 3)?,
                    created_at: time(r.int(6)?)?,
                })
            })
            .collect()
    }

    /// Deletes a schedule and records it in the audit trail; one transaction, the schedule
    /// read (and on PostgreSQL locked) first so that two deletes record one removal.
    pub async fn delete_schedule(&self, id: &str, now: DateTime<Utc>, by: &AuditBy) -> Result<()> {
        const READ: &str = "SELECT s.person_id, s.account_id, s.days, s.start_minute, s.end_minute, a.app_id, a.account, a.person_id \
             FROM schedules s LEFT JOIN accounts a ON a.id = s.account_id WHERE s.id = $1";
        let read = if self.is_postgres() {
            sql!(READ, " FOR UPDATE OF s")
        } else {
            READ
        };
        let (sid, by) = (id.to_string(), by.clone());
        self.engine
            .read_modify_write(vec![(read, vec![id.into()])], move |rows| {
                let Some(r) = rows.first().and_then(|r| r.first()) else {
                    return Err(StoreError::NotFound("schedule"));
                };
                let (person, account_id) = (r.opt_text(0)?.or(r.opt_text(7)?), r.opt_text(1)?);
                let (app_id, name) = (r.opt_text(5)?, r.opt_text(6)?);
                let detail = schedule_at(r, 2)?.to_string();
                let record = audit::insert(&audit::Record {
                    at: now,
                    app_id: app_id.as_deref(),
                    account_id: account_id.as_deref(),
                    account: name.as_deref(),
                    person_id: person.as_deref(),
                    action: AuditAction::ScheduleRemoved,
                    by: &by,
                    old: None,
                    new: None,
                    detail: Some(&detail),
                });
                let delete = (
                    "DELETE FROM schedules WHERE id = $1",
                    vec![sid.as_str().into()],
                );
                Ok((vec![delete, record], ()))
            })
            .await
    }
}

pub(crate) fn schedule(r: &Row) -> Result<Schedule> {
    schedule_at(r, 0)
}

pub(crate) fn schedule_at(r: &Row, i: usize) -> Result<Schedule> {
    let small =
        |v: i64| u16::try_from(v).map_err(|_| StoreError::Corrupt(format!("schedule value {v}")));
    let days = u8::try_from(r.int(i)?).map_err(|_| StoreError::Corrupt("schedule days".into()))?;
    Schedule::new(days, small(r.int(i + 1)?)?, small(r.int(i + 2)?)?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

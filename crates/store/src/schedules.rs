//! Lock schedules of a person or of one account.

use chrono::{DateTime, Utc};
use deadbolt_core::Schedule;

use crate::engine::Row;
use crate::{ms, new_id, time, Result, ScheduleOwner, ScheduleRecord, Store, StoreError};

impl Store {
    /// Adds a weekly lock window to a person (all their accounts) or to one account.
    pub async fn add_schedule(
        &self,
        owner: &ScheduleOwner,
        s: Schedule,
        now: DateTime<Utc>,
    ) -> Result<ScheduleRecord> {
        let id = new_id();
        let (person_id, account_id) = match owner {
            ScheduleOwner::Person(p) => (Some(p.as_str()), None),
            ScheduleOwner::Account {
                person_id,
                account_id,
            } => (person_id.as_deref(), Some(account_id.as_str())),
        };
        self.engine
            .write(
                "INSERT INTO schedules (id, person_id, account_id, days, start_minute, end_minute, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    (&id).into(),
                    person_id.into(),
                    account_id.into(),
                    i64::from(s.days).into(),
                    i64::from(s.start_minute).into(),
                    i64::from(s.end_minute).into(),
                    ms(now),
                ],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::NotFound("person or account"),
                e => e,
            })?;
        Ok(ScheduleRecord {
            id,
            person_id: person_id.map(String::from),
            account_id: account_id.map(String::from),
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

    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        let rows = self
            .engine
            .write(
                "DELETE FROM schedules WHERE id = $1 RETURNING id",
                vec![id.into()],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("schedule"));
        }
        Ok(())
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

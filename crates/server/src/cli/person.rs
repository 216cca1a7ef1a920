//! `deadbolt person` and `deadbolt schedule`: the people who hold accounts, their master lock and
//! their weekly lock windows.

use deadbolt_core::Schedule;
use deadbolt_store::{Person, ScheduleRecord};
use serde::Serialize;
use serde_json::Value;

use super::{view, PersonCmd, ScheduleCmd};
use crate::service::{By, Service};

pub(super) async fn run(service: &Service, cmd: &PersonCmd) -> anyhow::Result<Value> {
    match cmd {
        PersonCmd::Create {
            email,
            password,
            time_zone,
        } => view(create(service, email, password.as_deref(), time_zone).await?),
        PersonCmd::Show { email } => view(show(service, email).await?),
        PersonCmd::List { limit } => view(list(service, *limit).await?),
        PersonCmd::LockAll { email } => view(master_lock(service, email, true).await?),
        PersonCmd::UnlockAll { email } => view(master_lock(service, email, false).await?),
    }
}

pub(super) async fn run_schedule(service: &Service, cmd: &ScheduleCmd) -> anyhow::Result<Value> {
    match cmd {
        ScheduleCmd::Add {
            person,
            app,
            account,
            days,
            window,
        } => {
            let target = app.as_deref().zip(account.as_deref());
            view(add_schedule(service, person, target, days, window).await?)
        }
        ScheduleCmd::List { person } => view(schedules(service, person).await?),
        ScheduleCmd::Delete { id } => view(delete_schedule(service, id).await?),
    }
}

/// A new person.
#[derive(Serialize)]
struct Created {
    email: String,
    id: String,
}

async fn create(
    service: &Service,
    email: &str,
    password: Option<&str>,
    time_zone: &str,
) -> anyhow::Result<Created> {
    let p = service
        .create_person(email, password, Some(time_zone))
        .await?;
    Ok(Created {
        email: p.email,
        id: p.id,
    })
}

async fn show(service: &Service, email: &str) -> anyhow::Result<Person> {
    Ok(service.person_by_email(email).await?)
}

#[derive(Serialize)]
struct Persons {
    persons: Vec<Person>,
}

async fn list(service: &Service, limit: i64) -> anyhow::Result<Persons> {
    Ok(Persons {
        persons: service.persons(limit).await?,
    })
}

/// The master lock as it now is.
#[derive(Serialize)]
struct MasterLock {
    email: String,
    master_lock: bool,
}

async fn master_lock(service: &Service, email: &str, on: bool) -> anyhow::Result<MasterLock> {
    Ok(MasterLock {
        email: service.set_master_lock(&By::CLI, email, on).await?.email,
        master_lock: on,
    })
}

/// A new schedule, with its days and window as given.
#[derive(Serialize)]
struct ScheduleAdded<'a> {
    account_id: Option<String>,
    days: &'a str,
    id: String,
    window: &'a str,
}

/// `target` is an application's id and an account's name: that account only; `None`: all the
/// person's accounts.
async fn add_schedule<'a>(
    service: &Service,
    person: &str,
    target: Option<(&str, &str)>,
    days: &'a str,
    window: &'a str,
) -> anyhow::Result<ScheduleAdded<'a>> {
    let schedule = Schedule::parse(days, window)?;
    let s = service
        .add_schedule(&By::CLI, person, target, schedule)
        .await?;
    Ok(ScheduleAdded {
        account_id: s.account_id,
        days,
        id: s.id,
        window,
    })
}

#[derive(Serialize)]
struct Schedules {
    schedules: Vec<ScheduleView>,
}

/// A schedule as stored: its days as the bit set (Monday is 1), its window as HH:MM.
#[derive(Serialize)]
struct ScheduleView {
    account_id: Option<String>,
    days: u8,
    end: String,
    id: String,
    start: String,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(s: ScheduleRecord) -> Self {
        ScheduleView {
            account_id: s.account_id,
            days: s.schedule.days,
            end: hhmm(s.schedule.end_minute),
            id: s.id,
            start: hhmm(s.schedule.start_minute),
        }
    }
}

async fn schedules(service: &Service, person: &str) -> anyhow::Result<Schedules> {
    let p = service.person_by_email(person).await?;
    let list = service.person_schedules(&p.id).await?;
    Ok(Schedules {
        schedules: list.into_iter().map(ScheduleView::from).collect(),
    })
}

#[derive(Serialize)]
struct ScheduleDeleted<'a> {
    deleted: bool,
    id: &'a str,
}

async fn delete_schedule<'a>(
    service: &Service,
    id: &'a str,
) -> anyhow::Result<ScheduleDeleted<'a>> {
    service.delete_schedule(&By::CLI, id).await?;
    Ok(ScheduleDeleted { deleted: true, id })
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

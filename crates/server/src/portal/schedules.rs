//! A person's schedules (weekly lock windows of all their accounts or of one), their time zone,
//! and the pairing codes that let a company's back end pair an account with them.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use deadbolt_core::Schedule;
use deadbolt_store::{Account, ScheduleOwner};
use rand::Rng;
use serde::Deserialize;

use super::audit::by_person;
use super::csrf::CsrfForm;
use super::error::PageError;
use super::pages::{local_time, render, Layout};
use super::person::{apps_by_id, my_account, PAIRING_MINUTES};
use super::session::{ClientAddr, Me};
use super::PortalState;
use crate::crypto::token_hash;
use crate::service::parse_time_zone;

// ---- schedules ----

pub struct ScheduleView {
    pub id: String,
    pub days: String,
    pub window: String,
    pub target: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    l: Layout,
    csrf: String,
    time_zone: String,
    /// Every IANA zone, for the picker.
    zones: Vec<&'static str>,
    schedules: Vec<ScheduleView>,
    targets: Vec<Choice>,
}

fn days_text(days: u8) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    match days {
        Schedule::ALL_DAYS => "Every day".into(),
        0b001_1111 => "Weekdays".into(),
        0b110_0000 => "Weekends".into(),
        d => (0..7)
            .filter(|i| d & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

pub async fn schedules_page(State(s): State<PortalState>, me: Me) -> Result<Response, PageError> {
    let accounts = s.service.person_accounts(&me.person.id).await?;
    let apps = apps_by_id(&s, accounts.iter().map(|a| a.app_id.clone())).await?;
    let name = |a: &Account| {
        let app = apps.get(&a.app_id).map_or("?", |x| x.name.as_str());
        format!("{} · {}", app, a.account)
    };
    let schedules = s
        .service
        .person_schedules(&me.person.id)
        .await?
        .into_iter()
        .map(|r| ScheduleView {
            id: r.id,
            days: days_text(r.schedule.days),
            window: if r.schedule.start_minute == r.schedule.end_minute {
                "all day".into()
            } else {
                format!(
                    "{}–{}",
                    hhmm(r.schedule.start_minute),
                    hhmm(r.schedule.end_minute)
                )
            },
            target: match &r.account_id {
                None => "All my accounts".into(),
                Some(id) => accounts
                    .iter()
                    .find(|a| &a.id == id)
                    .map_or_else(|| "An account".into(), name),
            },
        })
        .collect();
    let mut targets = vec![Choice {
        value: String::new(),
        label: "All my accounts".into(),
    }];
    targets.extend(accounts.iter().map(|a| Choice {
        value: a.id.clone(),
        label: name(a),
    }));
    let page = SchedulesPage {
        l: Layout::signed_in("Schedules", &me, "/me/schedules"),
        csrf: me.csrf.clone(),
        time_zone: me.person.time_zone.name().to_string(),
        zones: chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect(),
        schedules,
        targets,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    account: String,
    days: String,
    from: String,
    to: String,
}

pub async fn add_schedule(
    State(s): State<PortalState>,
    addr: ClientAddr,
    CsrfForm(me, f): CsrfForm<ScheduleForm>,
) -> Result<Redirect, PageError> {
    let schedule = Schedule::parse(&f.days, &format!("{}-{}", f.from, f.to))
        .map_err(|e| PageError::bad(e.to_string()))?;
    let owner = if f.account.is_empty() {
        ScheduleOwner::Person(me.person.id.clone())
    } else {
        let acc = my_account(&s, &me, &f.account).await?;
        ScheduleOwner::Account {
            person_id: Some(me.person.id.clone()),
            account_id: acc.id,
        }
    };
    s.service
        .add_schedule_for(&by_person(&me, &addr), &owner, schedule, s.service.now())
        .await?;
    Ok(Redirect::to("/me/schedules"))
}

pub async fn delete_schedule(
    State(s): State<PortalState>,
    Path(id): Path<String>,
    addr: ClientAddr,
    CsrfForm(me, _): CsrfForm,
) -> Result<Redirect, PageError> {
    let mine = s.service.person_schedules(&me.person.id).await?;
    if !mine.iter().any(|r| r.id == id) {
        return Err(PageError::not_found());
    }
    s.service
        .delete_schedule(&by_person(&me, &addr), &id)
        .await?;
    Ok(Redirect::to("/me/schedules"))
}

#[derive(Deserialize)]
pub struct TimeZoneForm {
    time_zone: String,
}

pub async fn set_time_zone(
    State(s): State<PortalState>,
    CsrfForm(me, f): CsrfForm<TimeZoneForm>,
) -> Result<Redirect, PageError> {
    let tz = parse_time_zone(f.time_zone.trim())?;
    s.service.set_time_zone(&me.person.id, tz).await?;
    Ok(Redirect::to("/me/schedules"))
}

// ---- pairing ----

#[derive(Template)]
#[template(path = "pairing.html")]
struct PairingPage {
    l: Layout,
    csrf: String,
    code: Option<String>,
    expires: String,
}

pub async fn pairing_page(me: Me) -> Result<Response, PageError> {
    let page = PairingPage {
        l: Layout::signed_in("Pairing", &me, "/me/pairing"),
        csrf: me.csrf.clone(),
        code: None,
        expires: String::new(),
    };
    Ok(render(&page)?.into_response())
}

/// Pairing codes avoid letters and digits that read alike.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

pub async fn create_pairing_code(
    State(s): State<PortalState>,
    CsrfForm(me, _): CsrfForm,
) -> Result<Response, PageError> {
    let mut rng = rand::rngs::OsRng;
    let code: String = (0..8)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    let now = s.service.now();
    let expires = now + Duration::minutes(PAIRING_MINUTES);
    s.service
        .create_pairing_code(&token_hash(&code), &me.person.id, now, expires)
        .await?;
    let page = PairingPage {
        l: Layout::signed_in("Pairing", &me, "/me/pairing"),
        csrf: me.csrf.clone(),
        code: Some(format!("{}-{}", &code[..4], &code[4..])),
        expires: local_time(expires, me.person.time_zone),
    };
    Ok(render(&page)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_read_as_words() {
        assert_eq!(days_text(Schedule::ALL_DAYS), "Every day");
        assert_eq!(days_text(0b110_0000), "Weekends");
        assert_eq!(days_text(0b000_0101), "Mon, Wed");
        assert_eq!(hhmm(23 * 60 + 5), "23:05");
    }
}

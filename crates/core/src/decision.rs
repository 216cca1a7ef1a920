//! The lock decision: DESIGN.md's five rules as a pure function of its inputs and `now`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an application answers for accounts it has not enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnenrolledPolicy {
    #[default]
    Allow,
    Deny,
}

/// An enrolled account's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccountState {
    Locked,
    #[default]
    Unlocked,
}

macro_rules! str_enum {
    ($t:ty, $what:literal, $($v:ident => $s:literal),+) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(Self::$v),)+
                    _ => Err(crate::Error::Invalid(format!(
                        concat!("invalid ", $what, " {:?}: expected one of ", $($s, " "),+), s
                    ))),
                }
            }
        }
    };
}

str_enum!(UnenrolledPolicy, "unenrolled policy", Allow => "allow", Deny => "deny");
str_enum!(AccountState, "account state", Locked => "locked", Unlocked => "unlocked");

/// Which rule made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UnenrolledAllow,
    UnenrolledDeny,
    MasterLock,
    UnlockWindow,
    Schedule,
    AccountLocked,
    AccountUnlocked,
}

str_enum!(Reason, "reason",
    UnenrolledAllow => "unenrolled_allow",
    UnenrolledDeny => "unenrolled_deny",
    MasterLock => "master_lock",
    UnlockWindow => "unlock_window",
    Schedule => "schedule",
    AccountLocked => "account_locked",
    AccountUnlocked => "account_unlocked");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub locked: bool,
    pub reason: Reason,
}

/// An enrolled account's lock inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub state: AccountState,
    pub unlocked_until: Option<DateTime<Utc>>,
}

/// The lock inputs of the person an account belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLocks {
    pub master_locked: bool,
    pub time_zone: Tz,
}

/// A weekly window during which accounts are locked, in the person's time zone.
/// `days` is a bit set, bit 0 = Monday … bit 6 = Sunday; minutes count from local midnight.
/// A window with `end <= start` runs past midnight into the next day (`23:00–07:00`);
/// `start == end` covers the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub days: u8,
    pub start_minute: u16,
    pub end_minute: u16,
}

impl Schedule {
    pub const ALL_DAYS: u8 = 0b111_1111;

    pub fn new(days: u8, start_minute: u16, end_minute: u16) -> Result<Self, crate::Error> {
        if days == 0 || days > Self::ALL_DAYS {
            return Err(crate::Error::Invalid(
                "a schedule needs at least one day".into(),
            ));
        }
        if start_minute >= 1440 || end_minute >= 1440 {
            return Err(crate::Error::Invalid(
                "schedule times are between 00:00 and 23:59".into(),
            ));
        }
        Ok(Self {
            days,
            start_minute,
            end_minute,
        })
    }

    /// Parses `mon,tue` / `weekdays` / `weekends` / `all` and `HH:MM-HH:MM`.
    pub fn parse(days: &str, window: &str) -> Result<Self, crate::Error> {
        let bad = |what: &str| crate::Error::Invalid(what.to_string());
        let mut bits = 0u8;
        for d in days.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            bits |= match d.as_str() {
                "mon" => 1,
                "tue" => 2,
                "wed" => 4,
                "thu" => 8,
                "fri" => 16,
                "sat" => 32,
                "sun" => 64,
                "weekdays" => 0b001_1111,
                "weekends" => 0b110_0000,
                "all" | "daily" => Self::ALL_DAYS,
                _ => {
                    return Err(bad(
                        "days are mon,tue,wed,thu,fri,sat,sun, weekdays, weekends or all",
                    ))
                }
            };
        }
        let (a, b) = window
            .split_once('-')
            .ok_or_else(|| bad("a window is written HH:MM-HH:MM"))?;
        Self::new(bits, parse_hhmm(a)?, parse_hhmm(b)?)
    }

    /// Whether the window covers the local time `(weekday 0 = Monday, minute of day)`.
    pub fn covers_local(&self, weekday: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << d) != 0;
        let yesterday = (weekday + 6) % 7;
        if self.start_minute == self.end_minute {
            on(weekday)
        } else if self.start_minute < self.end_minute {
            on(weekday) && minute >= self.start_minute && minute < self.end_minute
        } else {
            (on(weekday) && minute >= self.start_minute)
                || (on(yesterday) && minute < self.end_minute)
        }
    }

    /// When the window next begins after `now` (strictly), in the time zone `tz`: the lock a
    /// person can expect next. A start that falls in a daylight-saving gap begins an hour later
    /// by the clock (the instant it names once the clocks moved on); one that occurs twice, at
    /// the first.
    pub fn next_start(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        let today = now.with_timezone(&tz).date_naive();
        // Eight days: today's start may have passed, and the same weekday next week follows.
        (0..8).find_map(|offset| {
            let day = today + chrono::Duration::days(offset);
            if self.days & (1 << day.weekday().num_days_from_monday()) == 0 {
                return None;
            }
            let start =
                day.and_hms_opt(0, 0, 0)? + chrono::Duration::minutes(i64::from(self.start_minute));
            let at = match tz.from_local_datetime(&start) {
                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t,
                // In a gap: the clocks jumped past the start; the hour after is on the far side.
                chrono::LocalResult::None => tz
                    .from_local_datetime(&(start + chrono::Duration::hours(1)))
                    .earliest()?,
            }
            .with_timezone(&Utc);
            (at > now).then_some(at)
        })
    }

    pub fn covers(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        let local = now.with_timezone(&tz);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        self.covers_local(local.weekday().num_days_from_monday() as u8, minute)
    }
}

/// How a person reads a schedule: `Weekdays 22:00–06:00`, `Mon, Wed all day`.
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        match self.days {
            Self::ALL_DAYS => f.write_str("Every day")?,
            0b001_1111 => f.write_str("Weekdays")?,
            0b110_0000 => f.write_str("Weekends")?,
            d => {
                let names: Vec<&str> = (0..7)
                    .filter(|i| d & (1 << i) != 0)
                    .map(|i| NAMES[i])
                    .collect();
                f.write_str(&names.join(", "))?;
            }
        }
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        if self.start_minute == self.end_minute {
            f.write_str(" all day")
        } else {
            write!(
                f,
                " {}\u{2013}{}",
                hhmm(self.start_minute),
                hhmm(self.end_minute)
            )
        }
    }
}

fn parse_hhmm(s: &str) -> Result<u16, crate::Error> {
    let bad = || crate::Error::Invalid(format!("invalid time {s:?}: write HH:MM"));
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h == 24 && m == 0 {
        return Ok(0);
    }
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Decides whether `account` is locked at `now`. Rules, first match wins:
/// 1. not enrolled → the application's unenrolled policy;
/// 2. the person's master lock → locked;
/// 3. an open temporary unlock window → not locked;
/// 4. a schedule (the person's or the account's) covering now in the person's time zone → locked;
/// 5. the account's own state.
pub fn decide(
    now: DateTime<Utc>,
    unenrolled: UnenrolledPolicy,
    enrolment: Option<&Enrolment>,
    person: Option<&PersonLocks>,
    schedules: &[Schedule],
) -> Decision {
    let Some(enrolment) = enrolment else {
        return match unenrolled {
            UnenrolledPolicy::Allow => Decision {
                locked: false,
                reason: Reason::UnenrolledAllow,
            },
            UnenrolledPolicy::Deny => Decision {
                locked: true,
                reason: Reason::UnenrolledDeny,
            },
        };
    };
    if person.is_some_and(|p| p.master_locked) {
        return Decision {
            locked: true,
            reason: Reason::MasterLock,
        };
    }
    if enrolment.unlocked_until.is_some_and(|until| until > now) {
        return Decision {
            locked: false,
            reason: Reason::UnlockWindow,
        };
    }
    let tz = person.map_or(Tz::UTC, |p| p.time_zone);
    if schedules.iter().any(|s| s.covers(now, tz)) {
        return Decision {
            locked: true,
            reason: Reason::Schedule,
        };
    }
    match enrolment.state {
        AccountState::Locked => Decision {
            locked: true,
            reason: Reason::AccountLocked,
        },
        AccountState::Unlocked => Decision {
            locked: false,
            reason: Reason::AccountUnlocked,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }
    // 2026-11-27 is a Friday.
    fn now() -> DateTime<Utc> {
        at(2026, 11, 27, 12, 0)
    }

    #[test]
    fn next_start_of_a_schedule() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // Friday 12:00 UTC is 13:00 in Paris: tonight's 22:00 (21:00 UTC) is next.
        let nights = Schedule::parse("weekdays", "22:00-06:00").unwrap();
        assert_eq!(nights.next_start(now(), tz), Some(at(2026, 11, 27, 21, 0)));
        // A weekend window: Saturday midnight, Paris time.
        let weekend = Schedule::parse("weekends", "00:00-00:00").unwrap();
        assert_eq!(weekend.next_start(now(), tz), Some(at(2026, 11, 27, 23, 0)));
        // Today's start has passed: the same weekday next week.
        let friday_morning = Schedule::parse("fri", "09:00-10:00").unwrap();
        assert_eq!(
            friday_morning.next_start(now(), Tz::UTC),
            Some(at(2026, 12, 4, 9, 0))
        );
        // A start in the spring-forward gap (02:30 on 2027-03-28 in Paris) begins after it.
        let gap = Schedule::parse("sun", "02:30-04:00").unwrap();
        assert_eq!(
            gap.next_start(at(2027, 3, 27, 12, 0), tz),
            Some(at(2027, 3, 28, 1, 30))
        );
        assert_eq!(nights.to_string(), "Weekdays 22:00\u{2013}06:00");
        assert_eq!(
            Schedule::parse("mon,wed", "00:00-00:00")
                .unwrap()
                .to_string(),
            "Mon, Wed all day"
        );
    }
    fn enrolled(state: AccountState) -> Enrolment {
        Enrolment {
            state,
            unlocked_until: None,
        }
    }
    fn person(master: bool) -> PersonLocks {
        PersonLocks {
            master_locked: master,
            time_zone: Tz::UTC,
        }
    }

    #[test]
    fn rule1_unenrolled_follows_policy() {
        let d = decide(now(), UnenrolledPolicy::Allow, None, None, &[]);
        assert_eq!(
            d,
            Decision {
                locked: false,
                reason: Reason::UnenrolledAllow
            }
        );
        let d = decide(
            now(),
            UnenrolledPolicy::Deny,
            None,
            Some(&person(true)),
            &[],
        );
        assert_eq!(
            d,
            Decision {
                locked: true,
                reason: Reason::UnenrolledDeny
            }
        );
    }

    #[test]
    fn rule2_master_lock_beats_window_and_state() {
        let e = Enrolment {
            state: AccountState::Unlocked,
            unlocked_until: Some(now() + Duration::minutes(5)),
        };
        let d = decide(
            now(),
            UnenrolledPolicy::Allow,
            Some(&e),
            Some(&person(true)),
            &[],
        );
        assert_eq!(
            d,
            Decision {
                locked: true,
                reason: Reason::MasterLock
            }
        );
    }

    #[test]
    fn rule3_window_open_then_closes_by_itself() {
        let e = Enrolment {
            state: AccountState::Locked,
            unlocked_until: Some(now() + Duration::minutes(15)),
        };
        let all_day = Schedule::new(Schedule::ALL_DAYS, 0, 0).unwrap();
        let d = decide(
            now(),
            UnenrolledPolicy::Allow,
            Some(&e),
            Some(&person(false)),
            &[all_day],
        );
        assert_eq!(
            d,
            Decision {
                locked: false,
                reason: Reason::UnlockWindow
            }
        );
        let later = now() + Duration::minutes(15);
        let d = decide(
            later,
            UnenrolledPolicy::Allow,
            Some(&e),
            Some(&person(false)),
            &[],
        );
        assert_eq!(
            d,
            Decision {
                locked: true,
                reason: Reason::AccountLocked
            }
        );
    }

    #[test]
    fn rule4_schedule_in_person_time_zone() {
        // Locked nights 23:00–07:00 in Tokyo (UTC+9). 15:00 UTC Friday is 00:00 Saturday in Tokyo.
        let nights = Schedule::parse("all", "23:00-07:00").unwrap();
        let tokyo = PersonLocks {
            master_locked: false,
            time_zone: chrono_tz::Asia::Tokyo,
        };
        let e = enrolled(AccountState::Unlocked);
        let d = decide(
            at(2026, 11, 27, 15, 0),
            UnenrolledPolicy::Allow,
            Some(&e),
            Some(&tokyo),
            &[nights],
        );
        assert_eq!(
            d,
            Decision {
                locked: true,
                reason: Reason::Schedule
            }
        );
        // 03:00 UTC is noon in Tokyo: not covered.
        let d = decide(
            at(2026, 11, 27, 3, 0),
            UnenrolledPolicy::Allow,
            Some(&e),
            Some(&tokyo),
            &[nights],
        );
        assert_eq!(
            d,
            Decision {
                locked: false,
                reason: Reason::AccountUnlocked
            }
        );
        // Without a person the account's schedules are read in UTC: 15:00 UTC is not night.
        let d = decide(
            at(2026, 11, 27, 15, 0),
            UnenrolledPolicy::Allow,
            Some(&e),
            None,
            &[nights],
        );
        assert!(!d.locked);
    }

    #[test]
    fn rule5_own_state() {
        let d = decide(
            now(),
            UnenrolledPolicy::Deny,
            Some(&enrolled(AccountState::Locked)),
            None,
            &[],
        );
        assert_eq!(
            d,
            Decision {
                locked: true,
                reason: Reason::AccountLocked
            }
        );
        let d = decide(
            now(),
            UnenrolledPolicy::Deny,
            Some(&enrolled(AccountState::Unlocked)),
            None,
            &[],
        );
        assert_eq!(
            d,
            Decision {
                locked: false,
                reason: Reason::AccountUnlocked
            }
        );
    }

    #[test]
    fn expired_window_is_ignored() {
        let e = Enrolment {
            state: AccountState::Unlocked,
            unlocked_until: Some(now() - Duration::seconds(1)),
        };
        let d = decide(now(), UnenrolledPolicy::Allow, Some(&e), None, &[]);
        assert_eq!(d.reason, Reason::AccountUnlocked);
    }

    #[test]
    fn overnight_window_wraps_into_next_day() {
        // Friday 23:00 – Saturday 07:00, Fridays only.
        let s = Schedule::parse("fri", "23:00-07:00").unwrap();
        assert!(s.covers_local(4, 23 * 60 + 30)); // Fri 23:30
        assert!(s.covers_local(5, 6 * 60 + 59)); // Sat 06:59
        assert!(!s.covers_local(5, 7 * 60)); // Sat 07:00
        assert!(!s.covers_local(5, 23 * 60 + 30)); // Sat 23:30: not a Friday
        assert!(!s.covers_local(4, 6 * 60)); // Fri 06:00: Thursday is not in the set
    }

    #[test]
    fn weekends_and_whole_days() {
        let s = Schedule::parse("weekends", "00:00-00:00").unwrap();
        assert!(s.covers_local(5, 0) && s.covers_local(6, 1439));
        assert!(!s.covers_local(4, 720));
        let day = Schedule::parse("mon", "09:00-17:00").unwrap();
        assert!(
            day.covers_local(0, 9 * 60)
                && !day.covers_local(0, 17 * 60)
                && !day.covers_local(1, 600)
        );
    }

    #[test]
    fn schedule_input_is_validated() {
        assert!(Schedule::parse("funday", "09:00-10:00").is_err());
        assert!(Schedule::parse("mon", "25:00-10:00").is_err());
        assert!(Schedule::parse("mon", "0900-1000").is_err());
        assert!(Schedule::new(0, 0, 10).is_err());
        assert!(Schedule::new(1, 1440, 10).is_err());
        assert_eq!(Schedule::parse("mon", "22:00-24:00").unwrap().end_minute, 0);
    }

    #[test]
    fn names_round_trip() {
        for r in [
            "unenrolled_allow",
            "master_lock",
            "unlock_window",
            "schedule",
            "account_locked",
        ] {
            assert_eq!(r.parse::<Reason>().unwrap().as_str(), r);
        }
        assert!("maybe".parse::<AccountState>().is_err());
    }
}

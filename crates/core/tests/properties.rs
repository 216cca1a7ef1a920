//! Properties of the lock decision and the token verifier, over generated inputs: rules that must
//! hold for every input, not only for the examples the unit tests pick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use deadbolt_core::token::{self, TokenError, TokenPolicy, VerifyingKey};
use deadbolt_core::{
    decide, AccountState, Enrolment, PersonLocks, Reason, Schedule, UnenrolledPolicy,
};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha256;

// ---- the decision ----

/// Any instant from 2001 to 2099.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (978_307_200i64..4_102_444_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn time_zone() -> impl Strategy<Value = Tz> {
    (0..chrono_tz::TZ_VARIANTS.len()).prop_map(|i| chrono_tz::TZ_VARIANTS[i])
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (1u8..=Schedule::ALL_DAYS, 0u16..1440, 0u16..1440)
        .prop_map(|(d, s, e)| Schedule::new(d, s, e).unwrap())
}

fn state() -> impl Strategy<Value = AccountState> {
    prop_oneof![Just(AccountState::Locked), Just(AccountState::Unlocked)]
}

fn policy() -> impl Strategy<Value = UnenrolledPolicy> {
    prop_oneof![Just(UnenrolledPolicy::Allow), Just(UnenrolledPolicy::Deny)]
}

/// An unlock window relative to now, in seconds: closed (≤ 0), open (> 0), or none.
fn window() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(-100_000i64..100_000)
}

/// Everything `decide` reads, with `now`.
#[derive(Debug, Clone)]
struct Inputs {
    now: DateTime<Utc>,
    policy: UnenrolledPolicy,
    enrolment: Option<Enrolment>,
    person: Option<PersonLocks>,
    schedules: Vec<Schedule>,
}

impl Inputs {
    fn decide(&self) -> deadbolt_core::Decision {
        decide(
            self.now,
            self.policy,
            self.enrolment.as_ref(),
            self.person.as_ref(),
            &self.schedules,
        )
    }
}

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        instant(),
        policy(),
        prop::option::of((state(), window())),
        prop::option::of((any::<bool>(), time_zone())),
        prop::collection::vec(schedule(), 0..4),
    )
        .prop_map(|(now, policy, enrolment, person, schedules)| Inputs {
            now,
            policy,
            enrolment: enrolment.map(|(state, w)| Enrolment {
                state,
                unlocked_until: w.map(|s| now + Duration::seconds(s)),
            }),
            person: person.map(|(master_locked, time_zone)| PersonLocks {
                master_locked,
                time_zone,
            }),
            schedules,
        })
}

fn locking(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::UnenrolledDeny | Reason::MasterLock | Reason::Schedule | Reason::AccountLocked
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_answer_agrees_with_its_reason(i in inputs()) {
        let d = i.decide();
        prop_assert_eq!(d.locked, locking(d.reason));
    }

    #[test]
    fn unenrolled_follows_the_policy_whatever_else(mut i in inputs()) {
        i.enrolment = None;
        let d = i.decide();
        prop_assert_eq!(d.locked, i.policy == UnenrolledPolicy::Deny);
        prop_assert_eq!(
            d.reason,
            if d.locked { Reason::UnenrolledDeny } else { Reason::UnenrolledAllow }
        );
    }

    #[test]
    fn a_master_lock_always_locks_an_enrolled_account(mut i in inputs(), st in state(), w in window(), tz in time_zone()) {
        i.enrolment = Some(Enrolment { state: st, unlocked_until: w.map(|s| i.now + Duration::seconds(s)) });
        i.person = Some(PersonLocks { master_locked: true, time_zone: tz });
        let d = i.decide();
        prop_assert!(d.locked);
        prop_assert_eq!(d.reason, Reason::MasterLock);
    }

    #[test]
    fn an_open_window_unlocks_unless_the_master_lock_is_on(mut i in inputs(), st in state(), open in 1i64..1_000_000) {
        i.enrolment = Some(Enrolment { state: st, unlocked_until: Some(i.now + Duration::seconds(open)) });
        let master = i.person.as_ref().is_some_and(|p| p.master_locked);
        let d = i.decide();
        prop_assert_eq!(d.locked, master);
        prop_assert_eq!(d.reason, if master { Reason::MasterLock } else { Reason::UnlockWindow });
    }

    #[test]
    fn a_closed_window_is_no_window(mut i in inputs(), st in state(), closed_ago in 0i64..1_000_000) {
        i.enrolment = Some(Enrolment { state: st, unlocked_until: Some(i.now - Duration::seconds(closed_ago)) });
        let closed = i.decide();
        i.enrolment = Some(Enrolment { state: st, unlocked_until: None });
        prop_assert_eq!(closed, i.decide());
    }

    #[test]
    fn with_nothing_else_the_account_state_decides(mut i in inputs(), st in state()) {
        i.enrolment = Some(Enrolment { state: st, unlocked_until: None });
        if let Some(p) = i.person.as_mut() {
            p.master_locked = false;
        }
        i.schedules.clear();
        let d = i.decide();
        prop_assert_eq!(d.locked, st == AccountState::Locked);
    }

    #[test]
    fn a_schedule_never_unlocks(i in inputs(), extra in schedule()) {
        let before = i.decide();
        let mut more = i.clone();
        more.schedules.push(extra);
        let after = more.decide();
        prop_assert!(after.locked || !before.locked, "{:?} then {:?}", before, after);
    }

    #[test]
    fn an_all_day_every_day_schedule_locks_unless_a_window_is_open(mut i in inputs(), st in state(), start in 0u16..1440) {
        i.enrolment = Some(Enrolment { state: st, unlocked_until: None });
        i.schedules.push(Schedule::new(Schedule::ALL_DAYS, start, start).unwrap());
        prop_assert!(i.decide().locked);
    }

    /// A window past midnight spills into the next day, but a week holds exactly its length
    /// once per chosen day (the whole day when start and end are equal).
    #[test]
    fn a_week_holds_each_window_once_per_chosen_day(s in schedule()) {
        let len = if s.start_minute == s.end_minute {
            1440
        } else {
            (u32::from(s.end_minute) + 1440 - u32::from(s.start_minute)) % 1440
        };
        let covered = (0u8..7)
            .flat_map(|d| (0u16..1440).map(move |m| (d, m)))
            .filter(|&(d, m)| s.covers_local(d, m))
            .count() as u32;
        prop_assert_eq!(covered, s.days.count_ones() * len);
    }
}

// ---- the token verifier ----

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const AUDIENCE: &str = "https://api.example.com";

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_764_230_400, 0).unwrap()
}

fn keys() -> Vec<VerifyingKey<u8>> {
    vec![VerifyingKey::new(1, KEY)]
}

fn verify(token: &str) -> Result<String, TokenError> {
    let parsed = token::parse(token)?;
    parsed
        .verify(&keys(), &TokenPolicy::new([AUDIENCE]), now())
        .map(|v| v.subject)
}

fn hs256(header: &str, claims: &str, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Claims a client could send for a valid check: the subject, and times around now.
fn valid_claims() -> impl Strategy<Value = Value> {
    let t = now().timestamp() as f64;
    (
        "[a-zA-Z0-9@._+-]{1,64}",
        -50.0f64..890.0,
        prop::option::of(-600.0f64..50.0),
        prop::option::of(-600.0f64..50.0),
        any::<bool>(),
        prop_oneof![Just("app.example.com"), Just("https://app.example.com/")],
    )
        .prop_map(move |(sub, exp, iat, nbf, whole, iss)| {
            let n = |d: f64| {
                if whole {
                    json!((t + d).floor() as i64)
                } else {
                    json!(t + d)
                }
            };
            let mut c = json!({"iss": iss, "aud": AUDIENCE, "sub": sub, "exp": n(exp)});
            if let Some(iat) = iat {
                c["iat"] = n(iat);
            }
            if let Some(nbf) = nbf {
                c["nbf"] = n(nbf);
            }
            c
        })
}

fn valid_token() -> impl Strategy<Value = (Value, String)> {
    valid_claims().prop_map(|c| {
        let t = token::sign_hs256(&c, KEY);
        (c, t)
    })
}

/// A change to a claim set: a claim replaced by another value, removed, or added.
fn claim_change() -> impl Strategy<Value = (String, Option<Value>)> {
    let name = prop_oneof![
        Just("iss".to_string()),
        Just("aud".to_string()),
        Just("sub".to_string()),
        Just("exp".to_string()),
        Just("iat".to_string()),
        Just("nbf".to_string()),
        "[a-z]{1,8}",
    ];
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(json!(["app.example.com", AUDIENCE])),
    ];
    (name, prop::option::of(value))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The generator makes valid tokens: the refusals below are the change's doing.
    #[test]
    fn a_valid_token_is_accepted((claims, token) in valid_token()) {
        prop_assert_eq!(verify(&token), Ok(claims["sub"].as_str().unwrap().to_string()));
    }

    #[test]
    fn any_byte_flipped_is_refused((_, token) in valid_token(), at in any::<prop::sample::Index>(), mask in 1u8..128) {
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        // The token is ASCII and the mask below 128: the result is still text.
        bytes[i] ^= mask;
        let flipped = String::from_utf8(bytes).unwrap();
        prop_assert!(verify(&flipped).is_err(), "byte {} ^ {:#x} accepted: {}", i, mask, flipped);
    }

    #[test]
    fn a_claim_changed_without_signing_again_is_refused((claims, token) in valid_token(), (name, value) in claim_change()) {
        let mut changed = claims.clone();
        match value {
            Some(v) => changed[&name] = v,
            None => {
                changed.as_object_mut().unwrap().remove(&name);
            }
        }
        prop_assume!(changed != claims);
        let mut parts = token.split('.');
        let (header, _, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let forged = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(changed.to_string()));
        prop_assert!(verify(&forged).is_err(), "{}", changed);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused(claims in valid_claims(), key in prop::collection::vec(any::<u8>(), 0..80)) {
        // HMAC pads short keys with zeros: a key that is ours plus trailing zeros is ours.
        let mut trimmed = key.as_slice();
        while let [rest @ .., 0] = trimmed {
            trimmed = rest;
        }
        prop_assume!(trimmed != KEY);
        let t = token::sign_hs256(&claims, &key);
        prop_assert_eq!(verify(&t), Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_is_accepted(claims in valid_claims(), alg in "[A-Za-z0-9]{0,8}") {
        prop_assume!(alg != "HS256");
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        let t = hs256(&header, &claims.to_string(), KEY);
        prop_assert_eq!(verify(&t), Err(TokenError::Algorithm));
    }

    #[test]
    fn a_lifetime_past_fifteen_minutes_is_refused(claims in valid_claims(), beyond in 0.001f64..1e9) {
        let mut c = claims;
        c["exp"] = json!(now().timestamp() as f64 + 15.0 * 60.0 + 60.0 + beyond);
        let t = token::sign_hs256(&c, KEY);
        prop_assert_eq!(verify(&t), Err(TokenError::TooLongLived));
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = verify(&s);
    }

    #[test]
    fn arbitrary_segments_never_panic(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..5)) {
        let token = parts.iter().map(|p| URL_SAFE_NO_PAD.encode(p)).collect::<Vec<_>>().join(".");
        let _ = verify(&token);
    }
}

//! Slowing down password guessing: progressive delays per email address and per client address,
//! counted before a password is looked at, and a bound on how many passwords are hashed at once.
//!
//! The policy: for each key (an email address, a client address), the first `free` failures
//! cost nothing; each later one makes the next try wait, doubling from 1 s up to `cap`. A try
//! made while a key waits is answered 429 with `Retry-After` and its password is not evaluated.
//! A try is counted as a failure when it is let in (so that concurrent guesses are counted, not
//! raced); a right password then forgets the email's count and takes its own try back from the
//! client address. A key quiet for [`FORGET_MINUTES`] after its wait is forgotten. In memory:
//! with several replicas, each counts its own tries. (Which keys a try goes through, and the
//! device cookies that give the owner's browser its own, are the sign-in's business.)

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// How many failures a key may have before it waits, and how long it waits at most.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub free: u32,
    pub cap_secs: i64,
}

impl Policy {
    /// Sign-in and the current-password check, per email address: a typo or three are free.
    pub const EMAIL: Policy = Policy {
        free: 3,
        cap_secs: 60,
    };
    /// Emails to one address: a few, then fewer and fewer (at most one an hour).
    pub const MAIL: Policy = Policy {
        free: 3,
        cap_secs: 3600,
    };
    /// Per client address: offices share one, so more are free.
    pub const CLIENT: Policy = Policy {
        free: 10,
        cap_secs: 60,
    };

    /// The wait after `failures` failures.
    fn delay(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::zero();
        }
        let doublings = (failures - self.free - 1).min(20);
        Duration::seconds((1i64 << doublings).min(self.cap_secs))
    }
}

/// A key is forgotten this long after its wait ended.
pub const FORGET_MINUTES: i64 = 15;
/// Keys kept at most: a flood of made-up addresses cannot grow the table without bound.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// When the last try was let in.
    last: DateTime<Utc>,
    /// No try is let in before this.
    open_at: DateTime<Utc>,
}

impl Entry {
    fn forgotten(&self, now: DateTime<Utc>) -> bool {
        now >= self.open_at + Duration::minutes(FORGET_MINUTES)
    }
}

/// One thing counted: a scope (`login`, `reset`…) and a value (an address), with its policy.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    id: u64,
    policy: Policy,
}

/// A try refused: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub secs: u64,
}

pub struct Throttle {
    entries: Mutex<HashMap<u64, Entry>>,
    /// Keys are kept as keyed 64-bit hashes: fixed size, and unpredictable to whoever picks them.
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Throttle {
    pub fn key(&self, scope: &str, value: &str, policy: Policy) -> Key {
        Key {
            id: self.hasher.hash_one((scope, value)),
            policy,
        }
    }

    /// Lets a try in, counting it as a failure of every key, or says how long to wait. Atomic:
    /// of many tries at once, only as many as the policies allow get in.
    pub fn admit(&self, keys: &[Key], now: DateTime<Utc>) -> Result<(), Wait> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys
            .iter()
            .filter_map(|k| map.get(&k.id))
            .filter(|e| !e.forgotten(now))
            .map(|e| e.open_at)
            .max()
            .filter(|open_at| *open_at > now);
        if let Some(open_at) = wait {
            let ms = (open_at - now).num_milliseconds().max(1);
            return Err(Wait {
                secs: (ms as u64).div_ceil(1000),
            });
        }
        for k in keys {
            if !map.contains_key(&k.id) && map.len() >= MAX_KEYS {
                make_room(&mut map, now);
            }
            let e = map.entry(k.id).or_insert(Entry {
                failures: 0,
                last: now,
                open_at: now,
            });
            if e.forgotten(now) {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            e.open_at = now + k.policy.delay(e.failures);
        }
        Ok(())
    }

    /// A try let in by [`admit`](Self::admit) was right: `forget` keys are forgotten, and the
    /// try is taken back from the `undo` keys.
    pub fn succeeded(&self, forget: &[Key], undo: &[Key]) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for k in forget {
            map.remove(&k.id);
        }
        for k in undo {
            if let Some(e) = map.get_mut(&k.id) {
                e.failures = e.failures.saturating_sub(1);
                e.open_at = e.last + k.policy.delay(e.failures);
            }
        }
    }

    /// Forgets keys (after a password reset).
    pub fn clear(&self, keys: &[Key]) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            map.remove(&k.id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Drops forgotten keys; if that is not enough, keys that make no one wait now; and if still
/// not, the half whose waits end first. Rare (only when the table is full), and linear.
fn make_room(map: &mut HashMap<u64, Entry>, now: DateTime<Utc>) {
    map.retain(|_, e| !e.forgotten(now));
    if map.len() >= MAX_KEYS * 3 / 4 {
        map.retain(|_, e| e.open_at > now);
    }
    if map.len() >= MAX_KEYS * 3 / 4 {
        let mut ends: Vec<DateTime<Utc>> = map.values().map(|e| e.open_at).collect();
        let mid = ends.len() / 2;
        let (_, median, _) = ends.select_nth_unstable(mid);
        let median = *median;
        map.retain(|_, e| e.open_at > median);
    }
}

/// How many passwords are hashed or verified at once (Argon2id takes 19 MiB each): the number
/// of cores. Others wait their turn, so a burst of sign-ins cannot exhaust memory.
pub struct PasswordWork {
    permits: tokio::sync::Semaphore,
}

impl Default for PasswordWork {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: tokio::sync::Semaphore::new(n.clamp(1, 16)),
        }
    }
}

impl PasswordWork {
    /// Whether `password` matches `hash`; with no hash, the same work against a dummy one, so
    /// that an unknown address costs what a known one does.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let password = password.to_string();
        tokio::task::spawn_blocking(move || match hash {
            Some(h) => crate::crypto::verify_password(&password, &h),
            None => {
                crate::crypto::verify_password(&password, DUMMY_HASH);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    pub async fn hash(&self, password: &str) -> Result<String, crate::Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))?
    }
}

/// An Argon2id hash of a random password, verified against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0oJ7Yc2XyBmbhFJUP4GQy/4/g+rpmdrLLa0EX4bldWQ";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    #[test]
    fn delays_double_from_one_second_to_the_cap() {
        let p = Policy::EMAIL;
        let d: Vec<i64> = (1..=12).map(|n| p.delay(n).num_seconds()).collect();
        assert_eq!(d, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(u32::MAX).num_seconds(), 60);
    }

    #[test]
    fn tries_are_counted_when_let_in_and_the_right_one_is_forgiven() {
        let t = Throttle::default();
        let email = t.key("login", "ann@example.test", Policy::EMAIL);
        let ip = t.key("login-ip", "10.0.0.1", Policy::CLIENT);
        let now = t0();
        // A burst at one instant: three free tries, a fourth that starts the wait, then none.
        let admitted = (0..100)
            .filter(|_| t.admit(&[email, ip], now).is_ok())
            .count();
        assert_eq!(admitted, 4);
        assert_eq!(t.admit(&[email, ip], now), Err(Wait { secs: 1 }));
        // Another address from the same client is not held by ann's wait.
        let bob = t.key("login", "bob@example.test", Policy::EMAIL);
        assert!(t.admit(&[bob, ip], now).is_ok());
        let later = now + Duration::seconds(1);
        assert!(t.admit(&[email, ip], later).is_ok());
        assert_eq!(t.admit(&[email], later), Err(Wait { secs: 2 }));
        // The right password forgets the email's count.
        t.succeeded(&[email], &[ip]);
        assert!(t.admit(&[email], later).is_ok());
        // Quiet long enough, a key starts over.
        let much_later = later + Duration::minutes(FORGET_MINUTES + 2);
        for _ in 0..3 {
            t.admit(&[bob], later).ok();
        }
        assert!(t.admit(&[bob], much_later).is_ok());
        t.clear(&[email, bob]);
        assert!(t.admit(&[email], later).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Throttle::default();
        let now = t0();
        for i in 0..(MAX_KEYS + 10) {
            let k = t.key("login", &i.to_string(), Policy::EMAIL);
            t.admit(&[k], now).ok();
        }
        assert!(t.len() <= MAX_KEYS);
        // Keys that make someone wait are kept before those that do not.
        let held = t.key("login", "held", Policy::EMAIL);
        for _ in 0..4 {
            t.admit(&[held], now).ok();
        }
        for i in 0..MAX_KEYS {
            let k = t.key("login", &format!("x{i}"), Policy::EMAIL);
            t.admit(&[k], now).ok();
        }
        assert!(t.len() <= MAX_KEYS);
        assert!(t.admit(&[held], now).is_err());
    }
}

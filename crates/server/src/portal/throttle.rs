//! Slowing down password guessing: progressive delays per email address and per client address,
//! counted before a password is looked at, and a bound on how many passwords are hashed at once.
//!
//! The policy: for each key (an email address, a client address), the first `free` failures
//! cost nothing; each later one makes the next try wait, doubling from 1 s up to `cap`. A try
//! made while a key waits is answered 429 with `Retry-After` and its password is not evaluated.
//! A try is counted as a failure when it is let in (so that concurrent guesses are counted, not
//! raced); a right password then forgets the email's count and takes its own try back from the
//! client address. A key quiet for [`FORGET_MINUTES`] after its wait is forgotten.
//!
//! The counts are kept in the store, so that every replica counts the same tries and a restart
//! forgets none; the arithmetic stays here. A store that cannot answer refuses the try (the
//! caller answers 503): a throttle that let tries through unthrottled would be no throttle.
//! (Which keys a try goes through, and the device cookies that give the owner's browser its
//! own, are the sign-in's business.)

use chrono::{DateTime, Duration, Utc};
use deadbolt_store::{Store, StoreError, ThrottleEntry, ThrottleKey};
use std::sync::Arc;

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

    /// The entry of a key with `failures` failures, the last let in at `last`.
    fn entry(&self, failures: u32, last: DateTime<Utc>) -> ThrottleEntry {
        let open_at = last + self.delay(failures);
        ThrottleEntry {
            failures,
            last,
            open_at,
            forget_at: open_at + Duration::minutes(FORGET_MINUTES),
        }
    }
}

/// A key is forgotten this long after its wait ended.
pub const FORGET_MINUTES: i64 = 15;
/// Keys kept at most, give or take what arrives between two prunes (see
/// [`prune`]): a flood of made-up addresses cannot grow the table without bound.
pub const MAX_KEYS: i64 = 100_000;

/// One thing counted: a scope (`login`, `reset`…) and a value (an address), with its policy.
#[derive(Debug, Clone)]
pub struct Key {
    stored: ThrottleKey,
    policy: Policy,
}

/// A try refused: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub secs: u64,
}

pub struct Throttle {
    store: Arc<Store>,
    /// Values (emails, client addresses) are personal data: the store keeps only their
    /// HMAC-SHA256 under this key. A plain hash would not hide them: every IPv4 address, and
    /// any list of known emails, can be hashed and looked up. The key is derived from the
    /// master key, which every replica shares and a restart keeps, so that all of them name a
    /// value by the same hash.
    hash_key: [u8; 32],
}

impl Throttle {
    pub fn new(store: Arc<Store>, hash_key: [u8; 32]) -> Self {
        Self { store, hash_key }
    }

    pub fn key(&self, scope: &'static str, value: &str, policy: Policy) -> Key {
        Key {
            stored: ThrottleKey {
                kind: scope,
                hash: value_hash(&self.hash_key, scope, value),
            },
            policy,
        }
    }

    /// Lets a try in, counting it as a failure of every key, or says how long to wait. Atomic,
    /// across every process on the store: of many tries at once, only as many as the policies
    /// allow get in.
    pub async fn admit(
        &self,
        keys: &[Key],
        now: DateTime<Utc>,
    ) -> Result<Result<(), Wait>, StoreError> {
        let policies: Vec<Policy> = keys.iter().map(|k| k.policy).collect();
        let keys = stored(keys);
        // A look first: a try refused costs a read, not a write (guessers make many). A try it
        // would let in is decided again, on locked rows.
        if let Some(wait) = wait(&self.store.throttle_entries(&keys, now).await?, now) {
            return Ok(Err(wait));
        }
        self.store
            .change_throttle(&keys, now, move |entries| admit(entries, &policies, now))
            .await
    }

    /// A try let in by [`admit`](Self::admit) was right: `forget` keys are forgotten, and the
    /// try is taken back from the `undo` keys.
    pub async fn succeeded(
        &self,
        forget: &[Key],
        undo: &[Key],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let keys: Vec<Key> = forget.iter().chain(undo).cloned().collect();
        let forgotten = forget.len();
        let policies: Vec<Policy> = undo.iter().map(|k| k.policy).collect();
        self.store
            .change_throttle(&stored(&keys), now, move |entries| {
                let (forget, undo) = entries.split_at_mut(forgotten);
                forget.fill(None);
                take_back(undo, &policies);
            })
            .await
    }

    /// Forgets keys (after a password reset).
    pub async fn clear(&self, keys: &[Key], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.store
            .change_throttle(&stored(keys), now, |entries| entries.fill(None))
            .await
    }

    /// Drops forgotten keys, and keeps the table at [`MAX_KEYS`]: past it, keys that make no
    /// one wait go first, then those whose waits end first. Each server runs it every minute.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.prune_throttle(now, MAX_KEYS).await
    }
}

/// What the store keeps of a value: its HMAC-SHA256 in hex, over the scope too, so that one
/// address's counts in two scopes cannot be linked in the store. (Scopes are the portal's own
/// names, without a newline: the newline cannot be moved between scope and value.)
fn value_hash(hash_key: &[u8; 32], scope: &str, value: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(hash_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(scope.as_bytes());
    mac.update(b"\n");
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stored(keys: &[Key]) -> Vec<ThrottleKey> {
    keys.iter().map(|k| k.stored.clone()).collect()
}

/// The decision of [`Throttle::admit`] on the keys' entries, which it updates when the try is
/// let in.
fn admit(
    entries: &mut [Option<ThrottleEntry>],
    policies: &[Policy],
    now: DateTime<Utc>,
) -> Result<(), Wait> {
    if let Some(wait) = wait(entries, now) {
        return Err(wait);
    }
    for (e, policy) in entries.iter_mut().zip(policies) {
        let failures = e.map_or(0, |e| e.failures).saturating_add(1);
        *e = Some(policy.entry(failures, now));
    }
    Ok(())
}

/// How long a try must wait for the keys' entries to let it in, if at all.
fn wait(entries: &[Option<ThrottleEntry>], now: DateTime<Utc>) -> Option<Wait> {
    let open_at = entries
        .iter()
        .flatten()
        .map(|e| e.open_at)
        .max()
        .filter(|open_at| *open_at > now)?;
    let ms = (open_at - now).num_milliseconds().max(1);
    Some(Wait {
        secs: (ms as u64).div_ceil(1000),
    })
}

/// Takes a try back from each entry: its count and wait as if the try had not been made.
fn take_back(entries: &mut [Option<ThrottleEntry>], policies: &[Policy]) {
    for (e, policy) in entries.iter_mut().zip(policies) {
        if let Some(old) = *e {
            *e = Some(policy.entry(old.failures.saturating_sub(1), old.last));
        }
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

    pub async fn hash(&self, password: &str) -> Result<String, crate::error::Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
            .await
            .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?
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

    async fn throttle() -> Throttle {
        let store = Store::open("sqlite::memory:").await.unwrap();
        Throttle::new(Arc::new(store), [7; 32])
    }

    #[test]
    fn delays_double_from_one_second_to_the_cap() {
        let p = Policy::EMAIL;
        let d: Vec<i64> = (1..=12).map(|n| p.delay(n).num_seconds()).collect();
        assert_eq!(d, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(u32::MAX).num_seconds(), 60);
    }

    #[tokio::test]
    async fn tries_are_counted_when_let_in_and_the_right_one_is_forgiven() {
        let t = throttle().await;
        let email = t.key("login", "ann@example.test", Policy::EMAIL);
        let ip = t.key("login-ip", "10.0.0.1", Policy::CLIENT);
        let both = [email.clone(), ip.clone()];
        let now = t0();
        // A burst at one instant: three free tries, a fourth that starts the wait, then none.
        let mut admitted = 0;
        for _ in 0..100 {
            admitted += usize::from(t.admit(&both, now).await.unwrap().is_ok());
        }
        assert_eq!(admitted, 4);
        assert_eq!(t.admit(&both, now).await.unwrap(), Err(Wait { secs: 1 }));
        // Another address from the same client is not held by ann's wait.
        let bob = t.key("login", "bob@example.test", Policy::EMAIL);
        assert!(t
            .admit(&[bob.clone(), ip.clone()], now)
            .await
            .unwrap()
            .is_ok());
        let later = now + Duration::seconds(1);
        assert!(t.admit(&both, later).await.unwrap().is_ok());
        let ann = std::slice::from_ref(&email);
        assert_eq!(t.admit(ann, later).await.unwrap(), Err(Wait { secs: 2 }));
        // The right password forgets the email's count.
        t.succeeded(ann, std::slice::from_ref(&ip), later)
            .await
            .unwrap();
        assert!(t.admit(ann, later).await.unwrap().is_ok());
        // Quiet long enough, a key starts over.
        let much_later = later + Duration::minutes(FORGET_MINUTES + 2);
        let bobs = std::slice::from_ref(&bob);
        for _ in 0..3 {
            t.admit(bobs, later).await.unwrap().ok();
        }
        assert!(t.admit(bobs, much_later).await.unwrap().is_ok());
        t.clear(&[email.clone(), bob], later).await.unwrap();
        assert!(t.admit(ann, later).await.unwrap().is_ok());
    }

    #[test]
    fn a_right_password_takes_its_try_back() {
        let mut entries = [None];
        let policy = [Policy::CLIENT];
        for _ in 0..11 {
            admit(&mut entries, &policy, t0()).unwrap();
        }
        assert_eq!(
            entries[0].map(|e| e.open_at),
            Some(t0() + Duration::seconds(1))
        );
        take_back(&mut entries, &policy);
        assert_eq!(
            entries[0].map(|e| (e.failures, e.open_at)),
            Some((10, t0()))
        );
    }

    #[test]
    fn values_are_kept_as_keyed_hashes() {
        let h = |key: u8, scope, value| value_hash(&[key; 32], scope, value);
        let ann = h(1, "login", "ann@example.test");
        assert_eq!(
            ann,
            h(1, "login", "ann@example.test"),
            "the same on every replica"
        );
        assert_eq!(ann.len(), 64);
        assert!(!ann.contains("ann"));
        assert_ne!(ann, h(2, "login", "ann@example.test"));
        assert_ne!(ann, h(1, "mail", "ann@example.test"));
    }
}

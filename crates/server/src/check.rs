//! The check path: verify the token, decide, record the attempt. What a check reads is cached in
//! memory and kept coherent through the store's change log: every check first learns the log's
//! last sequence number (on SQLite from the change signal, without a read while nothing was
//! signalled), applies what was logged since it last looked, and so evicts exactly the entries
//! that changed. A change committed by any process (CLI, another replica, `sqlite3` by hand) is
//! enforced by the very next check; a change to one account costs the others nothing.

use chrono::{DateTime, Utc};
use deadbolt_core::body::CheckContext;
use deadbolt_core::token::{self, TokenPolicy, VerifyingKey};
use deadbolt_core::{Decision, Reason};
use deadbolt_store::{Application, Change, LockInputs, NewAttempt, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::attempts::AttemptQueue;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rate::RateLimiter;
use crate::service::{decide_inputs, valid_account, Service};

/// An application as the check path needs it: its settings and its active keys, prepared.
pub struct AppEntry {
    pub app: Application,
    pub keys: Vec<VerifyingKey<String>>,
}

/// Entries beyond this many are dropped (all at once) rather than let memory grow without bound.
const MAX_CACHED_ACCOUNTS: usize = 2_000_000;

/// Behind by more changes than this, the cache forgets everything instead of reading them all:
/// a bulk import, or a process that was idle for long.
const MAX_CHANGES_APPLIED: i64 = 10_000;

#[derive(Default)]
struct CacheState {
    /// The change-log position everything cached is current at.
    applied: i64,
    apps: HashMap<String, Arc<AppEntry>>,
    /// Application id → account key → inputs (nested so lookups borrow instead of allocating).
    accounts: HashMap<String, HashMap<String, Arc<LockInputs>>>,
    /// Person id → the (application id, account key) entries cached with that person's locks:
    /// what a change to the person evicts. May name entries already gone (evicting those is a
    /// no-op).
    persons: HashMap<String, HashSet<(String, String)>>,
    account_count: usize,
}

impl CacheState {
    fn forget_all(&mut self) {
        self.apps.clear();
        self.accounts.clear();
        self.persons.clear();
        self.account_count = 0;
    }

    fn evict_account(&mut self, app_id: &str, key: &str) {
        let Some(accounts) = self.accounts.get_mut(app_id) else {
            return;
        };
        let Some(gone) = accounts.remove(key) else {
            return;
        };
        self.account_count -= 1;
        for person in person_ids(&gone) {
            if let Some(entries) = self.persons.get_mut(person) {
                entries.remove(&(app_id.to_string(), key.to_string()));
                if entries.is_empty() {
                    self.persons.remove(person);
                }
            }
        }
    }

    fn apply(&mut self, change: &Change) {
        match (&change.app_id, &change.account_key, &change.person_id) {
            (Some(app), Some(key), _) => self.evict_account(app, key),
            (Some(app), None, _) => {
                self.apps.retain(|_, e| &e.app.id != app);
                if let Some(gone) = self.accounts.remove(app) {
                    self.account_count -= gone.len();
                }
            }
            (None, _, Some(person)) => {
                for (app, key) in self.persons.remove(person).unwrap_or_default() {
                    self.evict_account(&app, &key);
                }
            }
            (None, _, None) => self.forget_all(),
        }
    }
}

/// The persons whose locks an entry holds (an account's, and those of names not merged yet).
fn person_ids(inputs: &LockInputs) -> impl Iterator<Item = &String> {
    inputs
        .person_id
        .iter()
        .chain(inputs.colliding.iter().filter_map(|c| c.person_id.as_ref()))
}

/// Cached check inputs. An entry is stored only if no change was applied between the moment its
/// load began and its storing: then any later change to it comes after it in the log, and
/// evicts it.
#[derive(Default)]
pub struct CheckCache {
    state: Mutex<CacheState>,
    /// One catch-up at a time: the others wait for it rather than read the same log rows.
    catching_up: tokio::sync::Mutex<()>,
}

impl CheckCache {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The position the cache is current at.
    pub fn applied(&self) -> i64 {
        self.state().applied
    }

    /// Whether inputs for this account are cached (tests observe eviction through this).
    pub fn holds(&self, app_id: &str, key: &str) -> bool {
        self.state()
            .accounts
            .get(app_id)
            .is_some_and(|a| a.contains_key(key))
    }

    /// Brings the cache to `position` (or past it), evicting what the log names since the last
    /// position applied. Returns the position the cache is now current at.
    async fn catch_up(
        &self,
        store: &deadbolt_store::Store,
        position: i64,
        metrics: &Metrics,
    ) -> Result<i64> {
        // Changes this process committed itself (an SDK call, a portal form, a relock) are at
        // hand: applied at once, without a read and without making other checks wait.
        if let Some(applied) = self.catch_up_at_hand(store, position) {
            return Ok(applied);
        }
        let _one = self.catching_up.lock().await;
        let from = {
            let mut s = self.state();
            if s.applied >= position {
                return Ok(s.applied);
            }
            // Nothing cached, or too far behind: nothing worth reading the log for.
            if s.account_count == 0 && s.apps.is_empty()
                || position - s.applied > MAX_CHANGES_APPLIED
            {
                s.forget_all();
                s.applied = position;
                return Ok(position);
            }
            s.applied
        };
        metrics.log_read();
        let changes = store.changes(from, position).await?;
        let mut s = self.state();
        match changes {
            Some(changes) => {
                for c in &changes {
                    s.apply(c);
                }
            }
            // Rows this process needed were pruned: it cannot know what changed.
            None => s.forget_all(),
        }
        // A catch-up at hand may have gone further meanwhile (it applied these rows too).
        s.applied = s.applied.max(position);
        Ok(s.applied)
    }

    /// [`CheckCache::catch_up`] when every change up to `position` is one of this process's
    /// own; `None` when the log must be read.
    fn catch_up_at_hand(&self, store: &deadbolt_store::Store, position: i64) -> Option<i64> {
        let mut s = self.state();
        if s.applied >= position {
            return Some(s.applied);
        }
        let changes = store.changes_at_hand(s.applied, position)?;
        for c in &changes {
            s.apply(c);
        }
        s.applied = position;
        Some(position)
    }

    /// The position the cache is current at, and the application if cached: one lock for both.
    fn app(&self, issuer: &str) -> (i64, Option<Arc<AppEntry>>) {
        let s = self.state();
        (s.applied, s.apps.get(issuer).cloned())
    }

    fn put_app(&self, loaded_at: i64, issuer: String, entry: Arc<AppEntry>) {
        let mut s = self.state();
        if s.applied == loaded_at {
            s.apps.insert(issuer, entry);
        }
    }

    fn inputs(&self, app_id: &str, account: &str) -> Option<Arc<LockInputs>> {
        self.state().accounts.get(app_id)?.get(account).cloned()
    }

    fn put_inputs(&self, loaded_at: i64, app_id: &str, account: &str, inputs: Arc<LockInputs>) {
        let mut s = self.state();
        if s.applied != loaded_at {
            return;
        }
        if s.account_count >= MAX_CACHED_ACCOUNTS {
            s.forget_all();
        }
        for person in person_ids(&inputs) {
            s.persons
                .entry(person.clone())
                .or_default()
                .insert((app_id.to_string(), account.to_string()));
        }
        let fresh = s
            .accounts
            .entry(app_id.to_string())
            .or_default()
            .insert(account.to_string(), inputs)
            .is_none();
        s.account_count += usize::from(fresh);
    }
}

/// The check path. It reads the store itself, not through [`Service`]: the cache, the change
/// log it follows and the decision are its own rules, and a check that finds everything cached
/// should cost no more than a few loads. What it reads rarely (an application and its keys)
/// comes through the service.
pub struct CheckService {
    pub service: Service,
    pub store: Arc<Store>,
    pub policy: TokenPolicy,
    pub cache: CheckCache,
    pub limiter: RateLimiter,
    pub attempts: AttemptQueue,
    pub metrics: Arc<Metrics>,
}

/// What a check decided, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// What is answered: `false` in audit mode even when the decision locks.
    pub locked: bool,
    pub decision: Decision,
}

impl CheckService {
    /// Performs one check. Errors never carry a decision: a store that cannot answer is a 503.
    /// The body is parsed only once the token is verified: an unauthenticated caller learns nothing.
    pub async fn check(
        &self,
        token: Option<&str>,
        body: &[u8],
        headers: HeaderContext,
    ) -> Result<Answer> {
        let token =
            token.ok_or_else(|| Error::Unauthorized("missing x-nl3-authorization-token".into()))?;
        let parsed = token::parse(token)?;
        // The store futures below are built only when needed and boxed: they are large (the
        // PostgreSQL branch), and a check that finds everything cached should not carry them.
        let position = match self.store.version_at_hand() {
            Some(v) => v?,
            None => Box::pin(self.store.version()).await?,
        };
        let (mut version, mut cached) = self.cache.app(parsed.issuer());
        if position > version {
            version = Box::pin(self.cache.catch_up(&self.store, position, &self.metrics)).await?;
            cached = self.cache.app(parsed.issuer()).1;
        }
        let entry = match cached {
            Some(e) => {
                self.metrics.cache_hit();
                e
            }
            None => {
                self.metrics.cache_miss();
                let entry = Box::pin(self.load_app(parsed.issuer())).await?;
                self.cache
                    .put_app(version, parsed.issuer().to_string(), entry.clone());
                entry
            }
        };
        let now = self.service.now();
        if !self.limiter.allow(&entry.app.id, now) {
            return Err(Error::RateLimited);
        }
        let verified = parsed.verify(&entry.keys, &self.policy, now)?;
        let account = verified.subject;
        let context = headers.fill(deadbolt_core::body::parse_check_body(body)?);
        // Every spelling of a name is one account: the cache and the store are asked by key.
        let key = entry.app.account_names.key(&account);

        let inputs = match self.cache.inputs(&entry.app.id, key.as_str()) {
            Some(i) => {
                self.metrics.cache_hit();
                i
            }
            // A name enrolment would refuse (a control character, say) is no account's: not
            // enrolled, without asking a store that may refuse the name outright (PostgreSQL
            // and NUL).
            None if valid_account(&account).is_err() => Arc::new(LockInputs::default()),
            None => {
                self.metrics.cache_miss();
                let i = Arc::new(Box::pin(self.store.lock_inputs(&entry.app.id, &key)).await?);
                self.cache
                    .put_inputs(version, &entry.app.id, key.as_str(), i.clone());
                i
            }
        };
        let decision = decide_inputs(now, &entry.app, &inputs);
        // Unlocked for one sign-in: this one. The lock is back (durably) before the answer
        // leaves; when another check got there first, this one is the second sign-in: locked.
        let decision = if !decision.locked
            && inputs.relock_after_use
            && matches!(
                decision.reason,
                Reason::AccountUnlocked | Reason::UnlockWindow
            )
            && !Box::pin(self.store.relock_after_use(&entry.app.id, &key, now)).await?
        {
            Decision {
                locked: true,
                reason: Reason::AccountLocked,
            }
        } else {
            decision
        };
        let answer = Answer {
            locked: decision.locked && !entry.app.audit_mode,
            decision,
        };
        self.attempts
            .record(attempt(
                now,
                &entry.app,
                verified.key_id,
                // Recorded under the name as enrolled, so that its person sees it whatever
                // spelling the sign-in used; a name not enrolled as sent.
                inputs.name.clone().unwrap_or(account),
                decision.reason,
                decision.locked,
                context,
            ))
            .await;
        self.metrics.decision(answer.locked);
        Ok(answer)
    }

    async fn load_app(&self, issuer_norm: &str) -> Result<Arc<AppEntry>> {
        // No application is registered under a name with a control character, and PostgreSQL
        // refuses NUL outright: answered like any unknown issuer, on either store.
        if issuer_norm.chars().any(char::is_control) {
            return Err(Error::Unauthorized("unknown issuer".into()));
        }
        let app = self
            .service
            .application_by_issuer(issuer_norm)
            .await?
            .ok_or(Error::Unauthorized("unknown issuer".into()))?;
        let mut keys = Vec::new();
        for (id, secret) in self.service.signing_secrets(&app.id).await? {
            keys.push(VerifyingKey::new(id, &secret));
        }
        Ok(Arc::new(AppEntry { app, keys }))
    }
}

/// Context the client sent as headers; used where the body left a field out.
#[derive(Debug, Clone, Default)]
pub struct HeaderContext {
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub device_location: Option<String>,
}

impl HeaderContext {
    fn fill(self, mut c: CheckContext) -> CheckContext {
        use deadbolt_core::body::{bounded, MAX_FIELD};
        let first_hop = |s: String| s.split(',').next().unwrap_or("").trim().to_string();
        c.ip =
            c.ip.or(self.forwarded_for.map(first_hop).filter(|s| !s.is_empty()));
        c.device = c.device.or(self.user_agent);
        c.location = c.location.or(self.device_location);
        for v in [&mut c.ip, &mut c.device, &mut c.location]
            .into_iter()
            .flatten()
        {
            *v = bounded(v, MAX_FIELD);
        }
        c
    }
}

fn attempt(
    at: DateTime<Utc>,
    app: &Application,
    key_id: String,
    account: String,
    reason: Reason,
    locked: bool,
    c: CheckContext,
) -> NewAttempt {
    NewAttempt {
        at,
        app_id: app.id.clone(),
        key_id: Some(key_id),
        account,
        locked,
        reason,
        ip: c.ip,
        device: c.device,
        location: c.location,
        integration_type: c.integration_type,
        integration_data: c.integration_data,
    }
}

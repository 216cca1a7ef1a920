//! The check path: verify the token, decide, record the attempt. What a check reads is cached in
//! memory, tagged with the store's change counter: every check reads the counter first, so a
//! change committed by any process (CLI, another replica) is enforced by the very next check.

use chrono::{DateTime, Utc};
use deadbolt_core::body::CheckContext;
use deadbolt_core::token::{self, TokenPolicy, VerifyingKey};
use deadbolt_core::{Decision, Reason};
use deadbolt_store::{Application, LockInputs, NewAttempt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::attempts::AttemptQueue;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::ops::{decide_inputs, valid_account, Deadbolt};
use crate::rate::RateLimiter;

/// An application as the check path needs it: its settings and its active keys, prepared.
pub struct AppEntry {
    pub app: Application,
    pub keys: Vec<VerifyingKey<String>>,
}

/// Entries beyond this many are dropped (all at once) rather than let memory grow without bound.
const MAX_CACHED_ACCOUNTS: usize = 2_000_000;

#[derive(Default)]
struct CacheState {
    version: i64,
    apps: HashMap<String, Arc<AppEntry>>,
    /// Application id → account → inputs (nested so lookups borrow instead of allocating).
    accounts: HashMap<String, HashMap<String, Arc<LockInputs>>>,
    account_count: usize,
}

/// Cached check inputs. An entry loaded at store version `v` is kept only while the cache is
/// at `v`: data read before a change can never outlive the change.
#[derive(Default)]
pub struct CheckCache(Mutex<CacheState>);

impl CheckCache {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the cache to `version` (dropping everything when the store changed), then looks
    /// the application up: one lock for both.
    fn app_at(&self, version: i64, issuer: &str) -> Option<Arc<AppEntry>> {
        let mut s = self.state();
        if version != s.version {
            s.apps.clear();
            s.accounts.clear();
            s.account_count = 0;
            s.version = version;
        }
        s.apps.get(issuer).cloned()
    }

    fn put_app(&self, version: i64, issuer: String, entry: Arc<AppEntry>) {
        let mut s = self.state();
        if s.version == version {
            s.apps.insert(issuer, entry);
        }
    }

    fn inputs(&self, app_id: &str, account: &str) -> Option<Arc<LockInputs>> {
        self.state().accounts.get(app_id)?.get(account).cloned()
    }

    fn put_inputs(&self, version: i64, app_id: &str, account: &str, inputs: Arc<LockInputs>) {
        let mut s = self.state();
        if s.version == version {
            if s.account_count >= MAX_CACHED_ACCOUNTS {
                s.accounts.clear();
                s.account_count = 0;
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
}

pub struct CheckService {
    pub db: Deadbolt,
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
        let version = match self.db.store.version_at_hand() {
            Some(v) => v?,
            None => Box::pin(self.db.store.version()).await?,
        };
        let entry = match self.cache.app_at(version, parsed.issuer()) {
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
        let now = self.db.now();
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
                let i = Arc::new(Box::pin(self.db.store.lock_inputs(&entry.app.id, &key)).await?);
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
            && !Box::pin(self.db.store.relock_after_use(&entry.app.id, &key, now)).await?
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
            .db
            .store
            .application_by_issuer(issuer_norm)
            .await?
            .ok_or(Error::Unauthorized("unknown issuer".into()))?;
        let mut keys = Vec::new();
        for (id, enc) in self.db.store.active_signing_keys(&app.id).await? {
            let secret = self.db.master_key.decrypt(&id, &enc)?;
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

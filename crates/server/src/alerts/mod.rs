//! The alert worker: tells people when a sign-in to one of their locked accounts was blocked,
//! and companies' webhooks of the blocked attempts of their applications.
//!
//! The check path is not touched: a check only records its attempt, as before. This worker
//! reads the attempts after a cursor kept in the store (attempt ids are given in commit order),
//! and in one transaction queues what to send (alert emails, webhook deliveries) and moves the
//! cursor, so a restart or a mail server outage loses nothing and repeats nothing. Two more
//! loops send what is due: each claims rows with a lease first, so that with several replicas
//! on PostgreSQL a row is sent by one of them; a failure is kept with the row and tried again
//! later, waiting longer each time (capped), for ever for emails, a bounded number of times
//! for webhooks (a receiver that answers 4xx does not want it).
//!
//! Over 600 lines: ingesting and the two senders share the worker's settings, its one clock and
//! what it remembers; the messages they write are in `messages.rs`.

use chrono::Duration;
use deadbolt_core::AccountKey;
use deadbolt_store::{Account, AlertEvent, AlertMail, Application, Attempt, Delivery, NewDelivery};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::attempts::BlockedFeed;
use crate::error::{Error, Result};
use crate::mail::Mailer;
use crate::service::{valid_account, AlertLinkPurpose, Service};

mod messages;
pub use messages::sign;
use messages::{alert_email, webhook_payload};

/// What the worker is told at start.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// How often the worker looks for new blocked attempts and for what is due to send.
    pub poll_every: std::time::Duration,
    /// At most one email per person and account in this window; the attempts after the first
    /// go together into one digest when it ends.
    pub window: std::time::Duration,
    /// How often the cursor is stored when there was nothing to queue at once (see
    /// [`AlertWorker::queue_pass`]): 10 s; a restart may look again at that much of the past.
    /// Sign-ins that only add to an email already waiting wait this long to be written.
    pub save_cursor_every: std::time::Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            poll_every: std::time::Duration::from_secs(1),
            window: DEFAULT_WINDOW,
            save_cursor_every: std::time::Duration::from_secs(10),
        }
    }
}

/// Ten minutes: one email at once, then at most one more every ten minutes.
pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a sender holds the rows it claimed before another may take them.
const LEASE_SECS: i64 = 120;
/// How long a replica's lease on queueing alerts lasts (renewed after a third of it): a
/// replica that stops without giving it up is taken over this long after its last renewal.
const QUEUE_LEASE_SECS: i64 = 30;
/// How long the queueing loop trusts what it looked up of an account (whether it has a person,
/// whether its alerts are on) or an application. The sender looks the account, its person and
/// the switch up again before sending; an application put in audit mode may still alert for
/// this long.
const LOOKUP_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// Accounts looked up and tallies kept beyond this many are forgotten (all at once).
const MAX_REMEMBERED: usize = 100_000;
/// Accounts looked up in one read of the store (one statement each, one trip).
const LOOKUPS_PER_READ: usize = 256;

/// What the queueing loop remembers between passes: how far it has looked, when it last
/// stored the cursor, the accounts it looked up, and per account the blocked sign-ins of the
/// current window. A guesser hammering thousands of locked accounts makes tens of thousands
/// of blocked attempts a second: each account is looked up once every few seconds, its first
/// sign-ins of a window are listed in its email, and the rest are only counted. Everything held
/// here is after the stored cursor and is written with the next save of it, so a crash loses
/// nothing: the restarted worker reads those attempts again.
pub struct Seen {
    /// Until when this worker holds the lease on queueing (the service's clock).
    lease: Option<chrono::DateTime<chrono::Utc>>,
    /// The stored cursor as this worker last read or wrote it.
    stored: Option<i64>,
    through: i64,
    /// Sign-ins read up to `through` and listed in emails already waiting, written at the next
    /// save.
    held: Vec<AlertEvent>,
    saved: std::time::Instant,
    /// Application id → account name → what was looked up (nested, so that a look borrows the
    /// attempt's strings instead of copying them).
    lookups: HashMap<String, HashMap<String, Lookup>>,
    tallies: HashMap<String, Tally>,
    apps: HashMap<String, Option<Application>>,
    /// Per company, whether it has a webhook.
    hooks: HashMap<String, bool>,
    looked_up: std::time::Instant,
}

/// An email as it will be sent.
struct ToSend {
    events: Vec<AlertEvent>,
    through: i64,
    last_attempt: i64,
    person: deadbolt_store::Person,
    app: Application,
    acc: Account,
}

enum Prepared {
    /// Recorded as sent without sending, with the last attempt it held.
    Nothing(i64),
    Send(Box<ToSend>),
}

/// An account as looked up, when: the account (if enrolled) and whether its alerts are on.
type Lookup = (std::time::Instant, Option<(Account, bool)>);

/// One account's blocked sign-ins in the current window.
struct Tally {
    since: std::time::Instant,
    listed: usize,
    /// Counted since the last save, and the latest of them.
    counted: i64,
    latest: Option<AlertEvent>,
}

impl Seen {
    /// Drops the sign-ins counted since the last save: written with it, or another worker's
    /// to write.
    fn forget_counted(&mut self) {
        for t in self.tallies.values_mut() {
            t.counted = 0;
            t.latest = None;
        }
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            lease: None,
            stored: None,
            through: 0,
            held: Vec::new(),
            saved: std::time::Instant::now(),
            lookups: HashMap::new(),
            tallies: HashMap::new(),
            apps: HashMap::new(),
            hooks: HashMap::new(),
            looked_up: std::time::Instant::now(),
        }
    }
}

/// The blocked sign-ins an email lists; a digest of more says how many more there were.
const LISTED: usize = 20;
/// Stored attempt batches (one per application per write of the attempt writer) read at once.
const RUNS_PER_PAGE: i64 = 64;
/// A pass stops reading pages at this many blocked attempts (a backlog: the next pass follows
/// at once).
const BLOCKED_PER_PASS: usize = 50_000;
const CLAIM: i64 = 20;
/// A webhook delivery is given up after this many tries (about a day with the backoff).
const WEBHOOK_TRIES: i64 = 12;
/// How long sent emails and finished deliveries are kept (the delivery log shows them).
const KEEP_DAYS: i64 = 30;
/// How often they are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// How often a failing pass is logged.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a webhook receiver has to answer.
const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a blocked attempt may be told of: not in audit mode (a "locked" decision is recorded
/// but the sign-in was let in: nothing was blocked, nobody is told it was), and of a name that
/// could be enrolled (a name enrolment would refuse is no account's).
fn alerted(app: &Application, attempt: &Attempt) -> bool {
    !app.audit_mode && valid_account(&attempt.account).is_ok()
}

/// The wait before try `tries + 1`: 30 s, doubling, at most an hour.
pub fn backoff(tries: i64) -> Duration {
    let secs = 30i64.saturating_mul(1 << tries.clamp(0, 7));
    Duration::seconds(secs.min(3600))
}

pub struct AlertWorker {
    service: Service,
    metrics: Arc<crate::metrics::Metrics>,
    /// This worker's name for the lease on queueing (new at each start).
    id: String,
    mailer: Mailer,
    /// The portal's base URL, for the links in emails.
    base_url: String,
    window: Duration,
    poll_every: std::time::Duration,
    save_cursor_every: std::time::Duration,
    http: reqwest::Client,
    /// The blocked attempts this process's attempt writer committed, taken instead of read
    /// back from the store where they follow on from the cursor.
    feed: Option<Arc<BlockedFeed>>,
}

impl AlertWorker {
    pub fn new(
        service: Service,
        mailer: Mailer,
        base_url: String,
        config: &AlertsConfig,
        metrics: Arc<crate::metrics::Metrics>,
        feed: Option<Arc<BlockedFeed>>,
    ) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            // A receiver's redirect is not followed: the URL the company gave is where its
            // events go, and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Deadbolt-Webhook/1")
            .build()
            .map_err(|e| Error::Unavailable(format!("webhook client: {e}")))?;
        Ok(Arc::new(Self {
            service,
            metrics,
            id: {
                use rand::Rng;
                format!("{:032x}", rand::thread_rng().gen::<u128>())
            },
            mailer,
            base_url: base_url.trim_end_matches('/').to_string(),
            window: Duration::from_std(config.window).unwrap_or(Duration::minutes(10)),
            poll_every: config.poll_every,
            save_cursor_every: config.save_cursor_every,
            http,
            feed,
        }))
    }

    /// Runs the three loops until `closing` turns true. Each pass's errors are logged and the
    /// next pass tries again: the store or the mail server coming back is all it takes.
    pub fn spawn(
        self: Arc<Self>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for job in [Job::Queue, Job::Mail, Job::Webhook] {
            let me = self.clone();
            let mut closing = closing.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(me.poll_every);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut pruned = std::time::Instant::now();
                let mut seen = Seen::default();
                // While the store is down every pass fails: said once every 10 s, not each time.
                let mut warned: Option<std::time::Instant> = None;
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        changed = closing.changed() => {
                            // The server is gone without saying so: nothing to run for.
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                    if *closing.borrow() {
                        if matches!(job, Job::Queue) && seen.lease.is_some() {
                            // Another replica takes over at once rather than after the lease.
                            if let Err(e) = me.service.release_alert_queue(&me.id).await {
                                tracing::warn!(error = %e, "alerts: cannot give the queueing up");
                            }
                        }
                        return;
                    }
                    if matches!(job, Job::Queue) && pruned.elapsed() >= PRUNE_EVERY {
                        pruned = std::time::Instant::now();
                        match me.service.prune_alerts(Duration::days(KEEP_DAYS)).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(
                                removed = n,
                                "alerts: old emails, links and deliveries removed"
                            ),
                            Err(e) => tracing::warn!(error = %e, "alerts: cannot prune"),
                        }
                    }
                    // Work off a backlog without waiting a tick between passes.
                    loop {
                        let more = match job {
                            Job::Queue => me.queue_pass(&mut seen).await,
                            Job::Mail => me.mail_pass().await,
                            Job::Webhook => me.webhook_pass().await,
                        };
                        match more {
                            Ok(true) if !*closing.borrow() => continue,
                            Ok(_) => break,
                            Err(e) => {
                                if warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                                    warned = Some(std::time::Instant::now());
                                    tracing::warn!(error = %e, job = job.name(), "alerts: pass failed (tried again each second)");
                                }
                                break;
                            }
                        }
                    }
                }
            }));
        }
        tasks
    }

    /// Reads the attempts after the cursor and queues their alerts and deliveries; `true`
    /// when there may be more.
    ///
    /// Most attempts are allowed ones and need nothing: the stored cursor is only written with
    /// something to queue at once (an account's first sign-in of a window, a webhook
    /// delivery), or every `save_cursor_every` (a write is a synced commit). Between saves
    /// `seen` remembers how far this worker looked and what it holds for emails already
    /// waiting; a save writes all of it and moves the stored cursor across it at once. A save
    /// is a compare-and-set from the stored value read in this pass: two replicas never queue
    /// one attempt twice.
    /// Brings into `seen` the applications of `attempts`, and their accounts (with whether
    /// their alerts are on) not looked up in the last [`LOOKUP_FOR`]: a pass's accounts in a
    /// few reads of the store rather than two reads each (a flood's blocked sign-ins name
    /// thousands).
    async fn look_up_accounts(&self, seen: &mut Seen, attempts: &[Attempt]) -> Result<()> {
        // (application id, account name) and the account's key.
        let mut wanted: Vec<((&str, &str), AccountKey)> = Vec::new();
        let mut asked = HashSet::new();
        for (n, a) in attempts.iter().enumerate() {
            yield_every(n).await;
            if !seen.apps.contains_key(&a.app_id) {
                let app = self.service.find_application(&a.app_id).await?;
                seen.apps.insert(a.app_id.clone(), app);
            }
            let Some(Some(app)) = seen.apps.get(&a.app_id) else {
                continue;
            };
            if !alerted(app, a) {
                continue;
            }
            // An account whose alerts are off is looked up every pass: turned on, its next
            // blocked sign-in is emailed (there are few such accounts; turned off, the sender
            // looks again).
            let fresh = seen
                .lookups
                .get(&a.app_id)
                .and_then(|accounts| accounts.get(&a.account))
                .is_some_and(|(at, found)| {
                    at.elapsed() < LOOKUP_FOR && !matches!(found, Some((_, false)))
                });
            let slot = (a.app_id.as_str(), a.account.as_str());
            if !fresh && asked.insert(slot) {
                wanted.push((slot, app.account_names.key(&a.account)));
            }
        }
        for chunk in wanted.chunks(LOOKUPS_PER_READ) {
            let slots: Vec<(&str, &AccountKey)> = chunk
                .iter()
                .map(|((app_id, _), key)| (*app_id, key))
                .collect();
            let found = self.service.accounts_and_alerts(&slots).await?;
            let now = std::time::Instant::now();
            for (((app_id, account), _), found) in chunk.iter().zip(found) {
                seen.lookups
                    .entry(app_id.to_string())
                    .or_default()
                    .insert(account.to_string(), (now, found));
            }
        }
        Ok(())
    }

    pub async fn queue_pass(&self, seen: &mut Seen) -> Result<bool> {
        // One replica queues at a time; the others only send. The lease is renewed after a
        // third of it has gone (a write, so not every pass).
        let lease = Duration::seconds(QUEUE_LEASE_SECS);
        let now = self.service.now();
        if seen.lease.is_none_or(|until| until - now < lease * 2 / 3) {
            if self.service.take_alert_queue(&self.id, lease).await? {
                seen.lease = Some(now + lease);
            } else {
                // Another replica queues; when this one takes over, it starts from the stored
                // cursor.
                seen.lease = None;
                seen.stored = None;
                return Ok(false);
            }
        }
        let stored = self.service.alert_cursor().await?;
        if seen.stored != Some(stored) {
            // The stored cursor is not where this worker left it: its first pass, or another
            // replica's worker queued from it (a replica's own failed write leaves `None` too).
            // What was queued there is not this worker's to queue again: what it held or
            // counted is dropped, and it reads on from the stored cursor.
            seen.stored = Some(stored);
            seen.through = stored;
            seen.held.clear();
            seen.forget_counted();
        }
        let from = seen.through;
        // Pages of stored batches up to a budget of blocked attempts, then one transaction for
        // all of them: a pass every poll rather than one every page, so that the emails' rows
        // are written (and their index pages synced) once a second under a flood, not a dozen
        // times.
        let (mut attempts, mut through) = (Vec::new(), from);
        let backlog = loop {
            // What this process wrote, handed over by its writer, where it follows on; the
            // store for the rest (at least one read a pass: another process may have written
            // after what was handed over).
            let room = BLOCKED_PER_PASS.saturating_sub(attempts.len());
            let handed = self.feed.as_ref().and_then(|f| f.take_after(through, room));
            if let Some((mut page, end)) = handed {
                self.metrics.alert_attempts_read(true, page.len());
                if attempts.is_empty() {
                    attempts = page;
                } else {
                    attempts.append(&mut page);
                }
                through = end;
                if attempts.len() >= BLOCKED_PER_PASS {
                    break true;
                }
                continue;
            }
            let (page, end, full) = self
                .service
                .blocked_attempts_after_id(through, RUNS_PER_PAGE)
                .await?;
            self.metrics.alert_attempts_read(false, page.len());
            attempts.extend(page);
            through = end;
            if !full {
                break false;
            }
            if attempts.len() >= BLOCKED_PER_PASS {
                break true;
            }
        };
        if through == stored {
            return Ok(false);
        }
        if seen.lookups.values().map(HashMap::len).sum::<usize>() > MAX_REMEMBERED {
            seen.lookups.clear();
        }
        // Applications and webhooks are looked up again every LOOKUP_FOR; those whose answer
        // would change what is sent when they change back (an application in audit mode, a
        // company without a webhook) every pass.
        if seen.looked_up.elapsed() >= LOOKUP_FOR {
            seen.looked_up = std::time::Instant::now();
            seen.apps.clear();
            seen.hooks.clear();
        }
        seen.apps
            .retain(|_, app| app.as_ref().is_some_and(|a| !a.audit_mode));
        seen.hooks.retain(|_, has| *has);
        let window = self.window.to_std().unwrap_or(std::time::Duration::ZERO);
        let mut events = Vec::new();
        // A sign-in that starts an account's window: its email is due now.
        let mut urgent = false;
        let mut deliveries = Vec::new();
        self.look_up_accounts(seen, &attempts).await?;
        // Taken by value: a sign-in's strings move into what is queued instead of being copied,
        // and one that is only counted costs no allocation at all (a flood is mostly those).
        for (n, a) in attempts.into_iter().enumerate() {
            yield_every(n).await;
            let Some(Some(app)) = seen.apps.get(&a.app_id) else {
                continue;
            };
            if !alerted(app, &a) {
                continue;
            }
            let Some((_, Some((acc, alerts_on)))) = seen
                .lookups
                .get(&a.app_id)
                .and_then(|accounts| accounts.get(&a.account))
            else {
                continue;
            };
            if !seen.hooks.contains_key(&app.company_id) {
                let has = self.service.webhook(&app.company_id).await?.is_some();
                seen.hooks.insert(app.company_id.clone(), has);
            }
            if seen.hooks.get(&app.company_id) == Some(&true) {
                deliveries.push(NewDelivery {
                    company_id: app.company_id.clone(),
                    attempt_id: a.id,
                    payload: webhook_payload(&a, app, acc.person_id.is_some()),
                });
            }
            let (Some(person_id), true) = (&acc.person_id, *alerts_on) else {
                continue;
            };
            if !seen.tallies.contains_key(&acc.id) {
                seen.tallies.insert(
                    acc.id.clone(),
                    Tally {
                        since: std::time::Instant::now(),
                        listed: 0,
                        counted: 0,
                        latest: None,
                    },
                );
            }
            let Some(tally) = seen.tallies.get_mut(&acc.id) else {
                continue;
            };
            if tally.since.elapsed() >= window && tally.counted == 0 {
                tally.since = std::time::Instant::now();
                tally.listed = 0;
            }
            if tally.listed >= LISTED {
                tally.counted += 1;
                // The latest counted sign-in is written with the next save: the one held so
                // far (same account, so same application; same person unless the account
                // moved) takes this one's details.
                if let Some(latest) = tally.latest.as_mut().filter(|l| &l.person_id == person_id) {
                    latest.attempt_id = a.id;
                    latest.at = a.at;
                    latest.reason = a.reason;
                    latest.ip = a.ip;
                    latest.device = a.device;
                    latest.location = a.location;
                    continue;
                }
            }
            let event = AlertEvent {
                attempt_id: a.id,
                person_id: person_id.clone(),
                account_id: acc.id.clone(),
                app_id: app.id.clone(),
                at: a.at,
                account: acc.account.clone(),
                reason: a.reason,
                ip: a.ip,
                device: a.device,
                location: a.location,
            };
            if tally.listed < LISTED {
                urgent |= tally.listed == 0;
                tally.listed += 1;
                events.push(event);
            } else {
                tally.latest = Some(event);
            }
        }
        // Sign-ins that only add to an email already waiting (its digest is due when the
        // window ends) are held until the next save, with the counted ones: a flood's thousands
        // of accounts each get one row a save instead of one a pass. The stored cursor stays
        // before them until then, so a restart reads them again.
        if !urgent && deliveries.is_empty() && seen.saved.elapsed() < self.save_cursor_every {
            seen.held.append(&mut events);
            seen.through = through;
            return Ok(backlog);
        }
        let mut listed = std::mem::take(&mut seen.held);
        listed.append(&mut events);
        // Counted sign-ins are written with each save of the cursor.
        let counted: Vec<(AlertEvent, i64)> = seen
            .tallies
            .values()
            .filter_map(|t| Some((t.latest.clone()?, t.counted)))
            .collect();
        let queued = self
            .service
            .queue_alerts(
                (stored, through),
                &listed,
                &counted,
                &deliveries,
                self.window,
            )
            .await;
        if !matches!(queued, Ok(true)) {
            // Another worker moved the cursor meanwhile, or the store failed: read again from
            // where the stored cursor is (what was held is read again with it).
            seen.stored = None;
            return queued.map(|_| true);
        }
        seen.stored = Some(through);
        seen.through = through;
        seen.saved = std::time::Instant::now();
        seen.forget_counted();
        seen.tallies.retain(|_, t| t.since.elapsed() < window);
        if seen.tallies.len() > MAX_REMEMBERED {
            seen.tallies.clear();
        }
        if !listed.is_empty() || !deliveries.is_empty() {
            tracing::debug!(
                sign_ins = listed.len(),
                webhooks = deliveries.len(),
                "alerts: blocked attempts queued"
            );
        }
        Ok(backlog)
    }

    /// Sends the alert emails that are due; `true` when there may be more. The links of a
    /// claimed batch are stored in one transaction before any is sent, and the emails the
    /// relay took are recorded as sent in one more: a flood of first alerts (a guesser trying
    /// thousands of people's accounts) costs two synced commits a batch, not three an email.
    pub async fn mail_pass(&self) -> Result<bool> {
        let mails = self
            .service
            .claim_alert_mails(Duration::seconds(LEASE_SECS), CLAIM)
            .await?;
        // Emails done with: sent, or with nothing to tell or nobody to tell it to.
        let mut done: Vec<(String, i64)> = Vec::new();
        let mut ready = Vec::new();
        for m in &mails {
            match self.prepare(m).await? {
                Prepared::Nothing(through) => done.push((m.id.clone(), through)),
                Prepared::Send(p) => ready.push((m, p)),
            }
        }
        let links: Vec<(AlertLinkPurpose, &str, &str, i64)> = ready
            .iter()
            .flat_map(|(_, p)| {
                [AlertLinkPurpose::WasMe, AlertLinkPurpose::NotMe].map(|purpose| {
                    (
                        purpose,
                        p.person.id.as_str(),
                        p.acc.id.as_str(),
                        p.last_attempt,
                    )
                })
            })
            .collect();
        let tokens = self.service.create_alert_links(&links).await?;
        let mut relay_failed = false;
        for ((m, p), pair) in ready.iter().zip(tokens.chunks(2)) {
            let (subject, body) = alert_email(
                &p.app,
                &p.acc.account,
                (&p.events, usize::try_from(m.extra).unwrap_or(0)),
                p.person.time_zone,
                &format!("{}/alerts/{}", self.base_url, pair[0]),
                &format!("{}/alerts/{}", self.base_url, pair[1]),
                &format!("{}/me/accounts/{}", self.base_url, p.acc.id),
            );
            match self.mailer.send(&p.person.email, &subject, body).await {
                Ok(()) => {
                    self.metrics.alert_email(true);
                    tracing::info!(events = p.events.len(), "alerts: email sent");
                    done.push((m.id.clone(), p.through));
                }
                Err(e) => {
                    self.metrics.alert_email(false);
                    let retry_at = self.service.now() + backoff(m.tries);
                    tracing::warn!(error = %e, tries = m.tries + 1, retry_at = %retry_at, "alerts: email not sent, will try again");
                    self.service
                        .alert_mail_failed(&m.id, &e.to_string(), retry_at)
                        .await?;
                    // The rest of this batch is not tried against the failing relay now:
                    // their claims run out with the lease, and they are tried after it.
                    relay_failed = true;
                    break;
                }
            }
        }
        self.service.alert_mails_sent(&done, self.window).await?;
        Ok(!relay_failed && mails.len() as i64 == CLAIM)
    }

    /// What an email will tell, looked up just before sending it.
    async fn prepare(&self, m: &AlertMail) -> Result<Prepared> {
        let events = self.service.alert_mail_events(m).await?;
        let through = events.iter().map(|e| e.attempt_id).max().unwrap_or(0);
        let person = self.service.person(&m.person_id).await?;
        let app = self.service.find_application(&m.app_id).await?;
        let acc = self.service.account_by_id(&m.account_id).await?;
        // Nothing to tell, or nobody to tell it to any more (the account left the person).
        let (Some(person), Some(app), Some(acc), Some(last)) = (person, app, acc, events.last())
        else {
            return Ok(Prepared::Nothing(through));
        };
        // Alerts turned off since this email was queued (queueing looks the switch up at most
        // a few seconds late): not sent.
        if acc.person_id.as_deref() != Some(person.id.as_str())
            || !self.service.alerts_on(&acc.id).await?
        {
            return Ok(Prepared::Nothing(through));
        }
        let last_attempt = last.attempt_id;
        Ok(Prepared::Send(Box::new(ToSend {
            events,
            through,
            last_attempt,
            person,
            app,
            acc,
        })))
    }

    /// Posts the webhook deliveries that are due; `true` when there may be more.
    pub async fn webhook_pass(&self) -> Result<bool> {
        let due = self
            .service
            .claim_deliveries(Duration::seconds(LEASE_SECS), CLAIM)
            .await?;
        // Side by side: one company's slow receiver (up to the timeout) does not hold up the
        // others' deliveries.
        let results = futures_util::future::join_all(due.iter().map(|d| self.deliver(d))).await;
        for r in results {
            r?;
        }
        Ok(due.len() as i64 == CLAIM)
    }

    async fn deliver(&self, d: &Delivery) -> Result<()> {
        let now = self.service.now();
        let Some((url, secret)) = self.service.webhook_signing(&d.company_id).await? else {
            return self
                .service
                .delivery_tried(&d.id, "failed", None, Some("the webhook was removed"), now)
                .await;
        };
        let timestamp = now.timestamp().to_string();
        let signature = sign(&secret, &timestamp, &d.payload);
        let sent = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-deadbolt-timestamp", &timestamp)
            .header("x-deadbolt-signature", format!("sha256={signature}"))
            .body(d.payload.clone())
            .send()
            .await;
        let last_try = d.tries + 1 >= WEBHOOK_TRIES;
        let (state, status, error) = match sent {
            Ok(r) if r.status().is_success() => ("delivered", Some(r.status().as_u16()), None),
            Ok(r) => {
                let s = r.status();
                let again = s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408;
                let state = if again && !last_try {
                    "pending"
                } else {
                    "failed"
                };
                (
                    state,
                    Some(s.as_u16()),
                    Some(format!("answered HTTP {}", s.as_u16())),
                )
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("no answer within {} s", WEBHOOK_TIMEOUT.as_secs())
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "request failed".to_string()
                };
                (
                    if last_try { "failed" } else { "pending" },
                    None,
                    Some(what),
                )
            }
        };
        self.metrics.webhook(state == "delivered");
        if let Some(e) = &error {
            tracing::warn!(error = %e, state, tries = d.tries + 1, "alerts: webhook delivery failed");
        }
        self.service
            .delivery_tried(
                &d.id,
                state,
                status.map(i64::from),
                error.as_deref(),
                now + backoff(d.tries),
            )
            .await
    }
}

#[derive(Clone, Copy)]
enum Job {
    Queue,
    Mail,
    Webhook,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Queue => "queue",
            Job::Mail => "mail",
            Job::Webhook => "webhook",
        }
    }
}

/// Gives the runtime's thread back every [`YIELD_EVERY`] items of a pass's loop. A flood's pass
/// goes through up to 50,000 blocked attempts without waiting on anything (tens of
/// milliseconds), and the checks queued behind it on the same thread would wait that long.
async fn yield_every(n: usize) {
    if n > 0 && n.is_multiple_of(YIELD_EVERY) {
        tokio::task::yield_now().await;
    }
}

/// See [`yield_every`]: a few hundred microseconds of work between yields.
const YIELD_EVERY: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass's loop lets another task on its thread run before it ends: once every
    /// [`YIELD_EVERY`] items, not at every one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_loop_gives_its_thread_back() {
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let at = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let other = tokio::spawn({
            let (ran, at) = (ran.clone(), at.clone());
            async move {
                ran.store(
                    at.load(std::sync::atomic::Ordering::SeqCst),
                    std::sync::atomic::Ordering::SeqCst,
                )
            }
        });
        for n in 0..3 * YIELD_EVERY {
            at.store(n, std::sync::atomic::Ordering::SeqCst);
            yield_every(n).await;
        }
        let ran = ran.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ran, YIELD_EVERY, "the other task ran at item {ran}");
        other.await.unwrap();
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::seconds(30));
        assert_eq!(backoff(1), Duration::seconds(60));
        assert_eq!(backoff(6), Duration::seconds(1920));
        assert_eq!(backoff(7), Duration::seconds(3600));
        assert_eq!(backoff(1000), Duration::seconds(3600));
    }
}

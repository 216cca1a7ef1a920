//! The change listener of a PostgreSQL store: a connection of its own (not from the pool, named
//! `deadbolt-listen` in `pg_stat_activity`) that `LISTEN`s on `deadbolt_changes`, on which the
//! change-log triggers announce every committed change with the log's position, and keeps that
//! position at hand. A check then learns whether anything changed without a round trip.
//!
//! Trust. The position is trusted only while the listener is connected and has heard from
//! PostgreSQL lately. On (re)connect it first `LISTEN`s, then reads the position, records it in
//! `change_listeners` (below), reads the position again, and only then trusts it: a change
//! committed before the record is in the second read, one committed after it waits for this
//! listener, and every one is announced on the channel it already listens to. Every second it
//! reads the position again (a ping), and trust lapses [`TRUST_FOR`] after the last answer: a
//! connection that died silently (a frozen server, a packet filter dropping everything) is
//! trusted at most that long, and TCP keepalives close it for good. While the listener is not
//! trusted (starting, reconnecting, PostgreSQL down or restarting) the store answers `None` and
//! checks read the position through, as without a listener. It reconnects by itself, waiting
//! 50 ms doubling to 2 s between tries, and says so in the log at most every 10 s.
//!
//! The guarantee for writes ([`Listener::applied_by_all`], then [`wait_until_applied`]). A
//! write returns only once every change listener connected to the database, of any replica, has
//! applied a position at or past the write's commit: each listener records what it applied in
//! the unlogged table `change_listeners` as soon as a notification raised its position (and
//! every second, that it is alive), and a trigger on that table announces every record on the
//! channel `deadbolt_applied` (migration 0020), which every listener hears. After its commit the
//! writer waits until its own listener has heard the write's position announced and every
//! listener it knows of has announced applying it: notifications arrive in commit order, so a
//! listener that recorded before the write committed is known by then, and one that records
//! after it reads the position after its record and has the write. A listener connecting loads
//! the table once (after `LISTEN`) and forgets at each ping the listeners no longer connected.
//! When the announcements do not say so within [`ANNOUNCED_WAIT`] (a slow listener, one gone and
//! not forgotten yet, this listener not trusted), the writer reads the table instead (joined
//! with `pg_stat_activity`, so that listeners gone do not count, and skipping those silent for
//! 3 s, whose own processes no longer trust them) until none is behind, for at most
//! [`APPLIED_WAIT`]; then it logs, counts the write as unconfirmed and returns anyway (the
//! change is committed; a listener that slow is what the bound is for). Its own process raises
//! its position at once ([`Listener::committed`]). So a change acknowledged through one replica
//! is enforced by the very next check on every replica whose listener is connected, and a
//! replica whose listener is not connected or not trusted reads the position through. The
//! exceptions, each counted or bounded: a write acknowledged unconfirmed (a listener more than
//! 200 ms behind), and a listener cut off without a word while its process still trusts it (at
//! most [`TRUST_FOR`]).
//!
//! Why not less: waiting only for this process's own listener to hear the commit was tried
//! first. PostgreSQL wakes every listening session at the commit, but each must then be
//! scheduled to send it, and its process to read it: on a busy machine another replica applied
//! the change a few milliseconds after the acknowledgement at the 99th percentile (up to 19 ms
//! seen), and a check sent right after the acknowledgement was answered from before.
//!
//! What it costs: a write reads the position inside its transaction; the notification's trip
//! to every listener, their records and the records' announcements are waited for. Measured
//! (`pg_tests::a_replica_applies_another_replicas_commit_before_it_is_acknowledged`, release
//! build, PostgreSQL 15 on the same 2-core machine): a write's median 0.93 ms (p99 1.5 ms) with
//! two replicas' listeners to wait for, none of the 200 writes reading the table (when it was
//! read after every write, once or a few times: median 0.94 ms, p99 4.7 ms, and a dozen
//! statements a change in all); the other replica had applied every one of the 200 writes when
//! it returned (delay from acknowledgement to applied: none, by construction). Checks pay
//! nothing; more in BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the listener reads the position when no notification came (its liveness ping).
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a ping or a position read may take before the connection is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after the last answer on the listener connection its position is trusted.
pub const TRUST_FOR: Duration = Duration::from_secs(2);
/// How long a write waits for every listener to apply it before it is acknowledged anyway.
pub const APPLIED_WAIT: Duration = Duration::from_millis(200);
/// How long a write waits for the listeners' announcements before it reads `change_listeners`
/// instead (a listener slower than that, or one gone and not yet pruned).
pub const ANNOUNCED_WAIT: Duration = Duration::from_millis(20);
/// A listener not heard from for this long is not waited for (its own process stopped trusting
/// it after [`TRUST_FOR`]; a second of margin for the notification's trip).
const SILENT_AFTER: Duration = Duration::from_secs(3);
/// Reconnection backoff.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LAST_PAUSE: Duration = Duration::from_secs(2);
/// At most one log line about the same trouble per this long.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The name the listener's connection carries in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "deadbolt-listen";

/// The listeners connected to this database that have not applied position `$1` yet, of those
/// that recorded within [`TRUST_FOR`] and a second of margin (for the clocks of two machines):
/// one silent longer is not trusted by its own process any more (its trust is renewed only
/// with the answers its records go with), so it reads the position through.
const BEHIND_SQL: &str = "SELECT count(*) FROM change_listeners l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE a.datname = current_database() AND a.application_name = 'deadbolt-listen' AND l.heard < $1 \
     AND l.seen_at > clock_timestamp() - interval '3 seconds'";
/// The listeners connected to this database and what they recorded, read once the listener
/// listens on `deadbolt_applied` (every later record is announced there).
const PEERS_SQL: &str =
    "SELECT l.pid, l.heard, l.seen_at > clock_timestamp() - interval '3 seconds' \
     FROM change_listeners l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE a.datname = current_database() AND a.application_name = 'deadbolt-listen'";
/// The listeners still connected, read at each ping to forget those gone.
const LIVE_SQL: &str = "SELECT pid FROM pg_stat_activity \
     WHERE datname = current_database() AND application_name = 'deadbolt-listen'";
/// What this listener applied, and that it is alive.
const RECORD_SQL: &str = "INSERT INTO change_listeners (pid, heard, seen_at) VALUES (pg_backend_pid(), $1, clock_timestamp()) \
     ON CONFLICT (pid) DO UPDATE SET heard = excluded.heard, seen_at = excluded.seen_at";

/// What the listener knows, read by every check: written rarely (a change, a ping a second),
/// read often, so plain atomics rather than a lock.
struct Heard {
    /// The position checks use: the last announced or read on the listener connection, raised
    /// at once by this process's own commits.
    known: AtomicI64,
    /// Trusted until this many nanoseconds after `base`; 0: not trusted.
    until_ns: AtomicU64,
    base: Instant,
    /// A notification without a position (sent by hand) arrived and the position was not read
    /// since: not at hand until it is.
    unread: AtomicBool,
    /// Wakes the listener's loop to record a position a notification raised.
    raised: tokio::sync::Notify,
    /// The highest position announced on the channel itself (never raised by this process's
    /// commits). Notifications arrive in commit order: once it reaches a write's position, every
    /// listener's record committed before that write has been heard.
    channel: AtomicI64,
    /// Every listener's last record as announced on `deadbolt_applied` (migration 0020).
    peers: Mutex<Peers>,
    /// Woken at every announcement, for writes waiting on them.
    progress: tokio::sync::Notify,
}

/// The listeners of the database as this one heard of them.
#[derive(Default)]
struct Peers {
    /// Loaded since the listener last connected; nothing below is used until then.
    loaded: bool,
    /// This listener's own backend: its process applies its own commits at once.
    own_pid: i32,
    by_pid: HashMap<i32, Peer>,
}

struct Peer {
    heard: i64,
    /// Recorded within [`SILENT_AFTER`] by PostgreSQL's clock when announced.
    fresh: bool,
    /// When this listener last heard of it.
    at: Instant,
}

impl Peers {
    fn heard(&mut self, pid: i32, heard: i64, fresh: bool) {
        let at = Instant::now();
        let p = self.by_pid.entry(pid).or_insert(Peer { heard, fresh, at });
        p.heard = p.heard.max(heard);
        p.fresh = fresh;
        p.at = at;
    }
}

impl Heard {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn hear(&self, position: i64) {
        self.known.fetch_max(position, Ordering::AcqRel);
    }

    /// Trusts the position for [`TRUST_FOR`] from now: called after an answer on the
    /// connection, once what it said was applied.
    fn renew(&self) {
        let until = self
            .now_ns()
            .saturating_add(TRUST_FOR.as_nanos() as u64)
            .max(1);
        self.until_ns.store(until, Ordering::Release);
    }

    fn distrust(&self) {
        self.until_ns.store(0, Ordering::Release);
        *lock(&self.peers) = Peers::default();
    }

    /// Whether every listener connected has announced applying `position` (see
    /// [`Listener::applied_by_all`]).
    fn all_applied(&self, position: i64) -> bool {
        if !self.trusted() || self.channel.load(Ordering::Acquire) < position {
            return false;
        }
        let peers = lock(&self.peers);
        peers.loaded
            && peers.by_pid.iter().all(|(pid, p)| {
                *pid == peers.own_pid
                    || p.heard >= position
                    || !p.fresh
                    || p.at.elapsed() > SILENT_AFTER
            })
    }

    /// An announcement on `deadbolt_applied`: "pid heard fresh".
    fn announced(&self, payload: &str) {
        let mut parts = payload.split(' ');
        let (Some(Ok(pid)), Some(Ok(heard)), Some(fresh)) = (
            parts.next().map(str::parse::<i32>),
            parts.next().map(str::parse::<i64>),
            parts.next(),
        ) else {
            return;
        };
        lock(&self.peers).heard(pid, heard, fresh == "1");
        self.progress.notify_waiters();
    }

    fn trusted(&self) -> bool {
        self.now_ns() < self.until_ns.load(Ordering::Acquire)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running listener; stopped when dropped (with the store).
pub struct Listener {
    heard: Arc<Heard>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening in the background. `position_sql` reads the change log's last position;
    /// a connection attempt is given up after `connect_timeout` (a server that accepts and then
    /// says nothing).
    pub fn start(
        mut config: tokio_postgres::Config,
        connect_timeout: Duration,
        position_sql: &'static str,
    ) -> Self {
        config.application_name(APPLICATION_NAME);
        // A connection that died without a word (the peer gone, a filter dropping packets) is
        // found by the pings within seconds; keepalives make the kernel close it too.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3);
        let heard = Arc::new(Heard {
            known: AtomicI64::new(0),
            until_ns: AtomicU64::new(0),
            base: Instant::now(),
            unread: AtomicBool::new(false),
            raised: tokio::sync::Notify::new(),
            channel: AtomicI64::new(0),
            peers: Mutex::new(Peers::default()),
            progress: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(run(config, connect_timeout, position_sql, heard.clone()));
        Self { heard, task }
    }

    /// The change log's position, when the listener is connected and has heard from PostgreSQL
    /// within [`TRUST_FOR`]; `None` otherwise (then the caller reads it from the store).
    pub fn at_hand(&self) -> Option<i64> {
        if !self.heard.trusted() || self.heard.unread.load(Ordering::Acquire) {
            return None;
        }
        Some(self.heard.known.load(Ordering::Acquire))
    }

    /// Whether the position is trusted now.
    pub fn trusted(&self) -> bool {
        self.heard.trusted()
    }

    /// A transaction of this process committed at `position`: this process's checks use it at
    /// once, before its notification comes back.
    pub fn committed(&self, position: i64) {
        self.heard.hear(position);
    }

    /// Waits, at most `within`, until this listener has heard `position` announced and every
    /// other listener connected to the database has announced applying it; whether it did. The
    /// same guarantee as [`wait_until_applied`] without reading `change_listeners`: a listener
    /// that recorded before the write committed was announced before the write itself (in
    /// commit order), so it is known here by the time the write's position is; one that
    /// recorded after reads the position after its record, and has the write. Listeners
    /// announce through a trigger on the table, whatever writes to it. `false` at once while
    /// this listener is not trusted.
    pub async fn applied_by_all(&self, position: i64, within: Duration) -> bool {
        if !self.heard.trusted() || !lock(&self.heard.peers).loaded {
            return false;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let woken = self.heard.progress.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.heard.all_applied(position) {
                return true;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return false;
            }
        }
    }

    /// How many listeners (this one included) this one knows of, for tests.
    pub fn peers(&self) -> usize {
        lock(&self.heard.peers).by_pid.len()
    }
}

/// When a write last gave up waiting for the listeners (for the log's rate limit).
static LAST_WAIT_LOG: Mutex<Option<Instant>> = Mutex::new(None);

/// Waits until every change listener connected to the database has applied `position` (see the
/// module's comment), at most [`APPLIED_WAIT`]. Whether they all had; a failed read ends the
/// wait (the write is committed; the store's trouble shows elsewhere). Holds a pool connection
/// only while it reads: a slow listener must not starve the pool.
pub async fn wait_until_applied(pool: &deadpool_postgres::Pool, position: i64) -> bool {
    let deadline = Instant::now() + APPLIED_WAIT;
    for attempt in 0u32.. {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            behind(&client, position).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(left.max(Duration::from_millis(1)), read).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(_)) if !left.is_zero() => {}
            Ok(Err(_)) => return false,
            _ => {
                let mut last = LAST_WAIT_LOG.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        position,
                        waited_ms = APPLIED_WAIT.as_millis() as u64,
                        "a committed change was not applied by every replica's change listener in time; acknowledged anyway"
                    );
                }
                return false;
            }
        }
        // The first tries follow each other at once (a listener applies a change within a
        // fraction of a millisecond of its notification); then a millisecond apart.
        if attempt >= 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    false
}

/// How many listeners connected to the database have not applied `position`.
async fn behind(
    client: &deadpool_postgres::Client,
    position: i64,
) -> Result<i64, tokio_postgres::Error> {
    let stmt = client.prepare_cached(BEHIND_SQL).await?;
    client.query_one(&stmt, &[&position]).await?.try_get(0)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects, listens, and reconnects for as long as the store is open.
async fn run(
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    position_sql: &'static str,
    heard: Arc<Heard>,
) {
    let mut pause = FIRST_PAUSE;
    let mut last_log: Option<Instant> = None;
    // Whether the log last said the listener was down (so that its return is said once).
    let mut said_down = false;
    loop {
        let mut trusted_once = false;
        let err = listen(
            &config,
            connect_timeout,
            position_sql,
            &heard,
            &mut trusted_once,
        )
        .await;
        heard.distrust();
        if trusted_once {
            pause = FIRST_PAUSE;
            if said_down {
                // It had come back; the next trouble is news.
                said_down = false;
                last_log = None;
            }
        }
        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            last_log = Some(Instant::now());
            said_down = true;
            tracing::warn!(error = %err, "the PostgreSQL change listener is not connected: checks read the change log's position from PostgreSQL until it is back");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

/// Runs `f` within [`READ_TIMEOUT`], its error and its timeout as text.
async fn within<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(READ_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {} ms",
            READ_TIMEOUT.as_millis()
        )),
    }
}

/// One connection's life: returns why it ended. Sets `trusted_once` once it was trusted.
async fn listen(
    config: &tokio_postgres::Config,
    connect_timeout: Duration,
    position_sql: &'static str,
    heard: &Arc<Heard>,
    trusted_once: &mut bool,
) -> String {
    let (client, mut connection) =
        match tokio::time::timeout(connect_timeout, config.connect(tokio_postgres::NoTls)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return format!("cannot connect: {e}"),
            Err(_) => return format!("no connection within {} ms", connect_timeout.as_millis()),
        };
    // The connection is driven here, so that notifications are seen; the client's queries go
    // through it too. A notification's position is applied right here, as its message is read
    // off the socket, and the loop below is woken to record it. One without a position is
    // handed to the loop to read it. The driver ends (dropping `tx`) when the connection fails
    // or closes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driven = heard.clone();
    let _driver = AbortOnDrop(tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n)))
                    if n.channel() == "deadbolt_applied" =>
                {
                    driven.announced(n.payload());
                }
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    match n.payload().parse::<i64>() {
                        Ok(position) => {
                            driven.hear(position);
                            driven.channel.fetch_max(position, Ordering::AcqRel);
                            driven.raised.notify_one();
                            driven.progress.notify_waiters();
                        }
                        Err(_) => {
                            driven.unread.store(true, Ordering::Release);
                            if tx.send(()).is_err() {
                                return;
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    }));
    let read = match async {
        // Its records need not wait for the WAL: they describe this session only.
        within(
            "LISTEN",
            client.batch_execute(
                "SET synchronous_commit = off; LISTEN deadbolt_changes; LISTEN deadbolt_applied; \
                 DELETE FROM change_listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)",
            ),
        )
        .await?;
        let read = within("prepare", client.prepare(position_sql)).await?;
        let record = within("prepare", client.prepare(RECORD_SQL)).await?;
        let live = within("prepare", client.prepare(LIVE_SQL)).await?;
        Ok::<_, String>((read, record, live))
    }
    .await
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let (read, record, live) = read;
    // LISTEN, read, record, read again, trust (see the module's comment).
    let mut recorded = i64::MIN;
    for _ in 0..2 {
        match read_position(&client, &read).await {
            Ok(p) => heard.hear(p),
            Err(e) => return e,
        }
        let now = heard.known.load(Ordering::Acquire);
        if let Err(e) = within("record", client.execute(&record, &[&now])).await {
            return e;
        }
        recorded = now;
    }
    // Every listener as of now; later records are announced. Each one recorded before the
    // position just read is here, so that position counts as heard on the channel.
    let peers = within("peers", async {
        let own: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .try_get(0)?;
        Ok((own, client.query(PEERS_SQL, &[]).await?))
    })
    .await;
    match peers {
        Ok((own, rows)) => {
            let mut p = lock(&heard.peers);
            p.own_pid = own;
            for r in rows {
                match (r.try_get(0), r.try_get(1), r.try_get(2)) {
                    (Ok(pid), Ok(h), Ok(fresh)) => p.heard(pid, h, fresh),
                    _ => return "peers: unexpected row".into(),
                }
            }
            p.loaded = true;
            heard.channel.fetch_max(recorded, Ordering::AcqRel);
        }
        Err(e) => return e,
    }
    heard.renew();
    *trusted_once = true;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let mut must_read = false;
        tokio::select! {
            n = rx.recv() => {
                if n.is_none() {
                    return "the connection closed".into();
                }
                // Several announced meanwhile: one read covers them all.
                while rx.try_recv().is_ok() {}
                must_read = true;
            }
            _ = ping.tick() => must_read = true,
            _ = heard.raised.notified() => {}
        }
        if must_read {
            // Cleared before the read: a notification arriving during it sets it again (and
            // is read next).
            heard.unread.store(false, Ordering::Release);
            match read_position(&client, &read).await {
                Ok(p) => heard.hear(p),
                Err(e) => return e,
            }
            heard.renew();
            // Forget the listeners gone: those not connected now and not heard of since the
            // question was asked (one that connected meanwhile is not in the answer).
            let asked = Instant::now();
            match within("live listeners", client.query(&live, &[])).await {
                Ok(rows) => {
                    let live: Vec<i32> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
                    lock(&heard.peers)
                        .by_pid
                        .retain(|pid, p| p.at >= asked || live.contains(pid));
                }
                Err(e) => return e,
            }
        }
        // Recorded when it rose, and at every ping (that it is alive).
        let now = heard.known.load(Ordering::Acquire);
        if now > recorded || must_read {
            if let Err(e) = within("record", client.execute(&record, &[&now])).await {
                return e;
            }
            recorded = now;
            heard.renew();
        }
    }
}

async fn read_position(
    client: &tokio_postgres::Client,
    read: &tokio_postgres::Statement,
) -> Result<i64, String> {
    within("position read", async {
        client.query_one(read, &[]).await?.try_get::<_, i64>(0)
    })
    .await
}

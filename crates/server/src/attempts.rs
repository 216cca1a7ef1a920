//! Attempts are written by one background task, in batched transactions, from a bounded queue:
//! a check never waits for a disk write. When the queue is full a check waits a short moment for
//! room, then answers anyway and the attempt is counted as dropped. The writer is supervised: a
//! store error is retried with backoff, a panic restarts it with the batch it was writing, and
//! nothing ends it but shutdown, when the queue is drained before the process exits.

use deadbolt_store::{Attempt, AttemptBatch, NewAttempt, Store, StoreError};
use futures_util::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

const BATCH: usize = 16_384;
/// A batch's size at most while a backlog waits (a batch filled without lingering). A write
/// costs about as long whatever its size when the store is slow (PostgreSQL answering in
/// seconds, another replica's writer holding the turn): at 16,384 a write, two PostgreSQL
/// servers answering 20,000 checks a second each filled their queues and dropped attempts.
const BACKLOG_BATCH: usize = 4 * BATCH;
/// How long the writer waits for a batch to fill.
const LINGER: Duration = Duration::from_millis(100);
/// How long a check waits for room in a full queue before its attempt is dropped.
pub const FULL_WAIT: Duration = Duration::from_millis(25);
/// At most one log line about dropped attempts this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Attempts waiting and no write done for this long: the writer is stalled (`/readyz`).
const STALLED_AFTER: Duration = Duration::from_secs(10);
/// A batch that made the writer panic this many times is given up (and counted as dropped).
const PANICS_PER_BATCH: u32 = 3;
/// Tries of a batch at shutdown while the store keeps failing.
const TRIES_AT_SHUTDOWN: u32 = 5;
/// Blocked attempts the feed holds at most (about 300 bytes each): beyond, the oldest batches
/// are dropped and the alert worker reads them from the store.
const FEED_HOLDS: usize = 32_768;

/// Where the writer puts attempts: the store (tests put a store that fails on purpose).
pub trait AttemptSink: Send + Sync + 'static {
    /// Writes the batch; the first id it was given (`None`: none known).
    fn record(
        &self,
        batch: &AttemptBatch,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// How long a request may wait on it: at shutdown the writer waits no longer per try.
    fn timeout(&self) -> Duration;
}

impl AttemptSink for Store {
    fn record(
        &self,
        batch: &AttemptBatch,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
        self.record_attempts(batch)
    }
    fn timeout(&self) -> Duration {
        Store::timeout(self)
    }
}

/// The blocked attempts this process's writer committed, with the ids each batch took, for the
/// alert worker: it takes them from here instead of reading back and decoding what was just
/// written, as long as the batches here follow on from its cursor without a gap. Anything else
/// (attempts written by another process or replica, batches dropped here, a batch written
/// again after its writer panicked) leaves a gap, and the worker reads the store across it.
#[derive(Default)]
pub struct BlockedFeed {
    batches: Mutex<Fed>,
}

#[derive(Default)]
struct Fed {
    /// (first id, last id, blocked attempts), in id order.
    batches: VecDeque<(i64, i64, Vec<Attempt>)>,
    held: usize,
}

impl BlockedFeed {
    fn fed(&self) -> std::sync::MutexGuard<'_, Fed> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A committed batch: it took the ids `first..=last`, and these are its blocked attempts.
    pub fn push(&self, (first, last, blocked): (i64, i64, Vec<Attempt>)) {
        let mut fed = self.fed();
        fed.held += blocked.len();
        fed.batches.push_back((first, last, blocked));
        while fed.held > FEED_HOLDS {
            match fed.batches.pop_front() {
                Some((_, _, gone)) => fed.held -= gone.len(),
                None => break,
            }
        }
    }

    /// The blocked attempts with ids after `after` and the last id they account for, when the
    /// batches held go on from `after` without a gap: every id in between is one of theirs.
    /// Whole batches, at least one, then more while they fit in `at_most`. `None`: the store
    /// must be read from `after`.
    pub fn take_after(&self, after: i64, at_most: usize) -> Option<(Vec<Attempt>, i64)> {
        let mut fed = self.fed();
        let mut through = after;
        let mut out = Vec::new();
        while let Some(&(first, last, ref blocked)) = fed.batches.front() {
            if first > through + 1 || (through > after && out.len() + blocked.len() > at_most) {
                break;
            }
            let (_, _, blocked) = fed.batches.pop_front()?;
            fed.held -= blocked.len();
            // Read already (from the store, or an earlier batch here).
            if last <= through {
                continue;
            }
            if first > through && out.is_empty() {
                // The usual case: the whole batch, its vector moved rather than copied.
                out = blocked;
            } else {
                out.extend(blocked.into_iter().filter(|a| a.id > through));
            }
            through = last;
        }
        (through > after).then_some((out, through))
    }
}

#[derive(Clone)]
pub struct AttemptQueue {
    tx: mpsc::Sender<NewAttempt>,
    metrics: Arc<Metrics>,
    state: Arc<WriterState>,
}

/// What the writer shares with the checks and `/readyz`.
struct WriterState {
    capacity: usize,
    base: Instant,
    /// Milliseconds after `base` of the last write that succeeded (or of the start).
    progress_ms: AtomicU64,
    /// Milliseconds after `base` of the last log line about dropped attempts, plus one (0: none).
    drop_logged_ms: AtomicU64,
    dropped_unlogged: AtomicU64,
    /// The batch being written, kept here so that a panic in the writer does not lose it.
    pending: Mutex<Option<Pending>>,
    /// Raised by a check that found the queue full: the writer stops lingering.
    room_wanted: tokio::sync::Notify,
}

struct Pending {
    batch: Arc<AttemptBatch>,
    n: usize,
    panics: u32,
}

impl WriterState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why the writer is not keeping up, for `/readyz`.
pub fn writer_trouble(queue: &AttemptQueue) -> Option<String> {
    let s = &queue.state;
    let depth = queue.metrics.queue_depth().max(0) as u64;
    let high_water = (s.capacity as u64 * 3) / 4;
    if depth > high_water {
        return Some(format!(
            "attempt queue above its high-water mark ({depth} of {} waiting)",
            s.capacity
        ));
    }
    let idle = s
        .now_ms()
        .saturating_sub(s.progress_ms.load(Ordering::Relaxed));
    (depth > 0 && idle > STALLED_AFTER.as_millis() as u64).then(|| {
        format!(
            "attempt writer stalled: {depth} attempts waiting, nothing written for {} s",
            idle / 1000
        )
    })
}

impl AttemptQueue {
    /// Starts the writer; it ends once every queue handle is dropped and the queue is drained.
    pub fn start<S: AttemptSink>(
        store: Arc<S>,
        capacity: usize,
        metrics: Arc<Metrics>,
        feed: Option<Arc<BlockedFeed>>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let state = Arc::new(WriterState {
            capacity,
            base: Instant::now(),
            progress_ms: AtomicU64::new(0),
            drop_logged_ms: AtomicU64::new(0),
            dropped_unlogged: AtomicU64::new(0),
            pending: Mutex::new(None),
            room_wanted: tokio::sync::Notify::new(),
        });
        let handle = tokio::spawn(supervise(Writer {
            store,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            metrics: metrics.clone(),
            state: state.clone(),
            feed,
        }));
        (Self { tx, metrics, state }, handle)
    }

    /// Queues an attempt. Waits at most [`FULL_WAIT`] for room; past that the attempt is dropped
    /// and counted, and the check answers anyway.
    pub async fn record(&self, attempt: NewAttempt) {
        self.metrics.queued(1);
        // Room in the queue is the usual case: no waiting, and no send future built (it is
        // boxed, so the futures of the checks that never wait stay small).
        let sent = match self.tx.try_send(attempt) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(a)) => {
                self.state.room_wanted.notify_one();
                matches!(
                    tokio::time::timeout(FULL_WAIT, Box::pin(self.tx.send(a))).await,
                    Ok(Ok(()))
                )
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !sent {
            self.metrics.queued(-1);
            self.dropped(1);
        }
    }

    fn dropped(&self, n: u64) {
        dropped(&self.metrics, &self.state, n);
    }
}

/// Counts attempts that will not be recorded, and says so at most every [`DROP_LOG_EVERY`].
fn dropped(metrics: &Metrics, state: &WriterState, n: u64) {
    metrics.dropped(n as i64);
    state.dropped_unlogged.fetch_add(n, Ordering::Relaxed);
    let now = state.now_ms() + 1;
    let last = state.drop_logged_ms.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < DROP_LOG_EVERY.as_millis() as u64 {
        return;
    }
    // One caller wins the right to log; the others count.
    if state
        .drop_logged_ms
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        let count = state.dropped_unlogged.swap(0, Ordering::Relaxed);
        log(|| {
            tracing::error!(
                dropped = count,
                "attempts not recorded: the attempt queue is full (the store is not taking them)"
            )
        });
    }
}

/// Logs without letting a failing log writer take the attempt writer down.
fn log(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(f));
}

struct Writer<S> {
    store: Arc<S>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<NewAttempt>>>,
    metrics: Arc<Metrics>,
    state: Arc<WriterState>,
    /// Where committed blocked attempts go, if anyone takes them.
    feed: Option<Arc<BlockedFeed>>,
}

/// Runs the writer until the queue is closed and drained; restarts it after a panic.
async fn supervise<S: AttemptSink>(w: Writer<S>) {
    let w = Arc::new(w);
    let mut pause = Duration::from_millis(50);
    loop {
        match AssertUnwindSafe(write_loop(w.clone())).catch_unwind().await {
            Ok(()) => return,
            Err(_) => {
                log(|| tracing::error!("the attempt writer panicked; restarting it"));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn write_loop<S: AttemptSink>(w: Arc<Writer<S>>) {
    let mut rx = w.rx.lock().await;
    // A batch left by a writer that panicked goes first.
    let left = w.state.pending().as_ref().map(|p| (p.batch.clone(), p.n));
    if let Some((batch, n)) = left {
        write(&w, batch, n, &|| rx.is_closed()).await;
    }
    let keep_blocked = w.feed.is_some();
    let mut batch = Vec::with_capacity(BATCH);
    // The last batch's vector, emptied by its encoding: filled again instead of a fresh one.
    let mut spare: Option<Vec<NewAttempt>> = None;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        w.state
            .progress_ms
            .store(w.state.now_ms(), Ordering::Relaxed);
        // Let a batch build up: one transaction for many attempts, and checks that queue an
        // attempt while the writer sleeps wake nobody, unless they find the queue full: then
        // the writer empties it into the batch at once, so that a burst larger than the queue
        // finds room instead of being dropped.
        if batch.len() < BATCH && !rx.is_closed() {
            let until = tokio::time::Instant::now() + LINGER;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = w.state.room_wanted.notified() => {}
                }
                take_waiting(&mut rx, &mut batch, BATCH);
                if batch.len() >= BATCH || rx.is_closed() {
                    break;
                }
            }
            take_waiting(&mut rx, &mut batch, BATCH);
        }
        if batch.len() >= BATCH {
            // Full at once: the store is behind the checks.
            take_waiting(&mut rx, &mut batch, BACKLOG_BATCH);
        }
        let n = batch.len();
        let next = spare.take().unwrap_or_else(|| Vec::with_capacity(BATCH));
        let mut taken = std::mem::replace(&mut batch, next);
        // Encoding thousands of attempts (and freeing them) takes milliseconds: not on a
        // runtime worker, where the checks it serves would wait for it.
        let encoded = match tokio::task::spawn_blocking(move || {
            let (rows, blocked) = if keep_blocked {
                let (rows, blocked) = AttemptBatch::encode_keeping_blocked(&mut taken);
                (rows, Some(blocked))
            } else {
                (AttemptBatch::encode(&mut taken), None)
            };
            (rows, blocked, taken)
        })
        .await
        {
            Ok((rows, blocked, emptied)) => {
                spare = Some(emptied);
                (Arc::new(rows), blocked)
            }
            Err(e) => {
                log(
                    || tracing::error!(error = %e, lost = n, "attempts could not be encoded: not recorded"),
                );
                w.metrics.queued(-(n as i64));
                dropped(&w.metrics, &w.state, n as u64);
                continue;
            }
        };
        let (encoded, blocked) = encoded;
        *w.state.pending() = Some(Pending {
            batch: encoded.clone(),
            n,
            panics: 0,
        });
        let first = write(&w, encoded, n, &|| rx.is_closed()).await;
        if let (Some(feed), Some(first), Some(blocked)) = (&w.feed, first, blocked) {
            feed.push(blocked.numbered(first));
        }
    }
}

/// Moves what waits in the queue into the batch, up to `limit` in it.
fn take_waiting(rx: &mut mpsc::Receiver<NewAttempt>, batch: &mut Vec<NewAttempt>, limit: usize) {
    while batch.len() < limit {
        match rx.try_recv() {
            Ok(a) => batch.push(a),
            Err(_) => break,
        }
    }
}

/// Writes the pending batch, counting a panic against it: a batch that keeps making the writer
/// panic is given up (and counted as dropped) rather than taking the writer down for good.
/// Returns the first id the batch was given, when it was written and the store says.
async fn write<S: AttemptSink>(
    w: &Writer<S>,
    batch: Arc<AttemptBatch>,
    n: usize,
    closing: &(dyn Fn() -> bool + Sync),
) -> Option<i64> {
    match AssertUnwindSafe(write_batch(w, batch, n, closing))
        .catch_unwind()
        .await
    {
        Ok(first) => first,
        Err(panic) => {
            let give_up = {
                let mut p = w.state.pending();
                match p.as_mut() {
                    Some(p) => {
                        p.panics += 1;
                        (p.panics >= PANICS_PER_BATCH).then_some(p.n)
                    }
                    None => None,
                }
            };
            if let Some(n) = give_up {
                *w.state.pending() = None;
                w.metrics.queued(-(n as i64));
                dropped(&w.metrics, &w.state, n as u64);
            }
            std::panic::resume_unwind(panic);
        }
    }
}

/// Writes one batch, retrying with backoff until the store takes it: attempts are not dropped
/// on a hiccup. Only at shutdown, with the store still failing, does it give up. Returns the
/// first id the batch was given, if written.
async fn write_batch<S: AttemptSink>(
    w: &Writer<S>,
    batch: Arc<AttemptBatch>,
    n: usize,
    closing: &(dyn Fn() -> bool + Sync),
) -> Option<i64> {
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    let first = loop {
        // At shutdown a store that does not answer is not waited on for the writer's usual long
        // deadline, five times over: the process is being stopped.
        let result = if closing() {
            let limit = w.store.timeout().max(Duration::from_secs(1));
            tokio::time::timeout(limit, w.store.record(&batch))
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer at shutdown".into())))
        } else {
            w.store.record(&batch).await
        };
        match result {
            Ok(first) => {
                w.metrics.written(n as i64);
                break first;
            }
            Err(e) => {
                tries += 1;
                if closing() && tries >= TRIES_AT_SHUTDOWN {
                    log(
                        || tracing::error!(error = %e, lost = n, "shutting down with the store failing: attempts not recorded"),
                    );
                    dropped(&w.metrics, &w.state, n as u64);
                    break None;
                }
                log(|| tracing::warn!(error = %e, n, "could not record attempts; retrying"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    *w.state.pending() = None;
    w.metrics.queued(-(n as i64));
    w.state
        .progress_ms
        .store(w.state.now_ms(), Ordering::Relaxed);
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A store that panics on its first `panics` writes, fails the next `errors`, then takes
    /// everything, counting the attempts it took; a batch holding the account "poison" makes
    /// it panic every time.
    struct Flaky {
        calls: AtomicUsize,
        panics: usize,
        errors: usize,
        taken: AtomicUsize,
    }

    impl AttemptSink for Flaky {
        #[allow(clippy::manual_async_fn)]
        fn record(
            &self,
            batch: &AttemptBatch,
        ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let n = batch.len();
            let poison = batch.app_ids().any(|a| a == "poison");
            async move {
                if poison || call < self.panics {
                    panic!("the store panicked");
                }
                if call < self.panics + self.errors {
                    return Err(StoreError::Unavailable("down".into()));
                }
                let before = self.taken.fetch_add(n, Ordering::SeqCst);
                Ok(Some(before as i64 + 1))
            }
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    fn attempt(account: &str) -> NewAttempt {
        NewAttempt {
            at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
            app_id: if account == "poison" { "poison" } else { "app" }.into(),
            key_id: None,
            account: account.into(),
            locked: true,
            reason: deadbolt_core::Reason::AccountLocked,
            ip: None,
            device: None,
            location: None,
            integration_type: None,
            integration_data: None,
        }
    }

    /// A store that takes everything, keeping the size of each batch it was given.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl AttemptSink for Sizes {
        #[allow(clippy::manual_async_fn)]
        fn record(
            &self,
            batch: &AttemptBatch,
        ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
            let n = batch.len();
            async move {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).push(n);
                Ok(None)
            }
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(30)
        }
    }

    /// A backlog (more waiting than a batch holds, as when the store has been slow) is written
    /// in batches larger than the usual one, so that the writer catches up in a few writes
    /// instead of one per 16,384 attempts; nothing is lost or written twice.
    #[tokio::test]
    async fn a_backlog_is_written_in_larger_batches() {
        let sink = Arc::new(Sizes::default());
        let metrics = Arc::new(Metrics::default());
        let (queue, writer) = AttemptQueue::start(sink.clone(), 200_000, metrics.clone(), None);
        // Queued without a pause (room in the queue: no await yields), so the writer finds
        // them all waiting.
        for i in 0..100_000 {
            queue.record(attempt(&format!("a{i}"))).await;
        }
        drop(queue);
        tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("the writer drains and ends")
            .expect("the writer task does not fail");
        let sizes = sink.0.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100_000, "{sizes:?}");
        assert_eq!(sizes.iter().max(), Some(&BACKLOG_BATCH), "{sizes:?}");
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert_eq!(metrics.queue_depth(), 0);
    }

    /// Panics and errors of the store end nothing: the writer restarts, retries the batch it
    /// held, and every attempt is written once.
    #[tokio::test]
    async fn the_writer_survives_panics_and_errors_and_loses_nothing() {
        let sink = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
            panics: 2,
            errors: 2,
            taken: AtomicUsize::new(0),
        });
        let metrics = Arc::new(Metrics::default());
        let (queue, writer) = AttemptQueue::start(sink.clone(), 1000, metrics.clone(), None);
        for i in 0..50 {
            queue.record(attempt(&format!("a{i}"))).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 50..100 {
            queue.record(attempt(&format!("a{i}"))).await;
        }
        drop(queue);
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer drains and ends")
            .expect("the writer task does not fail");
        assert_eq!(sink.taken.load(Ordering::SeqCst), 100);
        assert!(
            sink.calls.load(Ordering::SeqCst) >= 5,
            "it panicked and failed first"
        );
        assert_eq!(metrics.queue_depth(), 0);
        assert!(metrics
            .render()
            .contains("deadbolt_attempts_dropped_total 0"));
    }

    /// A batch that makes the store panic every time is given up after a few tries, counted as
    /// dropped; the writer goes on with the next.
    #[tokio::test]
    async fn a_batch_that_always_panics_is_dropped_and_counted() {
        let sink = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
            panics: 0,
            errors: 0,
            taken: AtomicUsize::new(0),
        });
        let metrics = Arc::new(Metrics::default());
        let (queue, writer) = AttemptQueue::start(sink.clone(), 1000, metrics.clone(), None);
        queue.record(attempt("poison")).await;
        queue.record(attempt("a1")).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        queue.record(attempt("a2")).await;
        drop(queue);
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer drains and ends")
            .expect("the writer task does not fail");
        assert_eq!(sink.taken.load(Ordering::SeqCst), 1, "the later batch");
        assert!(metrics
            .render()
            .contains("deadbolt_attempts_dropped_total 2"));
        assert_eq!(metrics.queue_depth(), 0);
    }

    /// A full queue holds a check at most FULL_WAIT: the attempt is then dropped and counted.
    #[tokio::test]
    async fn a_full_queue_holds_a_check_only_briefly() {
        let sink = Arc::new(Flaky {
            calls: AtomicUsize::new(0),
            panics: 0,
            errors: usize::MAX / 2,
            taken: AtomicUsize::new(0),
        });
        let metrics = Arc::new(Metrics::default());
        let (queue, _writer) = AttemptQueue::start(sink, 4, metrics.clone(), None);
        // The writer takes these and is then busy failing to write them.
        for i in 0..4 {
            queue.record(attempt(&format!("first{i}"))).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        for i in 0..40 {
            queue.record(attempt(&format!("a{i}"))).await;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "did not hang");
        let text = metrics.render();
        let dropped: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("deadbolt_attempts_dropped_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 0, "{text}");
        assert_eq!(metrics.queue_depth() + dropped, 44);
    }

    /// A blocked attempt with this id.
    fn blocked(id: i64) -> Attempt {
        Attempt {
            id,
            at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
            app_id: "app".into(),
            key_id: None,
            account: format!("user{id}"),
            locked: true,
            reason: "account_locked".into(),
            ip: None,
            device: None,
            location: None,
            integration_type: None,
            integration_data: None,
        }
    }

    fn ids(taken: Option<(Vec<Attempt>, i64)>) -> Option<(Vec<i64>, i64)> {
        taken.map(|(a, through)| (a.iter().map(|a| a.id).collect(), through))
    }

    /// The feed hands over batches only where they go on from the cursor without a gap; what
    /// the store was read for is skipped; a take stops at its budget after a first batch.
    #[test]
    fn the_feed_hands_over_only_what_follows_the_cursor() {
        let feed = BlockedFeed::default();
        assert_eq!(ids(feed.take_after(0, 100)), None, "nothing held");
        feed.push((1, 10, vec![blocked(3), blocked(7)]));
        feed.push((11, 20, vec![]));
        feed.push((21, 30, vec![blocked(21), blocked(30)]));
        // Another process wrote 31..=40: the next batch here leaves a gap.
        feed.push((41, 50, vec![blocked(45)]));
        assert_eq!(
            ids(feed.take_after(0, 100)),
            Some((vec![3, 7, 21, 30], 30)),
            "allowed-only batches move the cursor too"
        );
        assert_eq!(ids(feed.take_after(30, 100)), None, "31..=40 is not here");
        // The store was read to 44, into the next batch: only the rest of it is handed over.
        assert_eq!(ids(feed.take_after(44, 100)), Some((vec![45], 50)));
        assert_eq!(ids(feed.take_after(50, 100)), None);
        // Read past several batches from the store: those are dropped, not handed over again.
        feed.push((51, 60, vec![blocked(51)]));
        feed.push((61, 70, vec![blocked(61), blocked(62), blocked(63)]));
        feed.push((71, 80, vec![blocked(71), blocked(72)]));
        assert_eq!(
            ids(feed.take_after(60, 1)),
            Some((vec![61, 62, 63], 70)),
            "one whole batch even over the budget, no more"
        );
        assert_eq!(ids(feed.take_after(70, 10)), Some((vec![71, 72], 80)));
    }

    /// A feed nobody takes from holds a bounded number of attempts: the oldest batches go, and
    /// the gap they leave sends the worker to the store.
    #[test]
    fn the_feed_is_bounded_and_drops_its_oldest() {
        let feed = BlockedFeed::default();
        let per = 1_000;
        let batches = FEED_HOLDS / per + 5;
        for b in 0..batches as i64 {
            let first = b * per as i64 + 1;
            feed.push((
                first,
                first + per as i64 - 1,
                (first..first + per as i64).map(blocked).collect(),
            ));
        }
        assert!(feed.fed().held <= FEED_HOLDS);
        assert_eq!(
            ids(feed.take_after(0, usize::MAX)),
            None,
            "the first are gone"
        );
        let kept_from = (batches - FEED_HOLDS / per) as i64 * per as i64;
        let (taken, through) = feed
            .take_after(kept_from, usize::MAX)
            .expect("the rest follows on");
        assert_eq!(
            taken.len(),
            FEED_HOLDS / per * per,
            "the newest batches that fit"
        );
        assert_eq!(through, batches as i64 * per as i64);
        assert_eq!(feed.fed().held, 0);
    }
}

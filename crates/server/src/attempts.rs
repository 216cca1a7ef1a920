//! Attempts are written by one background task, in batched transactions, from a bounded queue:
//! a check never waits for a disk write unless the queue is full (backpressure). On shutdown
//! the queue is drained before the process exits.

use deadbolt_store::{AttemptBatch, NewAttempt, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

const BATCH: usize = 16_384;
/// How long the writer waits for a batch to fill.
const LINGER: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct AttemptQueue {
    tx: mpsc::Sender<NewAttempt>,
    metrics: Arc<Metrics>,
}

impl AttemptQueue {
    /// Starts the writer; it ends once every queue handle is dropped and the queue is drained.
    pub fn start(
        store: Arc<Store>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = tokio::spawn(writer(store, rx, metrics.clone()));
        (Self { tx, metrics }, handle)
    }

    pub async fn record(&self, attempt: NewAttempt) {
        self.metrics.queued(1);
        // Room in the queue is the usual case: no waiting, and no send future built (it is
        // boxed, so the futures of the checks that never wait stay small).
        let sent = match self.tx.try_send(attempt) {
            Ok(()) => Ok(()),
            // Full: the check waits for the writer (backpressure), never drops the attempt.
            Err(mpsc::error::TrySendError::Full(a)) => {
                Box::pin(self.tx.send(a)).await.map_err(drop)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if sent.is_err() {
            self.metrics.queued(-1);
            tracing::error!("attempt writer has stopped; attempt not recorded");
        }
    }
}

async fn writer(store: Arc<Store>, mut rx: mpsc::Receiver<NewAttempt>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Let a batch build up: one transaction for many attempts, and checks that queue an
        // attempt while the writer sleeps wake nobody.
        if batch.len() < BATCH && !rx.is_closed() {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len();
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        // Encoding thousands of attempts (and freeing them) takes milliseconds: not on a
        // runtime worker, where the checks it serves would wait for it.
        let rows = match tokio::task::spawn_blocking(move || AttemptBatch::new(taken)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, lost = n, "attempts could not be encoded: not recorded");
                metrics.queued(-(n as i64));
                continue;
            }
        };
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        // A batch is retried until the store takes it: attempts are not dropped on a hiccup.
        // Only at shutdown, with the store still failing, does the writer give up (and say so).
        while let Err(e) = store.record_attempts(&rows).await {
            tries += 1;
            if rx.is_closed() && tries >= 5 {
                tracing::error!(error = %e, lost = n, "shutting down with the store failing: attempts not recorded");
                break;
            }
            tracing::warn!(error = %e, n, "could not record attempts; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        metrics.written(n as i64);
        metrics.queued(-(n as i64));
    }
}

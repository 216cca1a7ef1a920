//! What removing attempts past the retention costs on a large SQLite store: the store is filled
//! with attempts spread over 180 days (in runs of the size the attempt writer makes), then the
//! older half is removed the way the server's retention does it (a few hundred runs a
//! transaction, a pause between), while a reader does the check path's store read and a writer
//! records new attempts, as a serving server would. Reports each side's latency before and
//! during the removal. A benchmark, not a test: it prints figures and asserts nothing.
//!
//!   cargo build --release -p deadbolt-bench
//!   target/release/prune_cost --attempts 20000000

use anyhow::Result;
use chrono::Duration;
use clap::Parser;
use deadbolt_core::{AccountNames, AccountState, Clock, Reason, SystemClock, UnenrolledPolicy};
use deadbolt_store::{AttemptBatch, AuditBy, NewApplication, NewAttempt, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Attempts in the store before the removal (half of them past the retention).
    #[arg(long, default_value_t = 20_000_000)]
    attempts: usize,
    /// Attempts per stored run (one application's share of one written batch).
    #[arg(long, default_value_t = 100)]
    per_run: usize,
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// Runs removed per transaction, and the pause between two, as the server does.
    #[arg(long, default_value_t = 500)]
    batch: i64,
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, v: &mut [f64]) -> String {
    let n = v.len();
    format!(
        "{name}: n={n} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(v, 0.5),
        pct(v, 0.99),
        pct(v, 1.0)
    )
}

/// Reads what a check reads for an account not cached, and records a small batch of attempts
/// every 10 ms, until `stop`; the latencies (ms) of each.
async fn serve_like(
    store: Arc<Store>,
    apps: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let reader = {
        let (store, apps, stop) = (store.clone(), apps.clone(), stop.clone());
        tokio::spawn(async move {
            let key = AccountNames::default().key("probe");
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                store.lock_inputs(&apps[i % apps.len()], &key).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                i += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            Ok::<_, anyhow::Error>(lat)
        })
    };
    let writer = tokio::spawn(async move {
        let mut lat = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = SystemClock.now();
            let batch: Vec<NewAttempt> = apps.iter().take(10).map(|a| attempt(a, now)).collect();
            let t = Instant::now();
            store.record_attempts(&AttemptBatch::new(batch)).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok::<_, anyhow::Error>(lat)
    });
    Ok((reader.await??, writer.await??))
}

fn attempt(app: &str, at: chrono::DateTime<chrono::Utc>) -> NewAttempt {
    NewAttempt {
        at,
        app_id: app.to_string(),
        key_id: None,
        account: "someone@example.com".into(),
        locked: false,
        reason: Reason::AccountUnlocked,
        ip: Some("203.0.113.7".into()),
        device: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        location: None,
        integration_type: Some("cognito".into()),
        integration_data: None,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("deadbolt-prune-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("deadbolt.db");
    let store = Arc::new(Store::open(&format!("sqlite://{}", path.display())).await?);
    let now = SystemClock.now();
    let company = store.create_company("prune", now).await?;
    let mut apps = Vec::new();
    for i in 0..args.apps {
        let app = store
            .create_application(
                &NewApplication {
                    company_id: company.id.clone(),
                    name: format!("app {i}"),
                    issuer: format!("app{i}.example.com"),
                    unenrolled: UnenrolledPolicy::Allow,
                    default_state: AccountState::Unlocked,
                    account_names: Default::default(),
                },
                now,
            )
            .await?;
        store
            .enroll(&app.id, "probe", None, now, &AuditBy::default())
            .await?;
        apps.push(app.id);
    }
    let apps = Arc::new(apps);
    // Attempts over the last 180 days, oldest first, in batches of a run per application.
    let span = Duration::days(180);
    let start = now - span;
    let per_batch = args.apps * args.per_run;
    let batches = args.attempts.div_ceil(per_batch);
    let step = span / i32::try_from(batches).unwrap_or(i32::MAX);
    let t = Instant::now();
    for b in 0..batches {
        let at = start + step * i32::try_from(b).unwrap_or(i32::MAX);
        let mut batch = Vec::with_capacity(per_batch);
        for app in apps.iter() {
            for _ in 0..args.per_run {
                batch.push(attempt(app, at));
            }
        }
        store.record_attempts(&AttemptBatch::new(batch)).await?;
        if b % 200 == 0 {
            eprintln!(
                "  {} of {} attempts written",
                b * per_batch,
                batches * per_batch
            );
        }
    }
    let written = store.attempt_count().await?;
    let size = std::fs::metadata(&path)?.len() as f64 / 1048576.0;
    println!(
        "store: {written} attempts in runs of {} ({} applications), {size:.0} MiB, written in {:.0} s",
        args.per_run,
        args.apps,
        t.elapsed().as_secs_f64()
    );

    // Before: the reader and the writer alone, 10 s.
    let stop = Arc::new(AtomicBool::new(false));
    let before = tokio::spawn(serve_like(store.clone(), apps.clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut r0, mut w0) = before.await??;

    // During: the retention's removal of everything older than 90 days.
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(serve_like(store.clone(), apps.clone(), stop.clone()));
    let horizon = SystemClock.now() - Duration::days(90);
    let t = Instant::now();
    let mut removed = 0u64;
    let mut txn = Vec::new();
    loop {
        let b = Instant::now();
        let n = store.prune_attempts(horizon, args.batch).await?;
        txn.push(b.elapsed().as_secs_f64() * 1e3);
        if n == 0 {
            break;
        }
        removed += n;
        tokio::time::sleep(std::time::Duration::from_millis(args.pause_ms)).await;
    }
    let took = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut r1, mut w1) = during.await??;
    let left = store.attempt_count().await?;
    println!(
        "removed {removed} attempts in {took:.1} s ({:.0} attempts/s), {} transactions of up to {} runs; {left} left",
        removed as f64 / took,
        txn.len(),
        args.batch
    );
    println!("{}", summary("removal transaction", &mut txn));
    println!("{}", summary("check read, before", &mut r0));
    println!("{}", summary("check read, during", &mut r1));
    println!("{}", summary("attempt write, before", &mut w0));
    println!("{}", summary("attempt write, during", &mut w1));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! Several servers on one PostgreSQL database: a change made through one replica is enforced by
//! the others' next check, learnt from PostgreSQL's notifications rather than a read per check;
//! while a replica's change listener is gone (killed, PostgreSQL restarting) its checks read
//! through or answer 503, never a stale answer; and the pool and connect timeout are the
//! operator's to set.

use crate::faults::{eventually_within, master_key, metric, PrivatePg};
use crate::helpers::*;
use deadbolt::service::By;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "replicas.example.com";

/// Two servers on the database at `url`, an application with a signing key and an SDK key, and
/// the accounts `flip` (unlocked), `p0` (locked) and `u1` (unlocked).
struct Pair {
    a: TestApp,
    b: TestApp,
    key: String,
    sdk: String,
}

async fn pair(url: String, adjust: impl Fn(&mut deadbolt::Config) + Copy) -> Pair {
    let a = TestApp::spawn_on(
        url.clone(),
        tempfile::tempdir().unwrap(),
        master_key(),
        adjust,
    )
    .await;
    let b = TestApp::spawn_on(url, tempfile::tempdir().unwrap(), master_key(), adjust).await;
    let app = a.app(DOMAIN).await;
    let key = a.key(&app).await;
    let (_, sdk) = a.service.create_sdk_key(&app.company_id).await.unwrap();
    for name in ["flip", "p0", "u1"] {
        a.service
            .enroll(&By::CLI, &app.id, name, None)
            .await
            .unwrap();
    }
    a.service.lock(&By::CLI, &app.id, "p0").await.unwrap();
    let p = Pair { a, b, key, sdk };
    p.listening().await;
    p
}

impl Pair {
    /// Waits until both replicas' change listeners are connected and trusted.
    async fn listening(&self) {
        eventually_within(Duration::from_secs(15), || async {
            metric(&self.a, "deadbolt_store_listener_up").await == 1
                && metric(&self.b, "deadbolt_store_listener_up").await == 1
        })
        .await;
    }

    async fn set(&self, through: &TestApp, account: &str, lock: bool) -> u16 {
        through
            .sdk(
                Method::POST,
                if lock { "lock" } else { "unlock" },
                &self.sdk,
                Some(json!({"domain": DOMAIN, "userAccountId": account})),
            )
            .await
            .0
    }

    async fn check(&self, t: &TestApp, account: &str) -> (u16, Value) {
        t.check_raw(Some(&t.token(DOMAIN, &self.key, account)), "{}")
            .await
    }

    async fn position_reads(&self) -> (i64, i64) {
        (
            metric(&self.a, "deadbolt_store_position_reads_total").await,
            metric(&self.b, "deadbolt_store_position_reads_total").await,
        )
    }

    /// Changes through either replica that read `change_listeners` (the announcements late).
    async fn listener_table_reads(&self) -> i64 {
        metric(&self.a, "deadbolt_store_listener_table_reads_total").await
            + metric(&self.b, "deadbolt_store_listener_table_reads_total").await
    }

    /// Round `i` of the flips: lock through A, check through B; unlock through B, check through
    /// A; lock through B, check through A; unlock through A, check through B. The very next
    /// check, on the other replica and then on the writer, must see the change.
    async fn flip(&self, i: usize) {
        let lock = i.is_multiple_of(2);
        let (writer, reader) = if matches!(i % 4, 0 | 3) {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        assert_eq!(self.set(writer, "flip", lock).await, 200, "round {i}");
        assert_eq!(
            self.check(reader, "flip").await,
            (200, json!({"locked": lock})),
            "round {i}: the other replica's next check"
        );
        assert_eq!(
            self.check(writer, "flip").await,
            (200, json!({"locked": lock})),
            "round {i}: the writer's own next check"
        );
    }

    async fn stop(self) {
        self.b.stop().await;
        self.a.stop().await;
    }
}

/// A connection to the database at `url`, as an operator's psql.
async fn psql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn fresh_pg() -> Option<String> {
    let admin = deadbolt_store::testing::pg_admin_url()?;
    Some(deadbolt_store::testing::fresh_pg_url(&admin).await.unwrap())
}

/// A hundred flips of one account's lock through alternating replicas: every next check on
/// either replica is right, and neither read the change log's position from PostgreSQL to
/// know it (the notifications told them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_flipped_through_alternating_replicas_is_enforced_by_the_next_check() {
    let Some(url) = fresh_pg().await else { return };
    let p = pair(url, |_| {}).await;
    for t in [&p.a, &p.b] {
        assert_eq!(p.check(t, "flip").await, (200, json!({"locked": false})));
    }
    let reads = p.position_reads().await;
    let listener_reads = p.listener_table_reads().await;
    for i in 0..100 {
        p.flip(i).await;
    }
    assert_eq!(
        p.position_reads().await,
        reads,
        "the position came from the notifications, not a read per check"
    );
    // Each of the 100 changes learned from the listeners' announcements that both replicas
    // had applied it; on a busy machine a few may read change_listeners instead.
    let listener_reads = p.listener_table_reads().await - listener_reads;
    assert!(
        listener_reads < 50,
        "{listener_reads} of 100 changes read change_listeners"
    );
    p.stop().await;
}

/// The listener connections killed (`pg_terminate_backend`) while locks flip: no answer is
/// stale, checks read the position through while a listener is gone, and each replica is back
/// to answering without a read by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_gives_no_stale_answer_and_comes_back() {
    let Some(url) = fresh_pg().await else { return };
    let p = pair(url.clone(), |_| {}).await;
    for i in 0..60 {
        if i % 20 == 10 {
            assert_eq!(
                deadbolt_store::testing::end_change_listeners(&url).await,
                2,
                "one listener per replica"
            );
            // The flip right after lands while the listeners are (most likely) reconnecting:
            // the answers must be right either way.
        }
        p.flip(i).await;
    }

    // Caught in the gap: a killed listener is not trusted, and checks read the position.
    assert_eq!(deadbolt_store::testing::end_change_listeners(&url).await, 2);
    eventually(|| async { metric(&p.a, "deadbolt_store_listener_up").await == 0 }).await;
    let (before, _) = p.position_reads().await;
    p.flip(60).await;
    let (after, _) = p.position_reads().await;
    assert!(after > before, "checks read through while not listening");

    // Back by itself: trusted again, and checks stop reading the position.
    p.listening().await;
    let reads = p.position_reads().await;
    for i in 61..81 {
        p.flip(i).await;
    }
    assert_eq!(p.position_reads().await, reads, "no read per check again");
    p.stop().await;
}

/// PostgreSQL stopped and restarted (cleanly, then killed) under load, with the replicas left
/// running: during the outage checks answer 503 and never unlocked for a locked account;
/// afterwards both replicas answer right within seconds, their listeners are back, and a
/// change through one is enforced by the other's next check without a read per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_with_replicas_running() {
    let Some(pg) = PrivatePg::start() else { return };
    let p = Arc::new(pair(pg.url(), |c| c.store_timeout = Duration::from_secs(1)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4usize)
        .map(|n| {
            let (p, stop) = (p.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused, mut wrong) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = if n.is_multiple_of(2) { &p.a } else { &p.b };
                    let (account, locked) = if n < 2 { ("p0", true) } else { ("u1", false) };
                    match p.check(t, account).await {
                        (200, body) if body == json!({"locked": locked}) => ok += 1,
                        (503, body) if body.get("locked").is_none() => refused += 1,
                        other => wrong.push(format!("{account}: {other:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (ok, refused, wrong)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (round, mode) in ["fast", "immediate"].into_iter().enumerate() {
        pg.stop(mode);
        for t in [&p.a, &p.b] {
            eventually_within(Duration::from_secs(10), || async {
                let got = p.check(t, "p0").await;
                assert!(
                    got == (200, json!({"locked": true})) || got.0 == 503,
                    "{mode}: a locked account answered {got:?}"
                );
                got.0 == 503
            })
            .await;
            assert_eq!(metric(t, "deadbolt_store_listener_up").await, 0, "{mode}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        pg.pg_ctl_start();
        let started = Instant::now();
        for t in [&p.a, &p.b] {
            eventually_within(Duration::from_secs(20), || async {
                p.check(t, "p0").await == (200, json!({"locked": true}))
            })
            .await;
        }
        p.listening().await;
        eprintln!(
            "PostgreSQL {mode} stop and start: both replicas answer and listen again {:?} after the start",
            started.elapsed()
        );
        let reads = p.position_reads().await;
        for i in 0..8 {
            p.flip(round * 8 + i).await;
        }
        assert_eq!(
            p.position_reads().await,
            reads,
            "{mode}: the caches are trusted again"
        );
    }

    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    for task in load {
        let (o, r, wrong) = task.await.unwrap();
        assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
        ok += o;
        refused += r;
    }
    eprintln!("under load: {ok} checks answered right, {refused} answered 503, none wrong");
    assert!(ok > 0 && refused > 0, "the load met the outages");
    Arc::try_unwrap(p).ok().unwrap().stop().await;
}

/// `pg_pool_size` caps the server's connections to PostgreSQL, however many requests wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_opens_at_most_pg_pool_size_connections() {
    let Some(url) = fresh_pg().await else { return };
    let t = TestApp::spawn_on(
        url.clone(),
        tempfile::tempdir().unwrap(),
        master_key(),
        |c| {
            c.pg_pool_size = 2;
        },
    )
    .await;
    let app = t.app(DOMAIN).await;
    let key = t.key(&app).await;
    for i in 0..40 {
        t.service
            .enroll(&By::CLI, &app.id, &format!("n{i}"), None)
            .await
            .unwrap();
    }
    let t = Arc::new(t);
    // Forty checks at once, each of an account not cached yet: each wants a connection.
    let checks: Vec<_> = (0..40)
        .map(|i| {
            let (t, key) = (t.clone(), key.clone());
            tokio::spawn(async move {
                t.check_raw(Some(&t.token(DOMAIN, &key, &format!("n{i}"))), "{}")
                    .await
            })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.unwrap(), (200, json!({"locked": false})));
    }
    let open = psql(&url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name <> 'deadbolt-listen' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(
        (1..=2).contains(&open),
        "{open} pooled connections with a pool of 2"
    );
    Arc::try_unwrap(t).ok().unwrap().stop().await;
}

/// `--pg-connect-timeout` (and `DEADBOLT_PG_CONNECT_TIMEOUT`): a "PostgreSQL" that accepts
/// connections and never answers makes `deadbolt serve` give up after that long (the default
/// is 5 s), with an error; `--pg-pool-size 0` is refused.
#[test]
fn serve_takes_the_pool_size_and_connect_timeout() {
    // Connections to it complete in the kernel's backlog and then hear nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db = format!(
        "postgres://deadbolt@127.0.0.1:{}/deadbolt",
        silent.local_addr().unwrap().port()
    );
    let run = |flags: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_deadbolt"));
        cmd.args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .env("DEADBOLT_MASTER_KEY", master_key().value.unwrap())
            .env_remove("DEADBOLT_PG_CONNECT_TIMEOUT")
            .env_remove("DEADBOLT_PG_POOL_SIZE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(v) = env {
            cmd.env("DEADBOLT_PG_CONNECT_TIMEOUT", v);
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, took, stderr) = run(&["--pg-connect-timeout", "300ms"], None);
    assert!(!ok, "{stderr}");
    assert!(took < Duration::from_secs(4), "gave up after {took:?}");
    let (ok, took, stderr) = run(&[], Some("300ms"));
    assert!(!ok, "{stderr}");
    assert!(took < Duration::from_secs(4), "gave up after {took:?}");
    let (ok, _, stderr) = run(&["--pg-pool-size", "0"], None);
    assert!(!ok && stderr.contains("pg-pool-size"), "{stderr}");
}

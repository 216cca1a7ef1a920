//! What only PostgreSQL has: the change listener that keeps the change log's position at hand
//! (and is distrusted while its connection is gone), and several stores starting on one
//! database at once.

use super::*;
use deadbolt_core::AccountState;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::test_support::{by, k, t0};
use crate::tests::app;

/// A fresh database on the test cluster, or `None` (skipped) without one.
async fn fresh() -> Option<String> {
    let admin = testing::pg_admin_url()?;
    Some(testing::fresh_pg_url(&admin).await.unwrap())
}

/// Polls `f` every millisecond until it holds, for at most `limit`.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn without_listener() -> StoreOptions {
    StoreOptions {
        listen: false,
        ..StoreOptions::default()
    }
}

/// Sets an account's state as the SDK's lock and unlock do.
async fn set(store: &Store, app_id: &str, name: &str, state: AccountState) {
    store
        .set_account_state(
            app_id,
            &k(name),
            state,
            None,
            t0(),
            AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
}

/// Locked at even steps, unlocked at odd ones: each step a change.
fn flipped(i: usize) -> AccountState {
    if i.is_multiple_of(2) {
        AccountState::Locked
    } else {
        AccountState::Unlocked
    }
}

/// A blocked sign-in at `t0` on `account` of person `p`, for an alert email.
fn blocked(attempt_id: i64, account: &str) -> AlertEvent {
    AlertEvent {
        attempt_id,
        person_id: "p".into(),
        account_id: account.into(),
        app_id: "app".into(),
        at: t0(),
        account: account.into(),
        reason: "account_locked".into(),
        ip: None,
        device: None,
        location: None,
    }
}

fn at_hand(s: &Store) -> Option<i64> {
    s.version_at_hand().map(|v| v.unwrap())
}

/// Another process's commit reaches this store's position through the notification alone (no
/// read of the position by the store's caller), and this store's own commit is at hand at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_advances_the_position_at_hand() {
    let Some(url) = fresh().await else { return };
    let a = Store::open(&url).await.unwrap();
    let other = Store::open_with(&url, &without_listener()).await.unwrap();
    assert_eq!(other.listening(), None, "no listener was asked for");
    until(Duration::from_secs(5), "the listener trusted", || {
        a.listening() == Some(true)
    })
    .await;
    let start = at_hand(&a).unwrap();
    assert_eq!(start, other.version().await.unwrap());

    let app = app(&other, "listen.example.com").await;
    other
        .enroll(&app.id, "ann", None, t0(), &by())
        .await
        .unwrap();
    let moved = other.version().await.unwrap();
    assert!(moved > start);
    let reads = a.position_reads();
    until(Duration::from_secs(5), "the notification heard", || {
        at_hand(&a) == Some(moved)
    })
    .await;
    assert_eq!(
        a.position_reads(),
        reads,
        "the position came from the listener"
    );

    // Its own write: at hand as soon as the write returns, whatever the listener heard.
    set(&a, &app.id, "ann", AccountState::Locked).await;
    let after = other.version().await.unwrap();
    assert!(after > moved);
    assert_eq!(at_hand(&a), Some(after));
    assert_eq!(a.version().await.unwrap(), after);
    assert_eq!(a.position_reads(), reads);
}

/// The listener's connection killed: the position is not at hand (callers read it) until the
/// listener is back by itself, and a change made meanwhile is not missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_is_distrusted_until_it_reconnects() {
    let Some(url) = fresh().await else { return };
    let a = Store::open(&url).await.unwrap();
    let other = Store::open_with(&url, &without_listener()).await.unwrap();
    let app = app(&other, "listen.example.com").await;
    other
        .enroll(&app.id, "bea", None, t0(), &by())
        .await
        .unwrap();
    until(Duration::from_secs(5), "the listener trusted", || {
        at_hand(&a).is_some()
    })
    .await;
    for round in 0..3u32 {
        assert_eq!(
            testing::end_change_listeners(&url).await,
            1,
            "round {round}"
        );
        // The reconnection waits at least 50 ms: polled every millisecond, the gap is seen.
        until(Duration::from_secs(5), "distrusted", || {
            at_hand(&a).is_none()
        })
        .await;
        assert_eq!(a.listening(), Some(false));
        let reads = a.position_reads();
        let read = a.version().await.unwrap();
        assert_eq!(
            a.position_reads(),
            reads + 1,
            "read through while distrusted"
        );
        assert_eq!(read, other.version().await.unwrap());
        // A change while (probably) disconnected.
        let state = if round.is_multiple_of(2) {
            AccountState::Locked
        } else {
            AccountState::Unlocked
        };
        set(&other, &app.id, "bea", state).await;
        let moved = other.version().await.unwrap();
        until(Duration::from_secs(10), "trusted again, current", || {
            at_hand(&a) == Some(moved)
        })
        .await;
        assert_eq!(a.listening(), Some(true));
    }
}

/// Several servers started at once on a new database: every one opens, and each migration is
/// applied once (they take turns under an advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_started_together_on_a_new_database_migrate_once() {
    let Some(url) = fresh().await else { return };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    let applied = stores[0]
        .engine
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            vec![],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect::<Vec<_>>();
    let names: Vec<String> = migrations::MIGRATIONS
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(applied, names);
    // 0008 starts the change log with one row: applied twice, it would hold two.
    let rows = engine::scalar(
        &stores[0]
            .engine
            .query("SELECT count(*) FROM change_log", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rows, 1);
    // And they all work on it.
    let app = app(&stores[1], "listen.example.com").await;
    for (i, s) in stores.iter().enumerate() {
        s.enroll(&app.id, &format!("s{i}"), None, t0(), &by())
            .await
            .unwrap();
    }
    for i in 0..4 {
        assert!(stores[3]
            .account(&app.id, &k(&format!("s{i}")))
            .await
            .unwrap()
            .is_some());
    }
}

/// A listener that never applies anything (its replica frozen): a write waits for it only a
/// bounded while, is acknowledged all the same and counted as unconfirmed; once the listener
/// has been silent for seconds (its own replica no longer trusts it) it is not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_applies_delays_writes_only_a_bounded_while() {
    let Some(url) = fresh().await else { return };
    let store = Store::open(&url).await.unwrap();
    let app = app(&store, "listen.example.com").await;
    store
        .enroll(&app.id, "dee", None, t0(), &by())
        .await
        .unwrap();
    assert_eq!(store.unconfirmed_writes(), 0);
    // A session that looks like a listener and records that it applied nothing.
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.application_name("deadbolt-listen");
    let (frozen, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    frozen
        .execute(
            "INSERT INTO change_listeners (pid, heard, seen_at) VALUES (pg_backend_pid(), 0, clock_timestamp())",
            &[],
        )
        .await
        .unwrap();
    set(&store, &app.id, "dee", AccountState::Locked).await;
    assert_eq!(
        store.unconfirmed_writes(),
        1,
        "acknowledged after the bound"
    );
    assert_eq!(
        store
            .account(&app.id, &k("dee"))
            .await
            .unwrap()
            .unwrap()
            .state,
        AccountState::Locked
    );
    // Silent for longer than any process trusts its listener: not waited for.
    frozen
        .execute(
            "UPDATE change_listeners SET seen_at = clock_timestamp() - interval '10 seconds' WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    set(&store, &app.id, "dee", AccountState::Unlocked).await;
    assert_eq!(store.unconfirmed_writes(), 1);
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Two replicas, each with its listener: every write through one has been applied by the other
/// by the time it returns (the other's next check would see it). Prints what a write costs
/// without any listener connected and with both waiting to apply it; asserts only the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_applies_another_replicas_commit_before_it_is_acknowledged() {
    let Some(url) = fresh().await else { return };
    let plain = Store::open_with(&url, &without_listener()).await.unwrap();
    let app = app(&plain, "listen.example.com").await;
    plain
        .enroll(&app.id, "cyd", None, t0(), &by())
        .await
        .unwrap();
    let state = |i: usize| {
        if i.is_multiple_of(2) {
            AccountState::Locked
        } else {
            AccountState::Unlocked
        }
    };
    let mut alone = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        set(&plain, &app.id, "cyd", state(i)).await;
        alone.push(started.elapsed());
    }
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    until(Duration::from_secs(5), "both listeners trusted", || {
        at_hand(&a).is_some() && at_hand(&b).is_some()
    })
    .await;
    let mut with_listeners = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        set(&a, &app.id, "cyd", state(i)).await;
        with_listeners.push(started.elapsed());
        let position = at_hand(&a).unwrap();
        assert_eq!(position, plain.version().await.unwrap(), "write {i}");
        assert!(
            at_hand(&b).is_some_and(|p| p >= position),
            "write {i}: acknowledged before the other replica applied it"
        );
    }
    assert_eq!(a.unconfirmed_writes(), 0);
    eprintln!(
        "write p50 {:?} (p99 {:?}) with two replicas' listeners to wait for ({} of 200 read change_listeners); {:?} (p99 {:?}) with no listener connected",
        percentile(&mut with_listeners, 0.5),
        percentile(&mut with_listeners, 0.99),
        a.applied_reads(),
        percentile(&mut alone, 0.5),
        percentile(&mut alone, 0.99),
    );
}

/// Writes learn that every listener applied them from the listeners' announcements, without
/// reading `change_listeners` (most of them: one whose announcements take longer than a few
/// milliseconds on a busy machine reads it); a listener that goes away is forgotten at the next
/// ping, and one that comes is known before any write it must apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_learn_from_announcements_which_listeners_applied_them() {
    let Some(url) = fresh().await else { return };
    let a = Store::open(&url).await.unwrap();
    let app = app(&a, "announce.example.com").await;
    a.enroll(&app.id, "eve", None, t0(), &by()).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    until(Duration::from_secs(5), "both listeners trusted", || {
        a.listening() == Some(true) && b.listening() == Some(true)
    })
    .await;
    assert_eq!(a.listeners_known(), 2, "b announced itself to a");
    let reads = a.applied_reads();
    for i in 0..20 {
        set(&a, &app.id, "eve", flipped(i)).await;
        let position = at_hand(&a).unwrap();
        assert!(
            at_hand(&b).is_some_and(|p| p >= position),
            "write {i}: acknowledged before b applied it"
        );
    }
    assert!(
        a.applied_reads() - reads < 20,
        "every write read change_listeners: the announcements were not used"
    );
    assert_eq!(a.unconfirmed_writes(), 0);
    drop(b);
    until(Duration::from_secs(5), "b forgotten", || {
        a.listeners_known() == 1
    })
    .await;
    let reads = a.applied_reads();
    set(&a, &app.id, "eve", AccountState::Locked).await;
    assert_eq!(a.unconfirmed_writes(), 0);
    assert!(a.applied_reads() - reads <= 1);
}

/// As on SQLite (`changes_tests::own_commits_are_at_hand_and_anothers_are_not`): what this
/// store's own transactions logged is at hand without reading the log, also when several of
/// them commit at once on the pool's connections (recorded in any order); another store's
/// commit leaves a gap, and a catch-up over it is not at hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_commits_are_at_hand_and_anothers_are_not() {
    let Some(url) = fresh().await else { return };
    let store = Arc::new(Store::open(&url).await.unwrap());
    let a = app(&store, "hand.example.com").await;
    let start = store.version().await.unwrap();
    let writes = (0..16).map(|i| {
        let (store, id) = (store.clone(), a.id.clone());
        tokio::spawn(async move {
            store
                .enroll(&id, &format!("Acct{i}"), None, t0(), &by())
                .await
                .unwrap();
        })
    });
    for w in writes.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    set(&store, &a.id, "acct3", AccountState::Locked).await;
    let mine = store.version().await.unwrap();
    let at_hand = store
        .changes_at_hand(start, mine)
        .expect("all this store's own");
    assert!(at_hand.len() >= 17, "sixteen enrolments and a lock");
    assert_eq!(Some(at_hand), store.changes(start, mine).await.unwrap());

    let other = Store::open_with(&url, &without_listener()).await.unwrap();
    crate::changes_tests::anothers_commit_is_not_at_hand(&store, &other, &a.id, start, mine).await;
}

/// Without a listener every check reads the position: the reads of checks that wait at once
/// are shared (two for 64 checks: the first one's, and one begun after all the others asked),
/// and every answer is the position as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_waiting_for_the_position_at_once_share_their_reads() {
    let Some(url) = fresh().await else { return };
    let a = Store::open_with(&url, &without_listener()).await.unwrap();
    let app = app(&a, "shared.example.com").await;
    a.enroll(&app.id, "ann", None, t0(), &by()).await.unwrap();
    let now = a.version().await.unwrap();
    let reads = a.position_reads();
    let answers = futures_util::future::join_all((0..64).map(|_| a.version())).await;
    assert!(
        answers.iter().all(|v| v.as_ref() == Ok(&now)),
        "{answers:?}"
    );
    let made = a.position_reads() - reads;
    assert!(
        (1..=2).contains(&made),
        "64 checks made {made} reads of the position"
    );

    // A check that began the read and went away (its request dropped) leaves no read in
    // flight for ever: the next check reads by itself (else it would wait out its deadline
    // and fail).
    use futures_util::FutureExt;
    assert!(
        a.version().now_or_never().is_none(),
        "the read was under way"
    );
    assert_eq!(a.version().await, Ok(now));
}

/// A shared read begun before a change was acknowledged is never the answer of a check that
/// asked after it: while 16 tasks keep reads in flight without pause, each change made through
/// another store is seen by the next check that asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_read_begun_before_a_change_does_not_answer_a_check_after_it() {
    let Some(url) = fresh().await else { return };
    let a = Arc::new(Store::open_with(&url, &without_listener()).await.unwrap());
    // The writer's own commits are at hand when its writes return (its listener's doing): the
    // position each change reached, known without the shared reads under test.
    let writer = Store::open(&url).await.unwrap();
    until(
        Duration::from_secs(5),
        "the writer's listener trusted",
        || writer.listening() == Some(true),
    )
    .await;
    let app = app(&writer, "fresh.example.com").await;
    writer
        .enroll(&app.id, "ann", None, t0(), &by())
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..16)
        .map(|_| {
            let (a, stop) = (a.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    a.version().await.unwrap();
                    // An answer at hand does not wait: the test's own task gets its turn.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for i in 0..300 {
        set(&writer, &app.id, "ann", flipped(i)).await;
        let committed = at_hand(&writer).expect("the writer's own commit at hand");
        let seen = a.version().await.unwrap();
        assert!(
            seen >= committed,
            "change {i}: position {committed} committed, a check after it was told {seen}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        t.await.unwrap();
    }
    assert!(
        a.position_reads() > 300,
        "the reads were made: {}",
        a.position_reads()
    );
}

/// A due email whose row another transaction holds (the queueing pass adding sign-ins to it)
/// is skipped by a sender's claim, which takes the others at once instead of waiting (and,
/// before, deadlocking with the pass); it is claimed once free. Webhook deliveries likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_skips_the_emails_another_transaction_holds() {
    let Some(url) = fresh().await else { return };
    let s = Store::open_with(&url, &without_listener()).await.unwrap();
    let now = t0();
    let window = chrono::Duration::minutes(10);
    assert!(s
        .queue_alerts(
            (0, 2),
            &[blocked(1, "held"), blocked(2, "free")],
            &[],
            &[1, 2].map(|attempt_id| NewDelivery {
                company_id: "c".into(),
                attempt_id,
                payload: "{}".into(),
            }),
            now,
            window
        )
        .await
        .unwrap());
    let (other, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    other.batch_execute("BEGIN").await.unwrap();
    let held = other
        .execute(
            "SELECT id FROM alert_mails WHERE account_id = 'held' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(held, 1);
    let held = other
        .execute(
            "SELECT id FROM webhook_deliveries WHERE attempt_id = 1 FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(held, 1);

    let lease = now + chrono::Duration::seconds(60);
    let claimed = s.claim_alert_mails(now, lease, 10).await.unwrap();
    let accounts: Vec<&str> = claimed.iter().map(|m| m.account_id.as_str()).collect();
    assert_eq!(accounts, ["free"], "the held email is left for later");
    let claimed = s.claim_deliveries(now, lease, 10).await.unwrap();
    let attempts: Vec<i64> = claimed.iter().map(|d| d.attempt_id).collect();
    assert_eq!(attempts, [2], "the held delivery is left for later");

    other.batch_execute("COMMIT").await.unwrap();
    let claimed = s.claim_alert_mails(now, lease, 10).await.unwrap();
    let accounts: Vec<&str> = claimed.iter().map(|m| m.account_id.as_str()).collect();
    assert_eq!(
        accounts,
        ["held"],
        "claimed once free, and the other not twice"
    );
    let claimed = s.claim_deliveries(now, lease, 10).await.unwrap();
    let attempts: Vec<i64> = claimed.iter().map(|d| d.attempt_id).collect();
    assert_eq!(attempts, [1]);
}

/// Emails the relay took are recorded as sent even when the queueing pass holds the cursor row
/// longer than a request's deadline (a flood's pass): else they would go out again once their
/// claim ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_emails_are_recorded_behind_a_long_queueing_pass() {
    let Some(url) = fresh().await else { return };
    let s = Store::open_with(&url, &without_listener()).await.unwrap();
    s.set_timeout(Duration::from_millis(200));
    let now = t0();
    let window = chrono::Duration::minutes(10);
    assert!(s
        .queue_alerts((0, 1), &[blocked(1, "a")], &[], &[], now, window)
        .await
        .unwrap());
    let mails = s
        .claim_alert_mails(now, now + chrono::Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);

    let (pass, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    pass.batch_execute(
        "BEGIN; UPDATE alert_cursor SET last_attempt_id = last_attempt_id WHERE id = 1",
    )
    .await
    .unwrap();
    let release = tokio::spawn(async move {
        // Five of the store's deadlines.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pass.batch_execute("COMMIT").await.unwrap();
    });
    s.alert_mail_sent(&mails[0].id, 1, now, window)
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(s.unsent_alert_mails().await.unwrap(), 0);
}

//! The check cache forgets only what changed: a change to one account leaves the others cached,
//! and the next check of the changed account sees the change, whichever process made it.

use crate::helpers::*;
use deadbolt::service::By;
use deadbolt::Service;
use deadbolt_core::{AccountNames, FakeClock};
use std::sync::Arc;

/// The same store, opened as another process would (the CLI, another replica).
async fn elsewhere(t: &TestApp) -> Service {
    Service::open(&t.db_url, &t.key, Arc::new(FakeClock::new(t0())))
        .await
        .unwrap()
}

fn cached(t: &TestApp, app_id: &str, name: &str) -> bool {
    t.checks
        .upgrade()
        .expect("the server runs")
        .cache
        .holds(app_id, AccountNames::CaseInsensitive.key(name).as_str())
}

/// Changes by another process to one account, to a person and to an application evict what
/// they name and nothing else; the next checks see them.
async fn evicts_exactly_what_changed(t: TestApp) {
    let app = t.app("evict.example.com").await;
    let key = t.key(&app).await;
    t.service
        .create_person("pat@example.com", None, None)
        .await
        .unwrap();
    for (name, person) in [
        ("alice", None),
        ("bob", None),
        ("pat1", Some("pat@example.com")),
        ("pat2", Some("pat@example.com")),
    ] {
        t.service
            .enroll(&By::CLI, &app.id, name, person)
            .await
            .unwrap();
    }
    let other = elsewhere(&t).await;
    for name in ["alice", "bob", "pat1", "pat2"] {
        assert!(!t.locked("evict.example.com", &key, name).await);
        assert!(cached(&t, &app.id, name), "{name} is cached after a check");
    }

    // One account, locked by another process.
    other.lock(&By::CLI, &app.id, "Alice").await.unwrap();
    assert!(t.locked("evict.example.com", &key, "alice").await);
    for name in ["bob", "pat1", "pat2"] {
        assert!(cached(&t, &app.id, name), "{name} stays cached");
    }
    assert!(!t.locked("evict.example.com", &key, "bob").await);

    // A person's master lock: all of that person's accounts, only those.
    other
        .set_master_lock(&By::CLI, "pat@example.com", true)
        .await
        .unwrap();
    assert!(t.locked("evict.example.com", &key, "pat1").await);
    assert!(cached(&t, &app.id, "bob"), "another person's account stays");
    assert!(t.locked("evict.example.com", &key, "pat2").await);
    other
        .set_master_lock(&By::CLI, "pat@example.com", false)
        .await
        .unwrap();
    assert!(!t.locked("evict.example.com", &key, "pat1").await);
    assert!(!t.locked("evict.example.com", &key, "pat2").await);

    // An application's change (a key revoked) evicts the application: the token of the
    // revoked key is refused at once.
    let (key_id, _) = {
        let keys = t.store.signing_keys(&app.id).await.unwrap();
        (keys[0].id.clone(), ())
    };
    other.revoke_signing_key(&key_id).await.unwrap();
    let refused = t
        .check_raw(Some(&t.token("evict.example.com", &key, "bob")), "{}")
        .await;
    assert_refused(&refused, 401);
    t.stop().await;
}

#[tokio::test]
async fn a_change_evicts_exactly_what_it_changed_sqlite() {
    evicts_exactly_what_changed(TestApp::spawn().await).await;
}

#[tokio::test]
async fn a_change_evicts_exactly_what_it_changed_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        evicts_exactly_what_changed(t).await;
    }
}

fn log_reads(t: &TestApp) -> i64 {
    t.checks
        .upgrade()
        .expect("the server runs")
        .metrics
        .log_reads()
}

/// A change made through this server (the SDK, the portal, a relock after one sign-in) is
/// applied to its cache without reading the change log back, and without making other checks
/// wait; a change by another process is read from the log. Either way the next check sees it.
/// Both engines.
#[tokio::test]
async fn own_changes_apply_without_a_log_read_and_others_with_one() {
    own_changes_apply_without_a_log_read(TestApp::spawn().await).await;
}

#[tokio::test]
async fn own_changes_apply_without_a_log_read_and_others_with_one_on_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        own_changes_apply_without_a_log_read(t).await;
    }
}

async fn own_changes_apply_without_a_log_read(t: TestApp) {
    let app = t.app("own.example.com").await;
    let key = t.key(&app).await;
    for name in ["erin", "frank", "gus"] {
        t.service
            .enroll(&By::CLI, &app.id, name, None)
            .await
            .unwrap();
        assert!(!t.locked("own.example.com", &key, name).await);
    }
    let reads = log_reads(&t);
    t.service.lock(&By::CLI, &app.id, "Erin").await.unwrap();
    t.service
        .unlock_once(&By::CLI, &app.id, "gus")
        .await
        .unwrap();
    assert!(t.locked("own.example.com", &key, "erin").await);
    assert!(cached(&t, &app.id, "frank"), "frank stays cached");
    // Unlocked for one sign-in: this one; the relock is this server's own change too.
    assert!(!t.locked("own.example.com", &key, "gus").await);
    assert!(t.locked("own.example.com", &key, "gus").await);
    assert!(!t.locked("own.example.com", &key, "frank").await);
    assert_eq!(
        log_reads(&t),
        reads,
        "no log read for this server's own changes"
    );

    elsewhere(&t)
        .await
        .unlock(&By::CLI, &app.id, "erin", None)
        .await
        .unwrap();
    assert!(!t.locked("own.example.com", &key, "erin").await);
    assert_eq!(log_reads(&t), reads + 1, "another process's change is read");
    assert!(cached(&t, &app.id, "frank"));
    t.stop().await;
}

/// On PostgreSQL the listener may hear a commit's notification before the commit's answer
/// reaches the process that made it. Checks running all along, meanwhile, must still find the
/// server's own changes at hand instead of reading the log (and making each other wait on that
/// read): many changes with checks in flight, no log read, every check right.
#[tokio::test]
async fn own_changes_under_checks_in_flight_need_no_log_read_on_postgres() {
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    let app = t.app("inflight.example.com").await;
    let key = t.key(&app).await;
    for i in 0..40 {
        t.service
            .enroll(&By::CLI, &app.id, &format!("changed{i}"), None)
            .await
            .unwrap();
    }
    t.service
        .enroll(&By::CLI, &app.id, "steady", None)
        .await
        .unwrap();
    assert!(!t.locked("inflight.example.com", &key, "steady").await);
    let reads = log_reads(&t);
    let done = std::sync::atomic::AtomicBool::new(false);
    let checking = async {
        let mut checks = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let four = (0..4).map(|_| t.locked("inflight.example.com", &key, "steady"));
            for locked in futures_util::future::join_all(four).await {
                assert!(!locked, "steady was never locked");
            }
            checks += 4;
        }
        checks
    };
    let changing = async {
        for round in 0..3 {
            for i in 0..40 {
                let name = format!("changed{i}");
                if round % 2 == 0 {
                    t.service.lock(&By::CLI, &app.id, &name).await.unwrap();
                } else {
                    t.service
                        .unlock(&By::CLI, &app.id, &name, None)
                        .await
                        .unwrap();
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (checks, ()) = tokio::join!(checking, changing);
    assert!(checks > 0);
    assert_eq!(
        log_reads(&t),
        reads,
        "120 own changes with {checks} checks in flight: no log read"
    );
    for i in [0, 17, 39] {
        assert!(
            t.locked("inflight.example.com", &key, &format!("changed{i}"))
                .await,
            "locked in the last round"
        );
    }
    t.stop().await;
}

/// The CLI is another process: its change is enforced by the next check, and other cached
/// accounts stay cached.
#[tokio::test]
async fn a_cli_change_evicts_only_its_account() {
    let t = TestApp::spawn().await;
    let app = t.app("cli-evict.example.com").await;
    let key = t.key(&app).await;
    for name in ["carol", "dave"] {
        t.service
            .enroll(&By::CLI, &app.id, name, None)
            .await
            .unwrap();
        assert!(!t.locked("cli-evict.example.com", &key, name).await);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args([
            "--db",
            &t.db_url,
            "account",
            "lock",
            "--app",
            &app.id,
            "--account",
            "CAROL",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cached(&t, &app.id, "dave"));
    assert!(t.locked("cli-evict.example.com", &key, "carol").await);
    assert!(!t.locked("cli-evict.example.com", &key, "dave").await);
    t.stop().await;
}

/// SQL typed by hand into sqlite3 is caught by the same triggers: the next check sees it (the
/// change signal does not move, so within the second the server trusts its last reading).
#[tokio::test]
async fn a_change_made_by_hand_in_sqlite_is_seen() {
    let t = TestApp::spawn().await;
    let app = t.app("hand.example.com").await;
    let key = t.key(&app).await;
    for name in ["erin", "frank"] {
        t.service
            .enroll(&By::CLI, &app.id, name, None)
            .await
            .unwrap();
        assert!(!t.locked("hand.example.com", &key, name).await);
    }
    let path = t.db_url.trim_start_matches("sqlite://").to_string();
    tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute(
            "UPDATE accounts SET state = 'locked' WHERE account = 'erin'",
            [],
        )
        .unwrap();
    })
    .await
    .unwrap();
    eventually(|| async { t.locked("hand.example.com", &key, "erin").await }).await;
    assert!(!t.locked("hand.example.com", &key, "frank").await);
    assert!(cached(&t, &app.id, "frank"));
    t.stop().await;
}

/// Two servers on one PostgreSQL database: a lock flipped through one is enforced by the
/// other's next check, each way; SQL typed into psql as soon as its notification arrives (psql
/// does not wait for the servers to apply it, as a server's own write does).
#[tokio::test]
async fn two_replicas_on_postgres_see_each_others_changes() {
    let Some(a) = TestApp::spawn_pg().await else {
        return;
    };
    let b = TestApp::spawn_on(
        a.db_url.clone(),
        tempfile::tempdir().unwrap(),
        a.key.clone(),
        |_| {},
    )
    .await;
    let app = a.app("replicas.example.com").await;
    let key = a.key(&app).await;
    a.service
        .enroll(&By::CLI, &app.id, "gina", None)
        .await
        .unwrap();
    a.service
        .enroll(&By::CLI, &app.id, "hank", None)
        .await
        .unwrap();
    for t in [&a, &b] {
        assert!(!t.locked("replicas.example.com", &key, "gina").await);
        assert!(!t.locked("replicas.example.com", &key, "hank").await);
    }
    for round in 0..6 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let lock = round % 4 < 2;
        if lock {
            writer
                .service
                .lock(&By::CLI, &app.id, "gina")
                .await
                .unwrap();
        } else {
            writer
                .service
                .unlock(&By::CLI, &app.id, "gina", None)
                .await
                .unwrap();
        }
        assert_eq!(
            reader.locked("replicas.example.com", &key, "gina").await,
            lock
        );
        assert_eq!(
            writer.locked("replicas.example.com", &key, "gina").await,
            lock
        );
        assert!(
            cached(reader, &app.id, "hank"),
            "round {round}: hank stays cached"
        );
    }
    let (client, conn) = tokio_postgres::connect(&a.db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE accounts SET state = 'locked' WHERE account = 'hank'",
            &[],
        )
        .await
        .unwrap();
    for t in [&a, &b] {
        eventually(|| async { t.locked("replicas.example.com", &key, "hank").await }).await;
    }
    b.stop().await;
    a.stop().await;
}

/// A server that fell behind the pruned part of the change log cannot know what changed: it
/// forgets everything, once, and answers right.
#[tokio::test]
async fn a_server_behind_the_pruned_log_forgets_everything_once() {
    let t = TestApp::spawn().await;
    let app = t.app("pruned.example.com").await;
    let key = t.key(&app).await;
    for name in ["ivan", "judy"] {
        t.service
            .enroll(&By::CLI, &app.id, name, None)
            .await
            .unwrap();
        assert!(!t.locked("pruned.example.com", &key, name).await);
    }
    let other = elsewhere(&t).await;
    other.lock(&By::CLI, &app.id, "ivan").await.unwrap();
    other.enroll(&By::CLI, &app.id, "kim", None).await.unwrap();
    other.prune_changes(1).await.unwrap();
    assert!(t.locked("pruned.example.com", &key, "ivan").await);
    assert!(
        !cached(&t, &app.id, "judy"),
        "what the pruned rows said is unknown: nothing cached survives"
    );
    assert!(!t.locked("pruned.example.com", &key, "judy").await);
    assert!(cached(&t, &app.id, "judy"), "and the cache fills again");
    t.stop().await;
}

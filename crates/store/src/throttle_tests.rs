//! The throttle's counts, run on SQLite and on PostgreSQL: kept, forgotten, changed atomically
//! by several stores on one database, and pruned.

use super::*;
use chrono::Duration;

use crate::test_support::t0;

fn key(kind: &'static str, hash: &str) -> ThrottleKey {
    ThrottleKey {
        kind,
        hash: hash.into(),
    }
}

fn counted(failures: u32, at: DateTime<Utc>, wait: Duration) -> ThrottleEntry {
    ThrottleEntry {
        failures,
        last: at,
        open_at: at + wait,
        forget_at: at + wait + Duration::minutes(15),
    }
}

async fn read(store: &Store, k: &ThrottleKey, now: DateTime<Utc>) -> Option<ThrottleEntry> {
    store
        .change_throttle(std::slice::from_ref(k), now, |e| e[0])
        .await
        .unwrap()
}

async fn rows(store: &Store) -> i64 {
    crate::engine::scalar(
        &store
            .engine
            .query("SELECT count(*) FROM throttle_entries", vec![])
            .await
            .unwrap(),
    )
    .unwrap()
}

both_engines!(throttle_entries_are_kept_and_forgotten, |store| {
    let (a, b) = (key("login", "h-a"), key("login-client", "h-b"));
    // Reading keys that have no entry leaves no row behind.
    assert_eq!(read(store, &a, t0()).await, None);
    assert_eq!(rows(store).await, 0);
    let set = counted(4, t0(), Duration::seconds(1));
    let seen = store
        .change_throttle(&[a.clone(), b.clone()], t0(), move |e| {
            let seen = e.to_vec();
            e[0] = Some(set);
            e[1] = Some(counted(1, t0(), Duration::zero()));
            seen
        })
        .await
        .unwrap();
    assert_eq!(seen, [None, None]);
    assert_eq!(read(store, &a, t0()).await, Some(set));
    // The same hash of another kind is another key.
    assert_eq!(read(store, &key("mail", "h-a"), t0()).await, None);
    // A look sees the same, and writes nothing.
    let none = key("login", "h-none");
    assert_eq!(
        store
            .throttle_entries(&[none, a.clone()], t0())
            .await
            .unwrap(),
        [None, Some(set)]
    );
    assert_eq!(
        store
            .throttle_entries(std::slice::from_ref(&a), set.forget_at)
            .await
            .unwrap(),
        [None]
    );
    assert_eq!(rows(store).await, 2);
    // `None` deletes.
    store
        .change_throttle(std::slice::from_ref(&b), t0(), |e| e[0] = None)
        .await
        .unwrap();
    assert_eq!(read(store, &b, t0()).await, None);
    assert_eq!(rows(store).await, 1);
    // From forget_at on, an entry reads as none (and a change starting from it, from nothing).
    assert_eq!(
        read(store, &a, set.forget_at - Duration::milliseconds(1)).await,
        Some(set)
    );
    assert_eq!(read(store, &a, set.forget_at).await, None);
});

/// `count` entries alike.
async fn add(store: &Store, name: &str, count: usize, now: DateTime<Utc>, e: ThrottleEntry) {
    let keys: Vec<ThrottleKey> = (0..count)
        .map(|i| key("login", &format!("{name}{i}")))
        .collect();
    store
        .change_throttle(&keys, now, move |all| all.fill(Some(e)))
        .await
        .unwrap();
}

both_engines!(throttle_entries_are_pruned_down_to_a_bound, |store| {
    let now = t0() + Duration::hours(1);
    // Forgotten, open (counted, making no one wait), and waiting, by increasing end of wait.
    add(store, "f", 5, now, counted(9, t0(), Duration::seconds(60))).await;
    add(store, "o", 5, now, counted(2, now, Duration::zero())).await;
    for s in 1..=5 {
        let e = counted(5, now, Duration::seconds(s));
        add(store, &format!("w{s}"), 1, now, e).await;
    }
    assert_eq!(rows(store).await, 15);
    // Forgotten entries go in any case; open ones are kept while under the bound.
    assert_eq!(store.prune_throttle(now, 100).await.unwrap(), 5);
    assert_eq!(rows(store).await, 10);
    // Over it, open ones go first, then the waits that end first.
    assert_eq!(store.prune_throttle(now, 8).await.unwrap(), 5);
    assert_eq!(rows(store).await, 5);
    assert_eq!(store.prune_throttle(now, 2).await.unwrap(), 3);
    let left: Vec<i64> = store
        .engine
        .query(
            "SELECT open_at FROM throttle_entries ORDER BY open_at",
            vec![],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.int(0).unwrap())
        .collect();
    let end = |s: i64| (now + Duration::seconds(s)).timestamp_millis();
    assert_eq!(left, [end(4), end(5)]);
});

/// Tries through two stores on one database (two replicas), all at once: every one is counted,
/// and of a limit of four, exactly four get in. Half list the keys the other way round: rows
/// are locked in one order, so that no two changes deadlock.
async fn tries_at_once_through_two_stores_are_all_counted(a: Store, b: Store) {
    let keys = [key("login", "h-ann"), key("login-client", "h-10.0.0.1")];
    let stores = [std::sync::Arc::new(a), std::sync::Arc::new(b)];
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = stores[i % 2].clone();
        let mut keys = keys.to_vec();
        if i % 4 < 2 {
            keys.reverse();
        }
        tries.spawn(async move {
            store
                .change_throttle(&keys, t0(), move |e| {
                    let let_in = e.iter().flatten().all(|e| e.failures < 4);
                    let held = if let_in {
                        Duration::zero()
                    } else {
                        Duration::seconds(9)
                    };
                    for e in e.iter_mut() {
                        let failures = e.map_or(0, |e| e.failures) + 1;
                        *e = Some(counted(failures, t0(), held));
                    }
                    let_in
                })
                .await
                .unwrap()
        });
    }
    let let_in = tries.join_all().await;
    assert_eq!(let_in.iter().filter(|x| **x).count(), 4);
    for k in &keys {
        for store in &stores {
            assert_eq!(read(store, k, t0()).await.unwrap().failures, 40);
        }
    }
}

mod tries_at_once {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (a, dir) = crate::testing::fresh_sqlite().await;
        let url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
        let b = Store::open(&url).await.unwrap();
        // Two stores on one file are two processes' worth of connections.
        tries_at_once_through_two_stores_are_all_counted(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(admin) = crate::testing::pg_admin_url() else {
            return;
        };
        let url = crate::testing::fresh_pg_url(&admin).await.unwrap();
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        tries_at_once_through_two_stores_are_all_counted(a, b).await;
    }
}

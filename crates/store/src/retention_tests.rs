//! Retention and the attempts feed: whole runs past the horizon go, newer attempts and their
//! order stay; a feed paged by id never repeats nor skips.

use chrono::Duration;

use crate::admin_tests::{app, attempt};
use crate::test_support::t0;
use crate::AttemptBatch;

both_engines!(
    runs_past_the_horizon_go_whole_and_newer_ones_stay_in_order,
    |store| {
        let c = store.create_company("co", t0()).await.unwrap();
        let a = app(store, &c.id, "ret-a.example.com").await;
        let b = app(store, &c.id, "ret-b.example.com").await;
        // Ten batches, one a second (attempts at t0 + 0..10 s), each with one attempt of a and b.
        for i in 0..10 {
            store
                .record_attempts(&AttemptBatch::new(vec![
                    attempt(&a.id, i),
                    attempt(&b.id, i),
                ]))
                .await
                .unwrap();
        }
        assert_eq!(store.attempt_count().await.unwrap(), 20);
        let horizon = t0() + Duration::seconds(4);
        // In batches of three runs at a time, until nothing is left to remove.
        let mut removed = 0;
        loop {
            let n = store.prune_attempts(horizon, 3).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 3);
            removed += n;
        }
        assert_eq!(removed, 8, "the attempts at 0..3 s of both applications");
        for app in [&a, &b] {
            let left = store.attempts_after(&app.id, 0, 100).await.unwrap();
            let at: Vec<i64> = left.iter().map(|x| (x.at - t0()).num_seconds()).collect();
            assert_eq!(at, vec![4, 5, 6, 7, 8, 9], "newer ones, in order");
        }
        assert_eq!(store.prune_attempts(horizon, 1000).await.unwrap(), 0);
    }
);

both_engines!(the_feed_pages_by_id_without_repeats_or_gaps, |store| {
    let c = store.create_company("co", t0()).await.unwrap();
    let a = app(store, &c.id, "feed-a.example.com").await;
    let b = app(store, &c.id, "feed-b.example.com").await;
    for i in 0..25 {
        // Batches of several attempts of a, with b's in between.
        store
            .record_attempts(&AttemptBatch::new(vec![
                attempt(&a.id, 2 * i),
                attempt(&b.id, i),
                attempt(&a.id, 2 * i + 1),
            ]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.attempts_after(&a.id, after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        assert!(page.iter().all(|x| x.app_id == a.id));
        after = page.last().unwrap().id;
        seen.extend(page);
    }
    let ids: Vec<i64> = seen.iter().map(|x| x.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "ascending, no repeats");
    assert_eq!(ids.len(), 50, "none missing");
    let at: Vec<i64> = seen.iter().map(|x| (x.at - t0()).num_seconds()).collect();
    assert_eq!(at, (0..50).collect::<Vec<_>>());
    // A page asked after the last id is empty; after a middle id, the rest.
    assert!(store
        .attempts_after(&a.id, after, 7)
        .await
        .unwrap()
        .is_empty());
    let rest = store.attempts_after(&a.id, ids[20], 100).await.unwrap();
    assert_eq!(rest.len(), 29);
});

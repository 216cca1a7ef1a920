//! The change log: each change names what it changed, written by the database's triggers (so
//! also for SQL typed by hand), and pruned without losing what a lagging reader needs to know.

use super::*;
use deadbolt_core::{AccountState, UnenrolledPolicy};

use crate::test_support::{by, k, t0};

async fn app(store: &Store, issuer: &str) -> Application {
    let c = store.create_company("co", t0()).await.unwrap();
    store
        .create_application(
            &NewApplication {
                company_id: c.id,
                name: issuer.into(),
                issuer: issuer.into(),
                unenrolled: UnenrolledPolicy::Allow,
                account_names: Default::default(),
                default_state: AccountState::Unlocked,
            },
            t0(),
        )
        .await
        .unwrap()
}

fn account(app_id: &str, key: &str) -> (Option<String>, Option<String>, Option<String>) {
    (Some(app_id.into()), Some(key.into()), None)
}

/// What was logged since `after`, as (application, account key, person) triples, without repeats.
async fn logged_since(
    store: &Store,
    after: i64,
) -> Vec<(Option<String>, Option<String>, Option<String>)> {
    let until = store.version().await.unwrap();
    let mut out: Vec<_> = store
        .changes(after, until)
        .await
        .unwrap()
        .expect("nothing pruned")
        .into_iter()
        .map(|c| (c.app_id, c.account_key, c.person_id))
        .collect();
    out.dedup();
    out
}

both_engines!(each_change_names_what_it_changed, |store| {
    let a = app(store, "log.example.com").await;
    let p = store
        .create_person(
            &NewPerson {
                email: "p@example.com".into(),
                password_hash: None,
                first_name: None,
                last_name: None,
                phone: None,
                time_zone: chrono_tz::Tz::UTC,
            },
            t0(),
        )
        .await
        .unwrap();

    let v = store.version().await.unwrap();
    let (acc, _) = store
        .enroll(&a.id, "Alice", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    assert_eq!(logged_since(store, v).await, vec![account(&a.id, "alice")]);

    let v = store.version().await.unwrap();
    store
        .set_account_state(
            &a.id,
            &k("alice"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
    assert_eq!(logged_since(store, v).await, vec![account(&a.id, "alice")]);

    let v = store.version().await.unwrap();
    store
        .set_master_lock(&p.id, true, t0(), &by())
        .await
        .unwrap();
    assert_eq!(
        logged_since(store, v).await,
        vec![(None, None, Some(p.id.clone()))],
        "a person's change names the person, whose accounts all change"
    );

    let v = store.version().await.unwrap();
    store
        .create_signing_key("key-1", &a.id, "enc", t0())
        .await
        .unwrap();
    assert_eq!(
        logged_since(store, v).await,
        vec![(Some(a.id.clone()), None, None)]
    );

    let v = store.version().await.unwrap();
    store
        .add_schedule(
            &ScheduleOwner::Person(p.id.clone()),
            deadbolt_core::Schedule::new(0x7f, 0, 60).unwrap(),
            t0(),
            &by(),
        )
        .await
        .unwrap();
    store
        .add_schedule(
            &ScheduleOwner::Account {
                person_id: Some(p.id.clone()),
                account_id: acc.id.clone(),
            },
            deadbolt_core::Schedule::new(0x7f, 0, 60).unwrap(),
            t0(),
            &by(),
        )
        .await
        .unwrap();
    assert_eq!(
        logged_since(store, v).await,
        vec![(None, None, Some(p.id.clone())), account(&a.id, "alice")]
    );

    // What no check reads changes nothing: attempts, a company, a person's name.
    let v = store.version().await.unwrap();
    store
        .record_attempts(&AttemptBatch::new(vec![NewAttempt {
            at: t0(),
            app_id: a.id.clone(),
            key_id: None,
            account: "alice".into(),
            locked: true,
            reason: deadbolt_core::Reason::AccountLocked,
            ip: None,
            device: None,
            location: None,
            integration_type: None,
            integration_data: None,
        }]))
        .await
        .unwrap();
    store.create_company("other", t0()).await.unwrap();
    store
        .engine
        .write(
            "UPDATE persons SET first_name = 'Pat' WHERE email = 'p@example.com'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(store.version().await.unwrap(), v);
    assert_eq!(logged_since(store, v).await, vec![]);
});

both_engines!(a_change_made_by_hand_is_logged, |store| {
    let a = app(store, "hand.example.com").await;
    store.enroll(&a.id, "bob", None, t0(), &by()).await.unwrap();
    let v = store.version().await.unwrap();
    // As an operator would type it into sqlite3 or psql.
    store
        .engine
        .write(
            "UPDATE accounts SET state = 'locked' WHERE account = 'bob'",
            vec![],
        )
        .await
        .unwrap();
    assert!(store.version().await.unwrap() > v);
    assert_eq!(logged_since(store, v).await, vec![account(&a.id, "bob")]);
    // A row inserted by hand has no lookup key yet: its whole application is named.
    let v = store.version().await.unwrap();
    store
        .engine
        .write(
            "INSERT INTO accounts (id, app_id, account, state, created_at, updated_at) \
             SELECT 'hand-1', id, 'carol', 'locked', 0, 0 FROM applications WHERE issuer = 'hand.example.com'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        logged_since(store, v).await,
        vec![(Some(a.id.clone()), None, None)]
    );
});

both_engines!(
    pruning_keeps_the_last_rows_and_says_when_a_reader_fell_behind,
    |store| {
        let a = app(store, "prune.example.com").await;
        let start = store.version().await.unwrap();
        for i in 0..5 {
            store
                .enroll(&a.id, &format!("u{i}"), None, t0(), &by())
                .await
                .unwrap();
        }
        let end = store.version().await.unwrap();
        let before_last_two = end - 2;
        assert!(store.prune_changes(2).await.unwrap() > 0);
        assert_eq!(
            store.version().await.unwrap(),
            end,
            "the counter does not go back"
        );
        assert_eq!(
            store.changes(start, end).await.unwrap(),
            None,
            "a reader behind the pruned rows must forget everything"
        );
        let kept = store
            .changes(before_last_two, end)
            .await
            .unwrap()
            .expect("the last rows are kept");
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].account_key.as_deref(), Some("u4"));
        // Pruning to nothing keeps one row: the counter stays where it was.
        store.prune_changes(0).await.unwrap();
        assert_eq!(store.version().await.unwrap(), end);
        store.enroll(&a.id, "u9", None, t0(), &by()).await.unwrap();
        assert!(store.version().await.unwrap() > end);
    }
);

/// A server's own commits are at hand for its check path, exactly as the log has them; a
/// commit by anyone else (here a second store on the same file, as the CLI would be) is not,
/// and neither is anything after it: the check path then reads the log.
#[tokio::test]
async fn own_commits_are_at_hand_and_anothers_are_not() {
    let (store, dir) = crate::testing::fresh_sqlite().await;
    let a = app(&store, "hand.example.com").await;
    let start = store.version().await.unwrap();
    for name in ["Alice", "Bob"] {
        store.enroll(&a.id, name, None, t0(), &by()).await.unwrap();
    }
    store
        .set_account_state(
            &a.id,
            &k("alice"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
    let mine = store.version().await.unwrap();
    let at_hand = store
        .changes_at_hand(start, mine)
        .expect("all this process's own");
    assert_eq!(Some(at_hand), store.changes(start, mine).await.unwrap());
    assert_eq!(
        store.version_at_hand().map(Result::unwrap),
        Some(mine),
        "the position after an own commit is at hand too"
    );

    let other = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("deadbolt.db").display()
    ))
    .await
    .unwrap();
    anothers_commit_is_not_at_hand(&store, &other, &a.id, start, mine).await;
}

/// After `store`'s own commits from `start` to `mine`, `other` (another process on the same
/// store) enrols Carol and `store` Dave: no catch-up over Carol's rows is at hand, one from
/// after them to Dave's is, exactly as the log has it. Both engines' tests end with this.
pub(crate) async fn anothers_commit_is_not_at_hand(
    store: &Store,
    other: &Store,
    app_id: &str,
    start: i64,
    mine: i64,
) {
    other
        .enroll(app_id, "Carol", None, t0(), &by())
        .await
        .unwrap();
    let carol = other.version().await.unwrap();
    store
        .enroll(app_id, "Dave", None, t0(), &by())
        .await
        .unwrap();
    let end = store.version().await.unwrap();
    assert_eq!(
        store.changes_at_hand(mine, end),
        None,
        "Carol's rows are not at hand"
    );
    assert_eq!(store.changes_at_hand(start, end), None);
    let dave = store.changes_at_hand(carol, end).expect("Dave's are");
    assert_eq!(Some(dave), store.changes(carol, end).await.unwrap());
}

both_engines!(
    nothing_to_apply_is_always_at_hand_and_own_changes_are,
    |store| {
        let v = store.version().await.unwrap();
        assert_eq!(store.changes_at_hand(v, v), Some(vec![]));
        let a = app(store, "pg-hand.example.com").await;
        let end = store.version().await.unwrap();
        let at_hand = store.changes_at_hand(v, end);
        assert_eq!(at_hand.map(|c| c[0].app_id.clone()), Some(Some(a.id)));
    }
);

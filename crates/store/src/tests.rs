//! The store suite, run on SQLite and on PostgreSQL.

use super::*;
use chrono::Duration;
use deadbolt_core::{AccountState, Enrolment, PersonLocks, Reason, Schedule, UnenrolledPolicy};

use crate::test_support::{by, k, t0};

pub(crate) async fn app(store: &Store, issuer: &str) -> Application {
    let c = store
        .create_company(&format!("co {issuer}"), t0())
        .await
        .unwrap();
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

pub(crate) fn new_person(email: &str) -> NewPerson {
    NewPerson {
        email: email.into(),
        password_hash: None,
        first_name: None,
        last_name: None,
        phone: None,
        time_zone: chrono_tz::Tz::UTC,
    }
}

both_engines!(applications_and_issuers, |store| {
    let a = app(store, "https://App.Example.com/").await;
    assert_eq!(a.unenrolled, UnenrolledPolicy::Allow);
    let found = store
        .application_by_issuer("app.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, a);
    // The same issuer written another way is the same issuer.
    let again = store
        .create_application(
            &NewApplication {
                company_id: a.company_id.clone(),
                name: "dup".into(),
                issuer: "app.example.com".into(),
                unenrolled: UnenrolledPolicy::Allow,
                account_names: Default::default(),
                default_state: AccountState::Unlocked,
            },
            t0(),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let updated = store
        .update_application(
            &a.id,
            &AppSettings {
                unenrolled: UnenrolledPolicy::Deny,
                default_state: AccountState::Locked,
                audit_mode: true,
            },
        )
        .await
        .unwrap();
    assert!(updated.audit_mode && updated.unenrolled == UnenrolledPolicy::Deny);
    assert_eq!(
        store.applications(Some(&a.company_id)).await.unwrap().len(),
        1
    );
    assert!(store.application("nope").await.unwrap().is_none());
    assert_eq!(
        store
            .update_application(
                "nope",
                &AppSettings {
                    unenrolled: UnenrolledPolicy::Deny,
                    default_state: AccountState::Locked,
                    audit_mode: false
                }
            )
            .await
            .unwrap_err(),
        StoreError::NotFound("application")
    );
});

both_engines!(signing_keys_rotate_and_revoke, |store| {
    let a = app(store, "keys.example.com").await;
    let (k1, k2) = ("key-1".to_string(), "key-2".to_string());
    store
        .create_signing_key(&k1, &a.id, "enc1", t0())
        .await
        .unwrap();
    store
        .create_signing_key(&k2, &a.id, "enc2", t0() + Duration::seconds(1))
        .await
        .unwrap();
    let active = store.active_signing_keys(&a.id).await.unwrap();
    assert_eq!(
        active,
        vec![
            (k2.clone(), "enc2".to_string()),
            (k1.clone(), "enc1".to_string())
        ]
    );
    assert_eq!(store.revoke_signing_key(&k1, t0()).await.unwrap(), a.id);
    assert_eq!(
        store.active_signing_keys(&a.id).await.unwrap(),
        vec![(k2.clone(), "enc2".to_string())]
    );
    assert_eq!(
        store.revoke_signing_key("missing", t0()).await.unwrap_err(),
        StoreError::NotFound("signing key")
    );
    // last used comes from the attempts the key verified.
    store
        .record_attempts(&AttemptBatch::new(vec![attempt(
            &a.id,
            Some(&k2),
            "u",
            false,
            t0() + Duration::minutes(3),
        )]))
        .await
        .unwrap();
    let keys = store.signing_keys(&a.id).await.unwrap();
    let k2rec = keys.iter().find(|k| k.id == k2).unwrap();
    assert_eq!(k2rec.last_used_at, Some(t0() + Duration::minutes(3)));
    assert!(keys
        .iter()
        .find(|k| k.id == k1)
        .unwrap()
        .revoked_at
        .is_some());
    // The same answer on both engines: a foreign key to nothing is "not found".
    assert_eq!(
        store
            .create_signing_key("key-3", "no-such-app", "x", t0())
            .await
            .unwrap_err(),
        StoreError::NotFound("application")
    );
});

both_engines!(sdk_keys, |store| {
    let c = store.create_company("acme", t0()).await.unwrap();
    let id = store.create_sdk_key(&c.id, "hash", t0()).await.unwrap();
    let k = store.sdk_key(&id).await.unwrap().unwrap();
    assert_eq!(
        (k.company_id.as_str(), k.secret_hash.as_str(), k.revoked_at),
        (c.id.as_str(), "hash", None)
    );
    store.revoke_sdk_key(&id, t0()).await.unwrap();
    assert!(store
        .sdk_key(&id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(store.sdk_key("other").await.unwrap().is_none());
    assert_eq!(store.sdk_keys(&c.id).await.unwrap().len(), 1);
});

both_engines!(an_sdk_key_and_an_application_are_read_together, |store| {
    let a = app(store, "https://App.Example.com/").await;
    let id = store
        .create_sdk_key(&a.company_id, "hash", t0())
        .await
        .unwrap();
    let (key, found) = store
        .sdk_key_and_application(&id, Some("app.example.com"))
        .await
        .unwrap();
    assert_eq!(key, store.sdk_key(&id).await.unwrap());
    assert_eq!(found, Some(a.clone()));
    let (key, found) = store
        .sdk_key_and_application("no-such-key", Some("nowhere.example.com"))
        .await
        .unwrap();
    assert_eq!((key, found), (None, None));
    // Without an issuer, the key alone.
    let (key, found) = store.sdk_key_and_application(&id, None).await.unwrap();
    assert_eq!((key.map(|k| k.id), found), (Some(id), None));
});

both_engines!(
    accounts_and_their_alerts_are_read_together_in_order,
    |store| {
        let a = app(store, "app.example.com").await;
        let b = app(store, "b.example.com").await;
        let (ann, _) = store.enroll(&a.id, "Ann", None, t0(), &by()).await.unwrap();
        let (bob, _) = store.enroll(&a.id, "bob", None, t0(), &by()).await.unwrap();
        let (ann_b, _) = store.enroll(&b.id, "ann", None, t0(), &by()).await.unwrap();
        store.set_alerts(&bob.id, false, t0()).await.unwrap();
        let (ka, kb, kx) = (k("ann"), k("bob"), k("nobody"));
        let found = store
            .accounts_and_alerts(&[
                (b.id.as_str(), &ka),
                (a.id.as_str(), &kx),
                (a.id.as_str(), &kb),
                (a.id.as_str(), &ka),
            ])
            .await
            .unwrap();
        let got: Vec<Option<(String, bool)>> = found
            .iter()
            .map(|f| f.as_ref().map(|(acc, on)| (acc.id.clone(), *on)))
            .collect();
        assert_eq!(
            got,
            [
                Some((ann_b.id.clone(), true)),
                None,
                Some((bob.id.clone(), false)),
                Some((ann.id.clone(), true)),
            ]
        );
        // Each account as `account` reads it.
        assert_eq!(
            found[3].as_ref().map(|(acc, _)| acc),
            store.account(&a.id, &ka).await.unwrap().as_ref()
        );
        assert!(store.accounts_and_alerts(&[]).await.unwrap().is_empty());
    }
);

both_engines!(persons_are_unique_by_email, |store| {
    let p = store
        .create_person(&new_person(" Alice@Example.com "), t0())
        .await
        .unwrap();
    assert_eq!(p.email, "alice@example.com");
    assert!(matches!(
        store
            .create_person(&new_person("ALICE@example.com"), t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .person_by_email("alice@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        p.id
    );
    store
        .set_master_lock(&p.id, true, t0(), &by())
        .await
        .unwrap();
    assert!(store.person(&p.id).await.unwrap().unwrap().master_locked);
    assert_eq!(
        store
            .set_master_lock("nobody", true, t0(), &by())
            .await
            .unwrap_err(),
        StoreError::NotFound("person")
    );
});

both_engines!(enrolment_state_and_inputs, |store| {
    let a = app(store, "enrol.example.com").await;
    let p = store
        .create_person(&new_person("bob@example.com"), t0())
        .await
        .unwrap();
    assert_eq!(
        store.lock_inputs(&a.id, &k("bob")).await.unwrap(),
        LockInputs::default()
    );
    let (acc, created) = store.enroll(&a.id, "bob", None, t0(), &by()).await.unwrap();
    assert!(created && acc.person_id.is_none() && acc.state == AccountState::Unlocked);
    // Enrolling again links the person but does not create a second account.
    let (acc2, created) = store
        .enroll(&a.id, "bob", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (acc2.id, acc2.person_email.as_deref()),
        (acc.id.clone(), Some("bob@example.com"))
    );

    let until = t0() + Duration::minutes(15);
    assert!(store
        .set_account_state(
            &a.id,
            &k("bob"),
            AccountState::Locked,
            Some(until),
            t0(),
            crate::AuditAction::Lock,
            &by()
        )
        .await
        .unwrap()
        .is_some());
    assert!(store
        .set_account_state(
            &a.id,
            &k("nobody"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by()
        )
        .await
        .unwrap()
        .is_none());
    let inputs = store.lock_inputs(&a.id, &k("bob")).await.unwrap();
    assert_eq!(
        inputs.enrolment,
        Some(Enrolment {
            state: AccountState::Locked,
            unlocked_until: Some(until)
        })
    );
    assert_eq!(
        inputs.person,
        Some(PersonLocks {
            master_locked: false,
            time_zone: chrono_tz::Tz::UTC
        })
    );
    assert_eq!(store.person_accounts(&p.id).await.unwrap().len(), 1);
    assert_eq!(
        store.accounts(&a.id, Some("bo"), 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.accounts(&a.id, Some("%"), 10).await.unwrap().len(),
        0,
        "LIKE wildcards are escaped"
    );

    // New enrolments take the application's default state.
    store
        .update_application(
            &a.id,
            &AppSettings {
                unenrolled: UnenrolledPolicy::Allow,
                default_state: AccountState::Locked,
                audit_mode: false,
            },
        )
        .await
        .unwrap();
    let (carol, _) = store
        .enroll(&a.id, "carol", None, t0(), &by())
        .await
        .unwrap();
    assert_eq!(carol.state, AccountState::Locked);
    assert_eq!(
        store
            .enroll("no-app", "x", None, t0(), &by())
            .await
            .unwrap_err(),
        StoreError::NotFound("application")
    );
    assert_eq!(
        store
            .enroll(&a.id, "x", Some("no-person"), t0(), &by())
            .await
            .unwrap_err(),
        StoreError::NotFound("person")
    );
});

both_engines!(schedules_apply_to_person_or_one_account, |store| {
    let a = app(store, "sched.example.com").await;
    let p = store
        .create_person(&new_person("dan@example.com"), t0())
        .await
        .unwrap();
    let (one, _) = store
        .enroll(&a.id, "one", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    store
        .enroll(&a.id, "two", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    store
        .enroll(&a.id, "stranger", None, t0(), &by())
        .await
        .unwrap();
    let nights = Schedule::parse("all", "23:00-07:00").unwrap();
    let weekends = Schedule::parse("weekends", "00:00-00:00").unwrap();
    store
        .add_schedule(&ScheduleOwner::Person(p.id.clone()), nights, t0(), &by())
        .await
        .unwrap();
    let s = store
        .add_schedule(
            &ScheduleOwner::Account {
                person_id: Some(p.id.clone()),
                account_id: one.id.clone(),
            },
            weekends,
            t0(),
            &by(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .lock_inputs(&a.id, &k("one"))
            .await
            .unwrap()
            .schedules
            .len(),
        2
    );
    assert_eq!(
        store.lock_inputs(&a.id, &k("two")).await.unwrap().schedules,
        vec![nights]
    );
    assert!(store
        .lock_inputs(&a.id, &k("stranger"))
        .await
        .unwrap()
        .schedules
        .is_empty());
    assert_eq!(store.person_schedules(&p.id).await.unwrap().len(), 2);
    store.delete_schedule(&s.id, t0(), &by()).await.unwrap();
    assert_eq!(
        store.lock_inputs(&a.id, &k("one")).await.unwrap().schedules,
        vec![nights]
    );
    assert_eq!(
        store.delete_schedule(&s.id, t0(), &by()).await.unwrap_err(),
        StoreError::NotFound("schedule")
    );
});

fn attempt(
    app_id: &str,
    key: Option<&str>,
    account: &str,
    locked: bool,
    at: DateTime<Utc>,
) -> NewAttempt {
    NewAttempt {
        at,
        app_id: app_id.into(),
        key_id: key.map(String::from),
        account: account.into(),
        locked,
        reason: if locked {
            Reason::AccountLocked
        } else {
            Reason::AccountUnlocked
        },
        ip: Some("203.0.113.9".into()),
        device: Some("Firefox".into()),
        location: None,
        integration_type: Some("cognito".into()),
        integration_data: Some(r#"{"a":1}"#.into()),
    }
}

both_engines!(attempts_are_listed_per_application, |store| {
    let a = app(store, "att.example.com").await;
    let b = app(store, "other.example.com").await;
    let p = store
        .create_person(&new_person("eve@example.com"), t0())
        .await
        .unwrap();
    store
        .enroll(&a.id, "eve", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    let batch: Vec<NewAttempt> = (0..5)
        .map(|i| attempt(&a.id, None, "eve", i % 2 == 0, t0() + Duration::seconds(i)))
        .chain([attempt(&b.id, None, "eve", true, t0())])
        .collect();
    store
        .record_attempts(&AttemptBatch::new(batch))
        .await
        .unwrap();
    let recent = store.recent_attempts(&a.id, 3).await.unwrap();
    assert_eq!(
        recent.iter().map(|x| x.at).collect::<Vec<_>>(),
        vec![
            t0() + Duration::seconds(4),
            t0() + Duration::seconds(3),
            t0() + Duration::seconds(2)
        ]
    );
    assert!(recent.iter().all(|x| x.app_id == a.id));
    assert_eq!(recent[0].integration_data.as_deref(), Some(r#"{"a":1}"#));
    let since = store
        .attempts_since(&a.id, t0() + Duration::seconds(3), 10)
        .await
        .unwrap();
    assert_eq!(since.len(), 2);
    assert!(since[0].at < since[1].at);
    // The person sees blocked attempts of their own accounts only (not b's "eve", another app's account).
    let blocked = store.person_blocked_attempts(&p.id, 10).await.unwrap();
    assert_eq!(blocked.len(), 3);
    assert!(blocked.iter().all(|x| x.locked && x.app_id == a.id));
});

both_engines!(
    attempts_of_interleaved_applications_come_back_in_recorded_order,
    |store| {
        let a = app(store, "runs-a.example.com").await;
        let b = app(store, "runs-b.example.com").await;
        let at = |s: i64| t0() + Duration::seconds(s);
        // One batch, the two applications' attempts interleaved.
        let first: Vec<NewAttempt> = (0..6)
            .map(|i| {
                let app = if i % 2 == 0 { &a.id } else { &b.id };
                attempt(app, None, &format!("u{i}"), false, at(i))
            })
            .collect();
        store
            .record_attempts(&AttemptBatch::new(first))
            .await
            .unwrap();
        // A later batch whose clock reads earlier (a clock set back): still recorded after.
        let second = vec![
            attempt(&b.id, None, "late-b", true, at(-100)),
            attempt(&a.id, None, "late-a", true, at(-100)),
        ];
        store
            .record_attempts(&AttemptBatch::new(second))
            .await
            .unwrap();
        let names = |v: &[Attempt]| v.iter().map(|x| x.account.clone()).collect::<Vec<_>>();
        let recent_a = store.recent_attempts(&a.id, 10).await.unwrap();
        assert_eq!(names(&recent_a), ["late-a", "u4", "u2", "u0"]);
        assert!(recent_a.iter().all(|x| x.app_id == a.id));
        let recent_b = store.recent_attempts(&b.id, 2).await.unwrap();
        assert_eq!(names(&recent_b), ["late-b", "u5"]);
        // One application's attempts of one batch have ids that follow each other.
        let ids: Vec<i64> = recent_a[1..].iter().map(|x| x.id).rev().collect();
        assert_eq!(ids, [ids[0], ids[0] + 1, ids[0] + 2]);
        // Oldest first from a time on; the late attempt is before `since`: left out.
        let since = store.attempts_since(&b.id, at(3), 10).await.unwrap();
        assert_eq!(names(&since), ["u3", "u5"]);
        let filtered = store
            .filtered_attempts(&a.id, None, Some(true), (None, None), 0, 10)
            .await
            .unwrap();
        assert_eq!(names(&filtered), ["late-a"]);
        let newer = store
            .filtered_attempts(&a.id, None, None, (None, None), recent_a[2].id, 10)
            .await
            .unwrap();
        assert_eq!(names(&newer), ["late-a", "u4"]);
    }
);

/// Reading attempts walks the runs in index order and stops at the limit: no query sorts runs
/// (a year of attempts would be read to show fifty).
#[tokio::test]
async fn attempt_reads_walk_the_runs_in_index_order() {
    use crate::attempts::*;
    let (store, _dir) = crate::testing::fresh_sqlite().await;
    for (name, sql, params, index) in [
        (
            "since",
            const_format::concatcp!("EXPLAIN QUERY PLAN ", APP_RUNS_ASC),
            5,
            "attempt_runs_app",
        ),
        (
            "recent and filtered",
            const_format::concatcp!("EXPLAIN QUERY PLAN ", APP_RUNS_AFTER_DESC),
            6,
            "attempt_runs_app",
        ),
        (
            "person",
            const_format::concatcp!("EXPLAIN QUERY PLAN ", PERSON_RUNS_DESC),
            3,
            "INTEGER PRIMARY KEY",
        ),
        (
            "person after",
            const_format::concatcp!("EXPLAIN QUERY PLAN ", PERSON_RUNS_ASC),
            4,
            "INTEGER PRIMARY KEY",
        ),
    ] {
        let mut values: Vec<Val> = vec!["x".into()];
        values.extend((1..params).map(|_| Val::Int(1)));
        let plan: Vec<String> = store
            .engine
            .query(sql, values)
            .await
            .unwrap()
            .iter()
            .map(|r| r.text(3).unwrap())
            .collect();
        let plan = plan.join(" | ");
        assert!(!plan.contains("TEMP B-TREE"), "{name} sorts: {plan}");
        assert!(plan.contains(index), "{name}: {plan}");
    }
}

// Attempts recorded in many runs, of several applications and people: every read agrees with
// what a plain filter over all of them gives (walks cross pages of runs).
both_engines!(walks_over_many_runs_agree_with_a_plain_filter, |store| {
    let a = app(store, "walk-a.example.com").await;
    let b = app(store, "walk-b.example.com").await;
    let p = store
        .create_person(&new_person("walker@example.com"), t0())
        .await
        .unwrap();
    store
        .enroll(&a.id, "a1", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    store
        .enroll(&b.id, "b1", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    let mut all = Vec::new();
    for batch in 0..90i64 {
        let v: Vec<NewAttempt> = (0..5i64)
            .map(|i| {
                let (app, acc) = match (batch + i) % 3 {
                    0 => (&a.id, "a1"),
                    1 => (&a.id, "a2"),
                    _ => (&b.id, "b1"),
                };
                attempt(
                    app,
                    None,
                    acc,
                    i % 2 == 0,
                    t0() + Duration::seconds(batch * 5 + i),
                )
            })
            .collect();
        store.record_attempts(&AttemptBatch::new(v)).await.unwrap();
    }
    for x in store.recent_attempts(&a.id, 10_000).await.unwrap() {
        all.push(x);
    }
    for x in store.recent_attempts(&b.id, 10_000).await.unwrap() {
        all.push(x);
    }
    assert_eq!(all.len(), 450);
    assert_eq!(store.attempt_count().await.unwrap(), 450);
    all.sort_by_key(|x| std::cmp::Reverse(x.id));
    let ids: std::collections::HashSet<i64> = all.iter().map(|x| x.id).collect();
    assert_eq!(ids.len(), 450, "ids are unique");
    let of = |app: &str| {
        all.iter()
            .filter(|x| x.app_id == app)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        store.recent_attempts(&a.id, 100).await.unwrap(),
        of(&a.id)[..100]
    );
    let since = t0() + Duration::seconds(200);
    let mut expect: Vec<Attempt> = of(&b.id).into_iter().filter(|x| x.at >= since).collect();
    expect.reverse();
    assert_eq!(
        store.attempts_since(&b.id, since, 1000).await.unwrap(),
        expect
    );
    let blocked_a2: Vec<Attempt> = of(&a.id)
        .into_iter()
        .filter(|x| x.account == "a2" && x.locked)
        .collect();
    assert_eq!(
        store
            .filtered_attempts(&a.id, Some("a2"), Some(true), (None, None), 0, 1000)
            .await
            .unwrap(),
        blocked_a2
    );
    let mine: Vec<Attempt> = all
        .iter()
        .filter(|x| x.locked && x.account != "a2")
        .cloned()
        .collect();
    assert_eq!(
        store.person_blocked_attempts(&p.id, 1000).await.unwrap(),
        mine
    );
    let after = mine[40].id;
    let mut newer: Vec<Attempt> = mine[..40].to_vec();
    newer.reverse();
    assert_eq!(
        store
            .person_blocked_attempts_after(&p.id, after, 1000)
            .await
            .unwrap(),
        newer
    );
    for x in [&all[0], &all[200], &all[449]] {
        assert_eq!(store.attempt(x.id).await.unwrap().as_ref(), Some(x));
    }
    assert_eq!(store.attempt(all[0].id + 1).await.unwrap(), None);
    assert_eq!(store.attempt(0).await.unwrap(), None);
});

/// Attempts recorded before runs existed are moved into runs by the migrations, in order.
#[tokio::test]
async fn migrations_move_attempts_recorded_before_into_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for m in &crate::migrations::MIGRATIONS[..3] {
            c.execute_batch(m.sqlite).unwrap();
            c.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [m.name])
                .unwrap();
        }
        // x x y x y y (ids 1-6): four runs; x's third attempt has an earlier time.
        for (app, at) in [
            ("x", 10),
            ("x", 20),
            ("y", 30),
            ("x", 5),
            ("y", 40),
            ("y", 50),
        ] {
            c.execute(
                "INSERT INTO attempts (at, app_id, key_id, account, locked, reason, integration_data) \
                 VALUES (?1, ?2, 'k', 'acc', 1, 'account_locked', '{\"a\":[1]}')",
                rusqlite::params![at, app],
            )
            .unwrap();
        }
    }
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let runs: Vec<(i64, i64, String, i64, i64)> = store
        .engine
        .query(
            "SELECT first_id, last_id, app_id, until_at, n FROM attempt_runs ORDER BY last_id",
            vec![],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.int(0).unwrap(),
                r.int(1).unwrap(),
                r.text(2).unwrap(),
                r.int(3).unwrap(),
                r.int(4).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            (1, 2, "x".to_string(), 20, 2),
            (3, 3, "y".to_string(), 30, 1),
            (4, 4, "x".to_string(), 20, 1),
            (5, 6, "y".to_string(), 50, 2),
        ]
    );
    let x = store.recent_attempts("x", 10).await.unwrap();
    assert_eq!(x.iter().map(|a| a.id).collect::<Vec<_>>(), [4, 2, 1]);
    assert_eq!(
        x.iter()
            .map(|a| a.at.timestamp_millis())
            .collect::<Vec<_>>(),
        [5, 20, 10]
    );
    assert!(x
        .iter()
        .all(|a| a.locked && a.key_id.as_deref() == Some("k")));
    assert_eq!(x[0].integration_data.as_deref(), Some(r#"{"a":[1]}"#));
    assert_eq!(x[0].reason, "account_locked");
    assert_eq!(store.attempt_count().await.unwrap(), 6);
    // New attempts continue after them.
    store
        .record_attempts(&AttemptBatch::new(vec![attempt(
            "x",
            None,
            "n",
            false,
            t0(),
        )]))
        .await
        .unwrap();
    assert_eq!(store.recent_attempts("x", 1).await.unwrap()[0].id, 7);
}

// A client's text reaches the store inside a run's JSON, escaped: even a NUL, which a
// PostgreSQL text column refuses (a refused batch would be retried forever, stalling the queue).
both_engines!(hostile_attempt_fields_come_back_unchanged, |store| {
    let a = app(store, "hostile.example.com").await;
    let odd = [
        "\"],[1,2,3],[\"",
        "nul\u{0}byte",
        "línea\nnueva\t\u{1F512}",
        "\\u0000 not an escape",
        "",
    ];
    let batch: Vec<NewAttempt> = odd
        .iter()
        .map(|s| {
            // Key ids are the store's own; everything else comes from the client.
            let mut x = attempt(&a.id, Some("key-1"), s, true, t0());
            x.ip = Some(s.to_string());
            x.device = Some(s.repeat(100));
            x.location = None;
            x.integration_type = Some(s.to_string());
            x.integration_data = Some(format!("{{\"v\":{}}}", serde_json::json!(s)));
            x
        })
        .collect();
    store
        .record_attempts(&AttemptBatch::new(batch.clone()))
        .await
        .unwrap();
    let mut back = store.recent_attempts(&a.id, 10).await.unwrap();
    back.reverse();
    assert_eq!(back.len(), odd.len());
    for (x, y) in batch.iter().zip(&back) {
        assert_eq!(y.account, x.account);
        assert_eq!(y.key_id, x.key_id);
        assert_eq!(y.ip, x.ip);
        assert_eq!(y.device, x.device);
        assert_eq!(y.location, None);
        assert_eq!(y.integration_type, x.integration_type);
        assert_eq!(y.integration_data, x.integration_data);
    }
});

both_engines!(version_moves_with_changes_not_with_attempts, |store| {
    let v0 = store.version().await.unwrap();
    let a = app(store, "ver.example.com").await;
    let v1 = store.version().await.unwrap();
    assert!(v1 > v0);
    store
        .record_attempts(&AttemptBatch::new(vec![attempt(
            &a.id,
            None,
            "x",
            false,
            t0(),
        )]))
        .await
        .unwrap();
    assert_eq!(
        store.version().await.unwrap(),
        v1,
        "attempts do not invalidate caches"
    );
    store.enroll(&a.id, "x", None, t0(), &by()).await.unwrap();
    let v2 = store.version().await.unwrap();
    assert!(v2 > v1);
    store
        .set_account_state(
            &a.id,
            &k("x"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
    assert!(store.version().await.unwrap() > v2);
});

both_engines!(import_is_idempotent, |store| {
    let a = app(store, "imp.example.com").await;
    let rows: Vec<ImportRow> = (0..50)
        .map(|i| ImportRow {
            app_id: a.id.clone(),
            account: format!("user{i}"),
            email: (i % 2 == 0).then(|| format!("User{i}@Example.com")),
            first_name: Some("F".into()),
            last_name: None,
            phone: None,
        })
        .collect();
    let created = store.import(&rows, t0(), &by()).await.unwrap();
    assert!(created.iter().all(|c| *c));
    let again = store.import(&rows, t0(), &by()).await.unwrap();
    assert!(again.iter().all(|c| !*c));
    let acc = store.account(&a.id, &k("user4")).await.unwrap().unwrap();
    assert_eq!(acc.person_email.as_deref(), Some("user4@example.com"));
    assert!(store
        .account(&a.id, &k("user5"))
        .await
        .unwrap()
        .unwrap()
        .person_id
        .is_none());
    assert_eq!(store.accounts(&a.id, None, 1000).await.unwrap().len(), 50);
    let bad = vec![ImportRow {
        app_id: "missing".into(),
        account: "z".into(),
        email: None,
        first_name: None,
        last_name: None,
        phone: None,
    }];
    assert_eq!(
        store.import(&bad, t0(), &by()).await.unwrap_err(),
        StoreError::NotFound("application")
    );
});

both_engines!(tenants_do_not_share_accounts, |store| {
    let a = app(store, "a.example.com").await;
    let b = app(store, "b.example.com").await;
    store
        .enroll(&a.id, "shared-name", None, t0(), &by())
        .await
        .unwrap();
    store
        .enroll(&b.id, "shared-name", None, t0(), &by())
        .await
        .unwrap();
    store
        .set_account_state(
            &a.id,
            &k("shared-name"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
    let in_b = store.lock_inputs(&b.id, &k("shared-name")).await.unwrap();
    assert_eq!(in_b.enrolment.unwrap().state, AccountState::Unlocked);
});

#[tokio::test]
async fn sqlite_store_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let store = Store::open(&url).await.unwrap();
    let a = app(&store, "reopen.example.com").await;
    drop(store);
    let store = Store::open(&url).await.unwrap();
    assert_eq!(
        store.application(&a.id).await.unwrap().unwrap().issuer,
        "reopen.example.com"
    );
}

#[tokio::test]
async fn memory_and_bad_urls() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert!(store.version().await.is_ok());
    assert!(matches!(
        Store::open("mysql://x").await,
        Err(StoreError::Config(_))
    ));
    assert!(Store::open("postgres://x y").await.is_err());
}

/// Queries that add a column after the account's read it at this index.
#[test]
fn account_cols_count_counts_account_cols() {
    assert_eq!(
        ACCOUNT_COLS.split(',').count(),
        crate::accounts::ACCOUNT_COLS_COUNT
    );
}

/// Writes wait for their turn in the order they came, as tasks, and one that has not had its
/// turn by its deadline fails without committing later.
#[tokio::test]
async fn sqlite_writes_take_turns_in_order_and_give_up_at_the_deadline() {
    let (store, _dir) = crate::testing::fresh_sqlite().await;
    let store = std::sync::Arc::new(store);
    let held = store.engine.hold_write_turn().await;
    let mut writes = Vec::new();
    for i in 0..20 {
        let s = store.clone();
        writes.push(tokio::spawn(async move {
            s.create_company(&format!("c{i:02}"), t0()).await.unwrap()
        }));
        // Each in the queue before the next comes.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    drop(held);
    for w in writes {
        w.await.unwrap();
    }
    // SQLite numbers rows in the order they were written.
    let rows = store
        .engine
        .query("SELECT name FROM companies ORDER BY rowid", vec![])
        .await
        .unwrap();
    let order: Vec<String> = rows.iter().map(|r| r.text(0).unwrap()).collect();
    let asked: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    assert_eq!(order, asked, "turns were given in the order asked");

    store.set_timeout(std::time::Duration::from_millis(100));
    let held = store.engine.hold_write_turn().await;
    let late = store.create_company("late", t0()).await;
    assert!(
        matches!(&late, Err(StoreError::Unavailable(m)) if m.contains("turn")),
        "{late:?}"
    );
    drop(held);
    store.set_timeout(crate::DEFAULT_TIMEOUT);
    let names: Vec<String> = store
        .companies()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 20);
    assert!(
        !names.contains(&"late".to_string()),
        "a write past its deadline never commits"
    );
}

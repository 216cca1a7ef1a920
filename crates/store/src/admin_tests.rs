//! What the portal's admin and operator pages need of the store, on both engines: pages and
//! counts, deletions that take everything that is only theirs, invitations, admins, key labels.

use super::*;
use chrono::Duration;
use deadbolt_core::{AccountState, Reason, Schedule, UnenrolledPolicy};

use crate::test_support::{by, k, t0};
use crate::tests::new_person;

pub(crate) async fn app(store: &Store, company_id: &str, issuer: &str) -> Application {
    store
        .create_application(
            &NewApplication {
                company_id: company_id.into(),
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

pub(crate) fn attempt(app_id: &str, i: i64) -> NewAttempt {
    NewAttempt {
        at: t0() + Duration::seconds(i),
        app_id: app_id.into(),
        key_id: None,
        account: format!("user{}", i % 5),
        locked: i % 2 == 0,
        reason: Reason::AccountUnlocked,
        ip: None,
        device: None,
        location: None,
        integration_type: None,
        integration_data: None,
    }
}

both_engines!(attempts_come_in_pages_and_counts, |store| {
    let c = store.create_company("co", t0()).await.unwrap();
    let a = app(store, &c.id, "pages.example.com").await;
    let other = app(store, &c.id, "other.example.com").await;
    // Several runs, interleaved with another application's.
    for batch in 0..7 {
        let mut v: Vec<NewAttempt> = (0..10).map(|i| attempt(&a.id, batch * 10 + i)).collect();
        v.push(attempt(&other.id, batch));
        store.record_attempts(&AttemptBatch::new(v)).await.unwrap();
    }
    let all = AttemptFilter::default();
    assert_eq!(store.attempt_count_of(&a.id, &all).await.unwrap(), 70);
    let mut seen = Vec::new();
    let mut before = 0;
    loop {
        let page = store.attempts_page(&a.id, &all, before, 16).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 16);
        before = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|a| a.id));
    }
    let newest_first = store.recent_attempts(&a.id, 100).await.unwrap();
    assert_eq!(seen, newest_first.iter().map(|a| a.id).collect::<Vec<_>>());
    let blocked = AttemptFilter {
        locked: Some(true),
        account: Some("user0".into()),
        ..Default::default()
    };
    // Even i with i % 5 == 0: 0, 10, …, 60.
    assert_eq!(store.attempt_count_of(&a.id, &blocked).await.unwrap(), 7);
    let page = store.attempts_page(&a.id, &blocked, 0, 3).await.unwrap();
    let rest = store
        .attempts_page(&a.id, &blocked, page[2].id, 10)
        .await
        .unwrap();
    assert_eq!(page.len() + rest.len(), 7);
    assert!(rest.iter().all(|r| r.locked && r.account == "user0"));
});

both_engines!(accounts_and_companies_come_in_pages_and_counts, |store| {
    let c = store.create_company("co", t0()).await.unwrap();
    let a = app(store, &c.id, "acc.example.com").await;
    for i in 0..25 {
        store
            .enroll(&a.id, &format!("name{i:02}"), None, t0(), &by())
            .await
            .unwrap();
    }
    assert_eq!(store.account_count(&a.id, None).await.unwrap(), 25);
    assert_eq!(store.account_count(&a.id, Some("NAME1")).await.unwrap(), 10);
    let second = store.accounts_page(&a.id, None, 20, 20).await.unwrap();
    assert_eq!(
        second
            .iter()
            .map(|a| a.account.as_str())
            .collect::<Vec<_>>(),
        ["name20", "name21", "name22", "name23", "name24"]
    );
    for i in 0..4 {
        store
            .create_company(&format!("c{i}"), t0() + Duration::seconds(i))
            .await
            .unwrap();
    }
    assert_eq!(store.company_count().await.unwrap(), 5);
    let page = store.companies_page(3, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["c2", "c3"]
    );
    store.rename_company(&c.id, "renamed").await.unwrap();
    assert_eq!(store.company(&c.id).await.unwrap().unwrap().name, "renamed");
    assert!(store.rename_company("nope", "x").await.is_err());
});

both_engines!(deleting_takes_everything_that_is_only_theirs, |store| {
    let c = store.create_company("co", t0()).await.unwrap();
    let a = app(store, &c.id, "del.example.com").await;
    let kept = app(store, &c.id, "kept.example.com").await;
    let p = store
        .create_person(&new_person("p@example.com"), t0())
        .await
        .unwrap();
    for app in [&a, &kept] {
        store
            .enroll(&app.id, "ann", Some(&p.id), t0(), &by())
            .await
            .unwrap();
        store
            .create_labelled_signing_key(&format!("key-{}", app.id), &app.id, "prod", "enc", t0())
            .await
            .unwrap();
    }
    let acc = store.account(&a.id, &k("ann")).await.unwrap().unwrap();
    store
        .add_schedule(
            &ScheduleOwner::Account {
                person_id: Some(p.id.clone()),
                account_id: acc.id.clone(),
            },
            Schedule::parse("mon", "01:00-02:00").unwrap(),
            t0(),
            &by(),
        )
        .await
        .unwrap();
    let mut used = attempt(&a.id, 1);
    used.key_id = Some(format!("key-{}", a.id));
    store
        .record_attempts(&AttemptBatch::new(vec![used, attempt(&kept.id, 2)]))
        .await
        .unwrap();
    assert_eq!(store.signing_keys(&kept.id).await.unwrap()[0].label, "prod");
    let version = store.version().await.unwrap();
    assert!(!store.app_audit(&a.id, None, 10).await.unwrap().is_empty());

    store.delete_application(&a.id).await.unwrap();
    assert!(
        store.app_audit(&a.id, None, 10).await.unwrap().is_empty(),
        "the trail of its accounts goes with it"
    );
    assert!(store.application(&a.id).await.unwrap().is_none());
    assert!(store
        .application_by_issuer("del.example.com")
        .await
        .unwrap()
        .is_none());
    assert!(store.accounts(&a.id, None, 10).await.unwrap().is_empty());
    assert!(store.signing_keys(&a.id).await.unwrap().is_empty());
    assert!(store.recent_attempts(&a.id, 10).await.unwrap().is_empty());
    assert!(store.person_schedules(&p.id).await.unwrap().is_empty());
    // Caches hear of it.
    assert!(store.version().await.unwrap() > version);
    // The other application and the person are untouched.
    assert_eq!(store.accounts(&kept.id, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.recent_attempts(&kept.id, 10).await.unwrap().len(), 1);
    assert!(store.person(&p.id).await.unwrap().is_some());
    assert!(matches!(
        store.delete_application(&a.id).await,
        Err(StoreError::NotFound(_))
    ));

    store.grant_role(&p.id, "admin", &c.id, t0()).await.unwrap();
    store
        .create_link(
            "h1",
            "admin_invite",
            "x@example.com",
            Some(&c.id),
            t0(),
            t0() + Duration::days(1),
        )
        .await
        .unwrap();
    store.create_sdk_key(&c.id, "hash", t0()).await.unwrap();
    assert!(!store
        .app_audit(&kept.id, None, 10)
        .await
        .unwrap()
        .is_empty());
    store.delete_company(&c.id).await.unwrap();
    assert!(store
        .app_audit(&kept.id, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.company(&c.id).await.unwrap().is_none());
    assert!(store.applications(Some(&c.id)).await.unwrap().is_empty());
    assert!(store.sdk_keys(&c.id).await.unwrap().is_empty());
    assert!(store.company_admins(&c.id).await.unwrap().is_empty());
    assert!(store.link("h1", t0()).await.unwrap().is_none());
    assert!(store.person(&p.id).await.unwrap().is_some());
});

both_engines!(invitations_and_admins, |store| {
    let c = store.create_company("co", t0()).await.unwrap();
    let later = t0() + Duration::days(7);
    for (hash, email, at) in [
        ("h1", "b@example.com", t0()),
        ("h2", "a@example.com", t0()),
        ("h3", "b@example.com", t0() + Duration::hours(1)),
    ] {
        store
            .create_link(hash, "admin_invite", email, Some(&c.id), at, later)
            .await
            .unwrap();
    }
    store
        .create_link("h4", "signup", "c@example.com", None, t0(), later)
        .await
        .unwrap();
    store.take_link("h2", t0()).await.unwrap();
    let pending = store
        .pending_links("admin_invite", &c.id, t0())
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].email, "b@example.com");
    assert_eq!(pending[0].sent_at, t0() + Duration::hours(1));
    assert!(store
        .pending_links("admin_invite", &c.id, later)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .cancel_links("admin_invite", &c.id, "B@example.com")
            .await
            .unwrap(),
        2
    );
    assert!(store.link("h3", t0()).await.unwrap().is_none());

    let mut ids = Vec::new();
    for email in ["one@example.com", "two@example.com"] {
        let p = store.create_person(&new_person(email), t0()).await.unwrap();
        store.grant_role(&p.id, "admin", &c.id, t0()).await.unwrap();
        ids.push(p.id);
    }
    assert!(!store
        .remove_admin(&c.id, "nobody@example.com")
        .await
        .unwrap());
    assert!(store.remove_admin(&c.id, "One@example.com").await.unwrap());
    // The last admin stays.
    assert!(!store.remove_admin(&c.id, "two@example.com").await.unwrap());
    assert_eq!(
        store.company_admins(&c.id).await.unwrap(),
        ["two@example.com"]
    );
});

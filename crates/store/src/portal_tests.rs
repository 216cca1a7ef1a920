//! The portal's store methods, run on SQLite and on PostgreSQL.

use super::*;
use crate::{AttemptBatch, NewApplication, NewAttempt, NewPerson};
use chrono::Duration;
use deadbolt_core::AccountState;
use deadbolt_core::{Reason, UnenrolledPolicy};

use crate::test_support::{by, t0};

async fn person(store: &Store, email: &str) -> crate::Person {
    store
        .create_person(
            &NewPerson {
                email: email.into(),
                password_hash: None,
                first_name: None,
                last_name: None,
                phone: None,
                time_zone: chrono_tz::Tz::UTC,
            },
            t0(),
        )
        .await
        .unwrap()
}

both_engines!(portal_roles, |store| {
    let p = person(store, "ann@example.com").await;
    let c = store.create_company("Acme", t0()).await.unwrap();
    assert!(!store.has_operator().await.unwrap());
    store.grant_role(&p.id, "operator", "", t0()).await.unwrap();
    store.grant_role(&p.id, "admin", &c.id, t0()).await.unwrap();
    store.grant_role(&p.id, "admin", &c.id, t0()).await.unwrap();
    assert!(store.grant_role(&p.id, "admin", "", t0()).await.is_err());
    assert!(store.grant_role(&p.id, "root", "", t0()).await.is_err());
    assert!(store.has_operator().await.unwrap());
    let roles = store.roles(&p.id).await.unwrap();
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert_eq!(
        (roles[0].role.as_str(), roles[0].company_id.as_str()),
        ("operator", "")
    );
    assert_eq!(
        (roles[1].role.as_str(), roles[1].company_id.as_str()),
        ("admin", c.id.as_str())
    );
    assert_eq!(roles[1].company_name.as_deref(), Some("Acme"));
    assert_eq!(
        store.company_admins(&c.id).await.unwrap(),
        vec!["ann@example.com".to_string()]
    );
    assert!(matches!(
        store.grant_role("nobody", "operator", "", t0()).await,
        Err(StoreError::NotFound(_))
    ));
});

both_engines!(portal_sessions_and_passwords, |store| {
    let p = person(store, "bob@example.com").await;
    assert_eq!(store.email_verified_at(&p.id).await.unwrap(), None);
    store
        .set_password_hash(&p.id, "$argon2id$x", true, t0())
        .await
        .unwrap();
    assert_eq!(store.email_verified_at(&p.id).await.unwrap(), Some(t0()));
    let (_, hash) = store
        .password_hash("bob@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash.as_deref(), Some("$argon2id$x"));

    let end = t0() + Duration::hours(12);
    store
        .create_session("h1", &p.id, "csrf1", t0(), end)
        .await
        .unwrap();
    store
        .create_session("h2", &p.id, "csrf2", t0(), end)
        .await
        .unwrap();
    let s = store.session("h1", t0()).await.unwrap().unwrap();
    assert_eq!(
        (s.person_id.as_str(), s.csrf.as_str()),
        (p.id.as_str(), "csrf1")
    );
    assert!(store.session("h1", end).await.unwrap().is_none(), "expired");
    store
        .delete_other_sessions(&p.id, "h2", t0())
        .await
        .unwrap();
    assert!(store.session("h1", t0()).await.unwrap().is_none());
    assert!(store.session("h2", t0()).await.unwrap().is_some());
    store.delete_session("h2").await.unwrap();
    assert!(store.session("h2", t0()).await.unwrap().is_none());
});

both_engines!(portal_links_are_single_use, |store| {
    let c = store.create_company("Acme", t0()).await.unwrap();
    let end = t0() + Duration::days(3);
    store
        .create_link(
            "tok",
            "admin_invite",
            " Ann@Example.com",
            Some(&c.id),
            t0(),
            end,
        )
        .await
        .unwrap();
    let l = store.link("tok", t0()).await.unwrap().unwrap();
    assert_eq!(l.purpose, "admin_invite");
    assert_eq!(l.email, "ann@example.com");
    assert_eq!(l.company_id.as_deref(), Some(c.id.as_str()));
    assert!(store.link("tok", end).await.unwrap().is_none(), "expired");
    assert!(store.take_link("tok", end).await.unwrap().is_none());
    assert!(store.take_link("tok", t0()).await.unwrap().is_some());
    assert!(store.take_link("tok", t0()).await.unwrap().is_none());
    assert!(store.link("tok", t0()).await.unwrap().is_none());
});

both_engines!(form_tokens_are_used_once, |store| {
    let end = t0() + Duration::hours(12);
    assert!(store.use_form_token("f1", end).await.unwrap());
    assert!(
        !store.use_form_token("f1", end).await.unwrap(),
        "sent twice"
    );
    assert!(
        store.use_form_token("f2", end).await.unwrap(),
        "another form"
    );
    // Sends of one new form at once: exactly one is the first.
    let u = || store.use_form_token("f3", end);
    let sent = tokio::join!(u(), u(), u(), u(), u(), u());
    let firsts = [sent.0, sent.1, sent.2, sent.3, sent.4, sent.5]
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(firsts, 1);
    assert_eq!(store.prune_form_tokens(t0()).await.unwrap(), 0);
    assert_eq!(store.prune_form_tokens(end).await.unwrap(), 3);
    assert!(
        store.use_form_token("f1", end).await.unwrap(),
        "forgotten once expired"
    );
});

both_engines!(portal_pairing_codes, |store| {
    let p = person(store, "cat@example.com").await;
    let end = t0() + Duration::minutes(10);
    store
        .create_pairing_code("code", &p.id, t0(), end)
        .await
        .unwrap();
    assert_eq!(store.take_pairing_code("code", end).await.unwrap(), None);
    assert_eq!(
        store.take_pairing_code("code", t0()).await.unwrap(),
        Some(p.id.clone())
    );
    assert_eq!(store.take_pairing_code("code", t0()).await.unwrap(), None);
});

both_engines!(portal_attempt_reads, |store| {
    let c = store.create_company("Acme", t0()).await.unwrap();
    let app = store
        .create_application(
            &NewApplication {
                company_id: c.id.clone(),
                name: "app".into(),
                issuer: "app.example.com".into(),
                unenrolled: UnenrolledPolicy::Allow,
                account_names: Default::default(),
                default_state: AccountState::Locked,
            },
            t0(),
        )
        .await
        .unwrap();
    let p = person(store, "dan@example.com").await;
    let (acc, _) = store
        .enroll(&app.id, "dan", Some(&p.id), t0(), &by())
        .await
        .unwrap();
    assert_eq!(
        store.account_by_id(&acc.id).await.unwrap(),
        Some(acc.clone())
    );
    assert_eq!(store.account_by_id("nope").await.unwrap(), None);
    let at = |i: i64, account: &str, locked: bool| NewAttempt {
        at: t0() + Duration::minutes(i),
        app_id: app.id.clone(),
        key_id: None,
        account: account.into(),
        locked,
        reason: if locked {
            Reason::AccountLocked
        } else {
            Reason::AccountUnlocked
        },
        ip: Some("192.0.2.1".into()),
        device: None,
        location: None,
        integration_type: None,
        integration_data: None,
    };
    store
        .record_attempts(&AttemptBatch::new(vec![
            at(0, "dan", true),
            at(1, "dan", false),
            at(2, "eve", true),
            at(3, "dan", true),
        ]))
        .await
        .unwrap();
    let all = store
        .filtered_attempts(&app.id, None, None, (None, None), 0, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all[0].id > all[1].id, "newest first");
    let dan_blocked = store
        .filtered_attempts(&app.id, Some("dan"), Some(true), (None, None), 0, 10)
        .await
        .unwrap();
    assert_eq!(dan_blocked.len(), 2);
    let window = store
        .filtered_attempts(
            &app.id,
            None,
            None,
            (
                Some(t0() + Duration::minutes(1)),
                Some(t0() + Duration::minutes(3)),
            ),
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
    let after = store
        .filtered_attempts(&app.id, None, None, (None, None), all[1].id, 10)
        .await
        .unwrap();
    assert_eq!(after, vec![all[0].clone()]);
    let feed = store
        .person_blocked_attempts_after(&p.id, 0, 10)
        .await
        .unwrap();
    assert_eq!(feed.len(), 2);
    assert!(feed[0].id < feed[1].id, "oldest first");
    assert!(store
        .person_blocked_attempts_after(&p.id, feed[1].id, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.attempt(feed[0].id).await.unwrap(),
        Some(feed[0].clone())
    );
});

both_engines!(the_first_operator_is_made_once_and_only_new, |store| {
    let now = t0();
    let link = |hash: &'static str, email: &'static str, expires: Duration| async move {
        store
            .create_link(hash, "operator_setup", email, None, now, now + expires)
            .await
            .unwrap();
    };
    link("h-open", "", Duration::hours(1)).await;
    link("h-named", "named@example.com", Duration::hours(1)).await;
    link("h-old", "", Duration::minutes(1)).await;
    store
        .create_link(
            "h-reset",
            "password_reset",
            "",
            None,
            now,
            now + Duration::hours(1),
        )
        .await
        .unwrap();
    let taken = person(store, "taken@example.com").await;
    let later = now + Duration::minutes(2);
    let make = |hash: &'static str, email: &'static str| {
        store.create_first_operator(hash, email, "$argon2id$hash", later)
    };
    assert_eq!(
        make("h-old", "a@example.com").await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        make("h-reset", "a@example.com").await.unwrap(),
        None,
        "not a first-run link"
    );
    assert_eq!(
        make("h-named", "a@example.com").await.unwrap(),
        None,
        "another email's link"
    );
    assert!(matches!(
        make("h-open", "Taken@example.com").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.password_hash("taken@example.com").await.unwrap(),
        Some((taken.id, None))
    );
    assert!(!store.has_operator().await.unwrap());
    let op = make("h-open", "ops@example.com")
        .await
        .unwrap()
        .expect("made");
    assert_eq!(op.email, "ops@example.com");
    assert_eq!(store.roles(&op.id).await.unwrap()[0].role, "operator");
    assert_eq!(store.email_verified_at(&op.id).await.unwrap(), Some(later));
    // Every first-run link is dead now, the named one too.
    assert_eq!(make("h-open", "b@example.com").await.unwrap(), None);
    assert_eq!(make("h-named", "named@example.com").await.unwrap(), None);
    assert_eq!(store.link("h-named", later).await.unwrap(), None);
    assert!(store
        .person_by_email("b@example.com")
        .await
        .unwrap()
        .is_none());
});

//! Passkeys, ceremonies and the second-factor setting, run on SQLite and on PostgreSQL.

use super::*;
use crate::{NewPerson, StoreError};
use chrono::Duration;

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

fn new<'a>(person_id: &'a str, cred: &'a str, counter: i64) -> NewPasskey<'a> {
    NewPasskey {
        person_id,
        user_handle: "handle-of-ann",
        credential_id: cred,
        name: "Laptop",
        credential: "{}",
        counter,
    }
}

both_engines!(passkeys_belong_to_their_person, |store| {
    let ann = person(store, "ann@example.com").await;
    let bob = person(store, "bob@example.com").await;
    let a = store
        .add_passkey(&new(&ann.id, "cred-a", 0), &by(), t0())
        .await
        .unwrap();
    assert_eq!(
        (a.name.as_str(), a.counter, a.created_at),
        ("Laptop", 0, t0())
    );
    assert!(matches!(
        store
            .add_passkey(&new(&bob.id, "cred-a", 0), &by(), t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.passkeys(&ann.id).await.unwrap(), vec![a.clone()]);
    assert!(store.passkeys(&bob.id).await.unwrap().is_empty());
    assert_eq!(
        store
            .passkeys_by_user_handle("handle-of-ann")
            .await
            .unwrap(),
        vec![a.clone()]
    );
    assert_eq!(store.second_factor(&ann.id).await.unwrap().passkeys, 1);
    // Bob cannot remove Ann's passkey by its id; Ann can.
    assert!(!store
        .remove_passkey(&bob.id, &a.id, &by(), t0())
        .await
        .unwrap());
    assert_eq!(store.passkeys(&ann.id).await.unwrap().len(), 1);
    assert!(store
        .remove_passkey(&ann.id, &a.id, &by(), t0())
        .await
        .unwrap());
    assert!(store.passkeys(&ann.id).await.unwrap().is_empty());
    assert!(!store
        .remove_passkey(&ann.id, &a.id, &by(), t0())
        .await
        .unwrap());
    // Both changes are in Ann's trail, with the passkey's name.
    let trail = store
        .account_audit("", Some(&ann.id), None, 10)
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![AuditAction::PasskeyRemoved, AuditAction::PasskeyAdded]
    );
    assert_eq!(trail[0].detail.as_deref(), Some("Laptop"));
});

both_engines!(a_counter_that_goes_backwards_is_refused, |store| {
    let ann = person(store, "ann@example.com").await;
    let counting = store
        .add_passkey(&new(&ann.id, "counting", 1), &by(), t0())
        .await
        .unwrap();
    let t1 = t0() + Duration::minutes(1);
    assert!(store
        .use_passkey(&counting.id, 5, "{\"n\":5}", t1)
        .await
        .unwrap());
    // The same count again, or a lower one: a copy of the authenticator.
    assert!(!store.use_passkey(&counting.id, 5, "{}", t1).await.unwrap());
    assert!(!store.use_passkey(&counting.id, 3, "{}", t1).await.unwrap());
    assert!(!store.use_passkey(&counting.id, 0, "{}", t1).await.unwrap());
    let kept = &store.passkeys(&ann.id).await.unwrap()[0];
    assert_eq!(
        (kept.counter, kept.credential.as_str(), kept.last_used_at),
        (5, "{\"n\":5}", Some(t1))
    );
    assert!(store.use_passkey(&counting.id, 6, "{}", t1).await.unwrap());
    // An authenticator that keeps no counter shows 0 every time.
    let uncounted = store
        .add_passkey(&new(&ann.id, "uncounted", 0), &by(), t0())
        .await
        .unwrap();
    assert!(store.use_passkey(&uncounted.id, 0, "{}", t1).await.unwrap());
    assert!(store.use_passkey(&uncounted.id, 0, "{}", t1).await.unwrap());
    assert!(!store.use_passkey("no such id", 9, "{}", t1).await.unwrap());
});

both_engines!(ceremonies_expire_and_are_taken_once, |store| {
    let c = Ceremony {
        kind: "registration".into(),
        person_id: Some("p1".into()),
        detail: Some("Laptop".into()),
        state: None,
        expires_at: t0() + Duration::minutes(5),
    };
    store.put_ceremony("h1", &c, t0()).await.unwrap();
    assert_eq!(
        store.ceremony("h1", "registration", t0()).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(store.ceremony("h1", "sign_in", t0()).await.unwrap(), None);
    assert!(store
        .set_ceremony_state("h1", "registration", "{\"s\":1}", t0())
        .await
        .unwrap());
    let taken = store
        .take_ceremony("h1", "registration", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.state.as_deref(), Some("{\"s\":1}"));
    assert_eq!(
        store
            .take_ceremony("h1", "registration", t0())
            .await
            .unwrap(),
        None,
        "taken once"
    );
    // Past its expiry it is gone, for a look as for a take.
    store.put_ceremony("h2", &c, t0()).await.unwrap();
    let late = t0() + Duration::minutes(5);
    assert_eq!(
        store.ceremony("h2", "registration", late).await.unwrap(),
        None
    );
    assert!(!store
        .set_ceremony_state("h2", "registration", "{}", late)
        .await
        .unwrap());
    assert_eq!(
        store
            .take_ceremony("h2", "registration", late)
            .await
            .unwrap(),
        None
    );
});

both_engines!(the_second_factor_setting_and_its_trail, |store| {
    let ann = person(store, "ann@example.com").await;
    assert_eq!(
        store.second_factor(&ann.id).await.unwrap(),
        SecondFactor {
            required: false,
            passkeys: 0
        }
    );
    let operator = AuditBy {
        actor: "operator".into(),
        actor_id: Some(ann.id.clone()),
        actor_name: Some("ann@example.com".into()),
        ip: Some("192.0.2.1".into()),
    };
    assert!(store
        .set_second_factor_required(true, &operator, t0())
        .await
        .unwrap());
    assert!(!store
        .set_second_factor_required(true, &operator, t0())
        .await
        .unwrap());
    assert!(store.second_factor(&ann.id).await.unwrap().required);
    assert!(store
        .set_second_factor_required(false, &operator, t0())
        .await
        .unwrap());
    assert!(!store.second_factor(&ann.id).await.unwrap().required);
    let trail = store.settings_audit(10).await.unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0].by, operator);
    assert_eq!(
        (
            trail[0].old.as_ref().unwrap().state.as_str(),
            trail[0].new.as_ref().unwrap().state.as_str()
        ),
        ("on", "off")
    );
    assert_eq!(trail[1].new.as_ref().unwrap().state, "on");
});

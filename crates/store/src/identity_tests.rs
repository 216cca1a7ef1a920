//! Account identity on both engines: spellings of a name are one account, per application.

use super::*;
use crate::test_support::{by, k, t0};
use crate::{ImportRow, NewApplication};
use deadbolt_core::UnenrolledPolicy;

async fn app(store: &Store, issuer: &str, names: AccountNames) -> crate::Application {
    let c = store.create_company(issuer, t0()).await.unwrap();
    store
        .create_application(
            &NewApplication {
                company_id: c.id,
                name: issuer.into(),
                issuer: issuer.into(),
                unenrolled: UnenrolledPolicy::Allow,
                default_state: AccountState::Unlocked,
                account_names: names,
            },
            t0(),
        )
        .await
        .unwrap()
}

/// Writes an account row as a Deadbolt before account identity did: no lookup key.
async fn legacy_account(store: &Store, app_id: &str, name: &str, state: &str, at: i64) {
    store
        .engine
        .write(
            "INSERT INTO accounts (id, app_id, account, person_id, state, unlocked_until, created_at, updated_at) \
             VALUES ($1, $2, $3, NULL, $4, NULL, $5, $5)",
            vec![
                crate::new_id().into(),
                app_id.into(),
                name.into(),
                state.into(),
                at.into(),
            ],
        )
        .await
        .unwrap();
}

both_engines!(spellings_are_one_account, |store| {
    let a = app(store, "ci.example.com", AccountNames::CaseInsensitive).await;
    let (first, created) = store
        .enroll(&a.id, "Alice@Contoso.com", None, t0(), &by())
        .await
        .unwrap();
    assert!(created);
    let (again, created) = store
        .enroll(&a.id, "alice@CONTOSO.com", None, t0(), &by())
        .await
        .unwrap();
    assert!(!created, "another case is the same account");
    assert_eq!(again.id, first.id);
    assert_eq!(again.account, "Alice@Contoso.com", "kept as first enrolled");

    // A lock through one spelling is read through every other.
    assert!(store
        .set_account_state(
            &a.id,
            &k("ALICE@contoso.com"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by()
        )
        .await
        .unwrap()
        .is_some());
    let inputs = store
        .lock_inputs(&a.id, &k("alice@contoso.com"))
        .await
        .unwrap();
    assert_eq!(inputs.enrolment.unwrap().state, AccountState::Locked);
    assert_eq!(inputs.name.as_deref(), Some("Alice@Contoso.com"));
    assert!(inputs.colliding.is_empty());

    // NFC and NFD spellings of café.
    store
        .enroll(&a.id, "caf\u{e9}", None, t0(), &by())
        .await
        .unwrap();
    let (nfd, created) = store
        .enroll(&a.id, "CAFE\u{301}", None, t0(), &by())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(nfd.account, "caf\u{e9}");

    // Imports: an existing spelling exists; two spellings in one import are one account.
    let row = |name: &str| ImportRow {
        app_id: a.id.clone(),
        account: name.into(),
        email: None,
        first_name: None,
        last_name: None,
        phone: None,
    };
    let created = store
        .import(
            &[row("ALICE@contoso.com"), row("Bob"), row("BOB")],
            t0(),
            &by(),
        )
        .await
        .unwrap();
    assert_eq!(created, vec![false, true, false]);
    let all = store.accounts(&a.id, None, 100).await.unwrap();
    let names: Vec<&str> = all.iter().map(|x| x.account.as_str()).collect();
    assert_eq!(names, vec!["Alice@Contoso.com", "Bob", "caf\u{e9}"]);
    // Search finds names in any case.
    let found = store.accounts(&a.id, Some("bOb"), 100).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].account, "Bob");
});

both_engines!(exact_names_differ_by_case, |store| {
    let a = app(store, "exact.example.com", AccountNames::Exact).await;
    let key = |n: &str| AccountNames::Exact.key(n);
    assert!(
        store
            .enroll(&a.id, "Alice", None, t0(), &by())
            .await
            .unwrap()
            .1
    );
    assert!(
        store
            .enroll(&a.id, "alice", None, t0(), &by())
            .await
            .unwrap()
            .1
    );
    store
        .set_account_state(
            &a.id,
            &key("Alice"),
            AccountState::Locked,
            None,
            t0(),
            crate::AuditAction::Lock,
            &by(),
        )
        .await
        .unwrap();
    let lower = store.lock_inputs(&a.id, &key("alice")).await.unwrap();
    assert_eq!(lower.enrolment.unwrap().state, AccountState::Unlocked);
    assert!(store
        .lock_inputs(&a.id, &key("ALICE"))
        .await
        .unwrap()
        .enrolment
        .is_none());

    // Switching to case-insensitive refuses, naming the names, and changes nothing.
    let err = store
        .set_account_names(&a.id, AccountNames::CaseInsensitive)
        .await
        .unwrap_err();
    let StoreError::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("[Alice, alice]"), "{msg}");
    let still = store.application(&a.id).await.unwrap().unwrap();
    assert_eq!(still.account_names, AccountNames::Exact);
    assert!(store
        .lock_inputs(&a.id, &key("alice"))
        .await
        .unwrap()
        .enrolment
        .is_some());

    // Merged, the switch goes through; the merged account is locked (Alice was).
    let merged = store
        .merge_accounts(&a.id, "Alice", "alice", t0(), &by())
        .await
        .unwrap();
    assert_eq!(merged.account, "Alice");
    assert_eq!(merged.state, AccountState::Locked);
    store
        .set_account_names(&a.id, AccountNames::CaseInsensitive)
        .await
        .unwrap();
    let inputs = store.lock_inputs(&a.id, &k("aLiCe")).await.unwrap();
    assert_eq!(inputs.enrolment.unwrap().state, AccountState::Locked);

    // And back to exact: names compare byte for byte again.
    store
        .set_account_names(&a.id, AccountNames::Exact)
        .await
        .unwrap();
    assert!(store
        .lock_inputs(&a.id, &key("alice"))
        .await
        .unwrap()
        .enrolment
        .is_none());
    assert!(store
        .lock_inputs(&a.id, &key("Alice"))
        .await
        .unwrap()
        .enrolment
        .is_some());
});

both_engines!(
    names_from_before_identity_are_keyed_and_collisions_kept,
    |store| {
        let a = app(store, "legacy.example.com", AccountNames::CaseInsensitive).await;
        legacy_account(store, &a.id, "Bob", "unlocked", 1).await;
        legacy_account(store, &a.id, "bob", "locked", 2).await;
        legacy_account(store, &a.id, "carol", "unlocked", 3).await;
        store.repair_keys().await.unwrap();

        let collisions = store.account_collisions(None).await.unwrap();
        assert_eq!(collisions.len(), 1);
        assert_eq!(collisions[0].names, vec!["Bob", "bob"]);
        assert_eq!(collisions[0].issuer, "legacy.example.com");
        assert_eq!(
            store.account_collisions(Some(&a.id)).await.unwrap(),
            collisions
        );

        // Both spellings are read, the first enrolled first; the other comes along to lock.
        let inputs = store.lock_inputs(&a.id, &k("BOB")).await.unwrap();
        assert_eq!(inputs.name.as_deref(), Some("Bob"));
        assert_eq!(inputs.enrolment.unwrap().state, AccountState::Unlocked);
        assert_eq!(inputs.colliding.len(), 1);
        assert_eq!(
            inputs.colliding[0].enrolment.as_ref().unwrap().state,
            AccountState::Locked
        );
        assert!(store
            .lock_inputs(&a.id, &k("Carol"))
            .await
            .unwrap()
            .enrolment
            .is_some());
        // Keying again changes nothing.
        store.repair_keys().await.unwrap();
        assert_eq!(store.account_collisions(None).await.unwrap(), collisions);

        // A new enrolment of a third spelling is the existing account, not a third one.
        let (acc, created) = store.enroll(&a.id, "BOB", None, t0(), &by()).await.unwrap();
        assert!(!created);
        assert_eq!(acc.account, "Bob");

        // Merging the first spelling away: the survivor is the name's account, and locked.
        let survivor = store
            .merge_accounts(&a.id, "bob", "Bob", t0(), &by())
            .await
            .unwrap();
        assert_eq!(survivor.account, "bob");
        assert_eq!(survivor.state, AccountState::Locked);
        assert!(store.account_collisions(None).await.unwrap().is_empty());
        let inputs = store.lock_inputs(&a.id, &k("Bob")).await.unwrap();
        assert_eq!(inputs.name.as_deref(), Some("bob"));
        assert!(inputs.colliding.is_empty());
        let (acc, created) = store.enroll(&a.id, "BoB", None, t0(), &by()).await.unwrap();
        assert!(!created);
        assert_eq!(acc.account, "bob");

        // Merges that are not spellings of one name, or of one account, are refused.
        assert!(matches!(
            store
                .merge_accounts(&a.id, "bob", "carol", t0(), &by())
                .await,
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store.merge_accounts(&a.id, "bob", "bob", t0(), &by()).await,
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store
                .merge_accounts(&a.id, "bob", "nobody", t0(), &by())
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
);

both_engines!(issuers_from_older_rules_are_renormalised, |store| {
    let a = app(
        store,
        "https://old.example.com:443",
        AccountNames::CaseInsensitive,
    )
    .await;
    store
        .engine
        .write(
            "UPDATE applications SET issuer_norm = $1 WHERE id = $2",
            vec!["old.example.com:443".into(), a.id.as_str().into()],
        )
        .await
        .unwrap();
    assert!(store
        .application_by_issuer("old.example.com")
        .await
        .unwrap()
        .is_none());
    store.repair_keys().await.unwrap();
    assert_eq!(
        store
            .application_by_issuer("old.example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
});

/// Looking for accounts without a key (at every open) reads only those, through the partial
/// index, instead of every account.
#[tokio::test]
async fn the_look_for_unkeyed_accounts_reads_the_partial_index() {
    let (store, _dir) = crate::testing::fresh_sqlite().await;
    let plan: Vec<String> = store
        .engine
        .query(
            const_format::concatcp!("EXPLAIN QUERY PLAN ", super::UNKEYED_SQL),
            vec![],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(3).unwrap())
        .collect();
    assert!(
        plan.iter()
            .any(|p| p.contains("SCAN a USING INDEX accounts_unkeyed")),
        "{plan:?}"
    );
}

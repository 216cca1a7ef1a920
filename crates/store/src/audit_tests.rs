//! The audit trail, run on SQLite and on PostgreSQL: every change writes its row with the
//! state before and after, in the change's transaction; pages go newest first.

use super::*;
use crate::test_support::{k, t0};
use crate::{ImportRow, NewApplication, NewPerson, ScheduleOwner};
use chrono::Duration;
use deadbolt_core::{AccountState, Schedule, UnenrolledPolicy};

async fn setup(store: &Store) -> (crate::Application, crate::Person) {
    let c = store.create_company("Acme", t0()).await.unwrap();
    let app = store
        .create_application(
            &NewApplication {
                company_id: c.id,
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
    let person = store
        .create_person(
            &NewPerson {
                email: "pat@example.com".into(),
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
    (app, person)
}

fn admin() -> AuditBy {
    AuditBy {
        actor: "admin".into(),
        actor_id: Some("admin-id".into()),
        actor_name: Some("boss@example.com".into()),
        ip: Some("203.0.113.9".into()),
    }
}

both_engines!(
    audit_records_account_changes_with_before_and_after,
    |store| {
        let (app, person) = setup(store).await;
        let by = admin();
        let (acc, created) = store
            .enroll(&app.id, "Pat", Some(&person.id), t0(), &by)
            .await
            .unwrap();
        assert!(created);
        // Enrolling it again changes nothing and records nothing.
        store
            .enroll(&app.id, "pat", Some(&person.id), t0(), &by)
            .await
            .unwrap();
        let until = t0() + Duration::minutes(15);
        store
            .set_account_state(
                &app.id,
                &k("pat"),
                AccountState::Locked,
                Some(until),
                t0() + Duration::seconds(1),
                AuditAction::UnlockWindow,
                &by,
            )
            .await
            .unwrap()
            .unwrap();
        store
            .unlock_once(&app.id, &k("PAT"), t0() + Duration::seconds(2), &by)
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .relock_after_use(&app.id, &k("pat"), t0() + Duration::seconds(3))
            .await
            .unwrap());
        // The second use finds nothing to relock and records nothing.
        assert!(!store
            .relock_after_use(&app.id, &k("pat"), t0() + Duration::seconds(4))
            .await
            .unwrap());
        // An account that is not enrolled: no change, no row.
        assert!(store
            .set_account_state(
                &app.id,
                &k("nobody"),
                AccountState::Locked,
                None,
                t0(),
                AuditAction::Lock,
                &by
            )
            .await
            .unwrap()
            .is_none());

        let trail = store
            .account_audit(&acc.id, Some(&person.id), None, 10)
            .await
            .unwrap();
        let actions: Vec<AuditAction> = trail.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            vec![
                AuditAction::RelockAfterUse,
                AuditAction::UnlockOnce,
                AuditAction::UnlockWindow,
                AuditAction::Enrol,
            ]
        );
        let window = &trail[2];
        assert_eq!(window.by, by);
        assert_eq!(window.account.as_deref(), Some("Pat"));
        assert_eq!(window.person_id.as_deref(), Some(person.id.as_str()));
        assert_eq!(window.app_id.as_deref(), Some(app.id.as_str()));
        assert_eq!(window.old, Some(AuditState::new("locked", None, false)));
        assert_eq!(
            window.new,
            Some(AuditState::new("locked", Some(until), false))
        );
        assert_eq!(
            trail[1].old,
            Some(AuditState::new("locked", Some(until), false))
        );
        assert_eq!(trail[1].new, Some(AuditState::new("unlocked", None, true)));
        assert_eq!(trail[0].by.actor, "check");
        assert_eq!(trail[0].old, Some(AuditState::new("unlocked", None, true)));
        assert_eq!(trail[0].new, Some(AuditState::new("locked", None, false)));
        assert_eq!(trail[3].old, None);
        assert_eq!(trail[3].new, Some(AuditState::new("locked", None, false)));

        // Pages: newest first, then below the last id seen.
        let first = store.app_audit(&app.id, None, 2).await.unwrap();
        assert_eq!(first.len(), 2);
        let rest = store
            .app_audit(&app.id, Some(first[1].id), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 2);
        assert!(rest[0].id < first[1].id);
    }
);

both_engines!(
    audit_records_person_changes_schedules_imports_and_merges,
    |store| {
        let (app, person) = setup(store).await;
        let me = AuditBy {
            actor: "person".into(),
            actor_id: Some(person.id.clone()),
            actor_name: None,
            ip: Some("198.51.100.7".into()),
        };
        store
            .set_master_lock(&person.id, true, t0(), &me)
            .await
            .unwrap();
        store
            .set_master_lock(&person.id, false, t0(), &me)
            .await
            .unwrap();
        assert!(matches!(
            store.set_master_lock("nobody", true, t0(), &me).await,
            Err(StoreError::NotFound(_))
        ));
        let created = store
            .import(
                &[ImportRow {
                    app_id: app.id.clone(),
                    account: "pat".into(),
                    email: Some("pat@example.com".into()),
                    first_name: None,
                    last_name: None,
                    phone: None,
                }],
                t0(),
                &admin(),
            )
            .await
            .unwrap();
        assert_eq!(created, vec![true]);
        let acc = store.account(&app.id, &k("pat")).await.unwrap().unwrap();
        let weekdays = Schedule::parse("weekdays", "22:00-06:00").unwrap();
        store
            .add_schedule(
                &ScheduleOwner::Person(person.id.clone()),
                weekdays,
                t0(),
                &me,
            )
            .await
            .unwrap();
        let one = store
            .add_schedule(
                &ScheduleOwner::Account {
                    person_id: Some(person.id.clone()),
                    account_id: acc.id.clone(),
                },
                weekdays,
                t0(),
                &me,
            )
            .await
            .unwrap();
        store.delete_schedule(&one.id, t0(), &me).await.unwrap();
        assert!(matches!(
            store.delete_schedule(&one.id, t0(), &me).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store
                .add_schedule(
                    &ScheduleOwner::Account {
                        person_id: None,
                        account_id: "missing".into()
                    },
                    weekdays,
                    t0(),
                    &me
                )
                .await,
            Err(StoreError::NotFound(_))
        ));

        let trail = store
            .account_audit(&acc.id, Some(&person.id), None, 50)
            .await
            .unwrap();
        let actions: Vec<AuditAction> = trail.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            vec![
                AuditAction::ScheduleRemoved,
                AuditAction::ScheduleAdded,
                AuditAction::ScheduleAdded,
                AuditAction::Enrol,
                AuditAction::LockAllOff,
                AuditAction::LockAllOn,
            ]
        );
        assert_eq!(
            trail[0].detail.as_deref(),
            Some("Weekdays 22:00\u{2013}06:00")
        );
        assert_eq!(trail[0].account.as_deref(), Some("pat"));
        assert_eq!(trail[2].account_id, None, "the schedule of all accounts");
        assert_eq!(trail[3].by.actor, "admin");
        assert_eq!(trail[5].old, Some(AuditState::new("off", None, false)));
        assert_eq!(trail[5].new, Some(AuditState::new("on", None, false)));
        assert_eq!(trail[5].by.ip.as_deref(), Some("198.51.100.7"));
        // Person-wide changes are the person's, not the application's.
        let app_trail = store.app_audit(&app.id, None, 50).await.unwrap();
        assert_eq!(app_trail.len(), 3);

        // A merge records the survivor's state before and after, and the name merged away.
        store
            .set_account_names(&app.id, deadbolt_core::AccountNames::Exact)
            .await
            .unwrap();
        store
            .enroll(&app.id, "PAT", None, t0(), &admin())
            .await
            .unwrap();
        store
            .set_account_state(
                &app.id,
                &deadbolt_core::AccountNames::Exact.key("PAT"),
                AccountState::Unlocked,
                None,
                t0(),
                AuditAction::Unlock,
                &admin(),
            )
            .await
            .unwrap();
        store
            .merge_accounts(
                &app.id,
                "pat",
                "PAT",
                t0(),
                &AuditBy {
                    actor: "cli".into(),
                    ..AuditBy::default()
                },
            )
            .await
            .unwrap();
        let merged = store.app_audit(&app.id, None, 1).await.unwrap();
        assert_eq!(merged[0].action, AuditAction::Merge);
        assert_eq!(merged[0].account_id.as_deref(), Some(acc.id.as_str()));
        assert_eq!(merged[0].detail.as_deref(), Some("PAT"));
        assert_eq!(merged[0].by.actor, "cli");
        assert_eq!(merged[0].new, Some(AuditState::new("locked", None, false)));
    }
);

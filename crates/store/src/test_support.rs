//! What the store's test suites share: a fixed time and a macro running a test on both engines.

use chrono::{DateTime, TimeZone, Utc};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

/// Runs `$body` against a fresh SQLite store and a fresh PostgreSQL database.
macro_rules! both_engines {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = $crate::testing::fresh_sqlite().await;
                let $store = &store;
                $body
            }
            #[tokio::test]
            async fn postgres() {
                let Some(admin) = $crate::testing::pg_admin_url() else {
                    return;
                };
                let url = $crate::testing::fresh_pg_url(&admin).await.unwrap();
                let store = $crate::Store::open(&url).await.unwrap();
                let $store = &store;
                $body
            }
        }
    };
}

/// The lookup key of `name` in an application with the default (case-insensitive) names.
pub fn k(name: &str) -> deadbolt_core::AccountKey {
    deadbolt_core::AccountNames::CaseInsensitive.key(name)
}

/// Who the suites' changes are made by (the audit trail's own suite names others).
pub fn by() -> crate::AuditBy {
    crate::AuditBy {
        actor: "cli".into(),
        ..Default::default()
    }
}

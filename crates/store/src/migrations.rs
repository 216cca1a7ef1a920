//! Versioned schema migrations, embedded in the binary and applied at start. An applied
//! migration is never edited: changes go in a new numbered file, written for both engines.

pub struct Migration {
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        name: "0002_portal",
        sqlite: include_str!("../migrations/sqlite/0002_portal.sql"),
        postgres: include_str!("../migrations/postgres/0002_portal.sql"),
    },
    Migration {
        name: "0003_relock",
        sqlite: include_str!("../migrations/sqlite/0003_relock.sql"),
        postgres: include_str!("../migrations/postgres/0003_relock.sql"),
    },
    Migration {
        name: "0004_attempt_runs",
        sqlite: include_str!("../migrations/sqlite/0004_attempt_runs.sql"),
        postgres: include_str!("../migrations/postgres/0004_attempt_runs.sql"),
    },
    Migration {
        name: "0005_attempts_in_runs",
        sqlite: include_str!("../migrations/sqlite/0005_attempts_in_runs.sql"),
        postgres: include_str!("../migrations/postgres/0005_attempts_in_runs.sql"),
    },
    Migration {
        name: "0006_account_identity",
        sqlite: include_str!("../migrations/sqlite/0006_account_identity.sql"),
        postgres: include_str!("../migrations/postgres/0006_account_identity.sql"),
    },
    Migration {
        name: "0008_change_log",
        sqlite: include_str!("../migrations/sqlite/0008_change_log.sql"),
        postgres: include_str!("../migrations/postgres/0008_change_log.sql"),
    },
    Migration {
        name: "0009_unkeyed_accounts",
        sqlite: include_str!("../migrations/sqlite/0009_unkeyed_accounts.sql"),
        postgres: include_str!("../migrations/postgres/0009_unkeyed_accounts.sql"),
    },
    Migration {
        name: "0010_throttle",
        sqlite: include_str!("../migrations/sqlite/0010_throttle.sql"),
        postgres: include_str!("../migrations/postgres/0010_throttle.sql"),
    },
    Migration {
        name: "0011_position_in_notifications",
        sqlite: include_str!("../migrations/sqlite/0011_position_in_notifications.sql"),
        postgres: include_str!("../migrations/postgres/0011_position_in_notifications.sql"),
    },
    Migration {
        name: "0012_form_tokens",
        sqlite: include_str!("../migrations/sqlite/0012_form_tokens.sql"),
        postgres: include_str!("../migrations/postgres/0012_form_tokens.sql"),
    },
    Migration {
        name: "0013_audit_trail",
        sqlite: include_str!("../migrations/sqlite/0013_audit_trail.sql"),
        postgres: include_str!("../migrations/postgres/0013_audit_trail.sql"),
    },
    Migration {
        name: "0014_key_labels",
        sqlite: include_str!("../migrations/sqlite/0014_key_labels.sql"),
        postgres: include_str!("../migrations/postgres/0014_key_labels.sql"),
    },
    Migration {
        name: "0015_attempt_retention",
        sqlite: include_str!("../migrations/sqlite/0015_attempt_retention.sql"),
        postgres: include_str!("../migrations/postgres/0015_attempt_retention.sql"),
    },
    Migration {
        name: "0016_alerts",
        sqlite: include_str!("../migrations/sqlite/0016_alerts.sql"),
        postgres: include_str!("../migrations/postgres/0016_alerts.sql"),
    },
    Migration {
        name: "0017_passkeys",
        sqlite: include_str!("../migrations/sqlite/0017_passkeys.sql"),
        postgres: include_str!("../migrations/postgres/0017_passkeys.sql"),
    },
    Migration {
        name: "0018_alert_event_packs",
        sqlite: include_str!("../migrations/sqlite/0018_alert_event_packs.sql"),
        postgres: include_str!("../migrations/postgres/0018_alert_event_packs.sql"),
    },
    Migration {
        name: "0019_alert_queue_lease",
        sqlite: include_str!("../migrations/sqlite/0019_alert_queue_lease.sql"),
        postgres: include_str!("../migrations/postgres/0019_alert_queue_lease.sql"),
    },
    Migration {
        name: "0020_applied_notifications",
        sqlite: include_str!("../migrations/sqlite/0020_applied_notifications.sql"),
        postgres: include_str!("../migrations/postgres/0020_applied_notifications.sql"),
    },
    Migration {
        name: "0021_own_changes_at_hand",
        sqlite: include_str!("../migrations/sqlite/0021_own_changes_at_hand.sql"),
        postgres: include_str!("../migrations/postgres/0021_own_changes_at_hand.sql"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(engine);
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn both_engines_have_the_same_migrations_and_all_are_embedded() {
        let embedded: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_string()).collect();
        assert_eq!(names("sqlite"), embedded);
        assert_eq!(names("postgres"), embedded);
        let mut sorted = embedded.clone();
        sorted.sort();
        assert_eq!(sorted, embedded, "migrations apply in name order");
    }
}

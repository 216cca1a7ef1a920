//! Who makes a change, as every change operation of the service is told, and the audit trail
//! it leaves: the store writes each row in the transaction of the change it records.

use deadbolt_store::{AuditBy, AuditEntry};

use super::Service;
use crate::error::Result;

/// Who asks for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The person the account belongs to, in the portal.
    Person { id: String },
    /// An admin of the application's company, in the portal.
    Admin { person_id: String, email: String },
    /// The server's operator, in the portal.
    Operator { person_id: String, email: String },
    /// A company back end, by its SDK key.
    Sdk { key_id: String },
    /// The operator's command line on the server.
    Cli,
}

/// An actor and the client address the request came from (portal and SDK requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    pub actor: Actor,
    pub from: Option<String>,
}

impl By {
    /// The command line: no client address.
    pub const CLI: By = By {
        actor: Actor::Cli,
        from: None,
    };

    pub fn new(actor: Actor, from: Option<String>) -> Self {
        Self {
            actor,
            from: from.filter(|f| !f.is_empty()),
        }
    }

    /// The person's own id, when the change is the person's.
    pub fn person_id(&self) -> Option<&str> {
        match &self.actor {
            Actor::Person { id } => Some(id),
            _ => None,
        }
    }

    /// As the trail keeps it.
    pub(super) fn record(&self) -> AuditBy {
        let (actor, id, name) = match &self.actor {
            Actor::Person { id } => ("person", Some(id.clone()), None),
            Actor::Admin { person_id, email } => {
                ("admin", Some(person_id.clone()), Some(email.clone()))
            }
            Actor::Operator { person_id, email } => {
                ("operator", Some(person_id.clone()), Some(email.clone()))
            }
            Actor::Sdk { key_id } => ("sdk", Some(key_id.clone()), None),
            Actor::Cli => ("cli", None, None),
        };
        AuditBy {
            actor: actor.into(),
            actor_id: id,
            actor_name: name,
            ip: self.from.clone(),
        }
    }
}

/// The most rows one page of the trail holds.
pub const AUDIT_PAGE_MAX: i64 = 200;

impl Service {
    /// The trail of one account, with its person's changes to all their accounts: newest
    /// first, up to `limit` rows older than the row `before`.
    pub async fn account_audit(
        &self,
        account_id: &str,
        person_id: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        Ok(self
            .store
            .account_audit(
                account_id,
                person_id,
                before,
                limit.clamp(1, AUDIT_PAGE_MAX),
            )
            .await?)
    }

    /// The trail of an application's accounts: newest first, up to `limit` rows older than
    /// the row `before`.
    pub async fn app_audit(
        &self,
        app_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        Ok(self
            .store
            .app_audit(app_id, before, limit.clamp(1, AUDIT_PAGE_MAX))
            .await?)
    }
}

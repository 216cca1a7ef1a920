//! `deadbolt operator`: the portal's operator account, created here or by a one-time link.

use serde::Serialize;
use serde_json::Value;

use super::{view, OperatorCmd};
use crate::ops::Deadbolt;

pub(super) async fn run(db: &Deadbolt, cmd: &OperatorCmd) -> anyhow::Result<Value> {
    match cmd {
        OperatorCmd::Create { email, password } => view(create(db, email, password).await?),
        OperatorCmd::Invite { email, public_url } => view(invite(db, email, public_url).await?),
    }
}

/// The operator's person.
#[derive(Serialize)]
struct Operator {
    email: String,
    id: String,
}

async fn create(db: &Deadbolt, email: &str, password: &str) -> anyhow::Result<Operator> {
    let p = crate::portal::create_operator(db, email, password).await?;
    Ok(Operator {
        email: p.email,
        id: p.id,
    })
}

#[derive(Serialize)]
struct Invitation {
    link: String,
}

async fn invite(db: &Deadbolt, email: &str, public_url: &str) -> anyhow::Result<Invitation> {
    Ok(Invitation {
        link: crate::portal::invite_operator(db, public_url, email).await?,
    })
}

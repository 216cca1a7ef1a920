//! `deadbolt operator`: the portal's operator account, created here or by a one-time link.

use serde::Serialize;
use serde_json::Value;

use super::{view, OperatorCmd};
use crate::service::Service;

pub(super) async fn run(service: &Service, cmd: &OperatorCmd) -> anyhow::Result<Value> {
    match cmd {
        OperatorCmd::Create { email, password } => view(create(service, email, password).await?),
        OperatorCmd::Invite { email, public_url } => {
            view(invite(service, email, public_url).await?)
        }
    }
}

/// The operator's person.
#[derive(Serialize)]
struct Operator {
    email: String,
    id: String,
}

async fn create(service: &Service, email: &str, password: &str) -> anyhow::Result<Operator> {
    let p = crate::portal::create_operator(service, email, password).await?;
    Ok(Operator {
        email: p.email,
        id: p.id,
    })
}

#[derive(Serialize)]
struct Invitation {
    link: String,
}

async fn invite(service: &Service, email: &str, public_url: &str) -> anyhow::Result<Invitation> {
    Ok(Invitation {
        link: crate::portal::invite_operator(service, public_url, email).await?,
    })
}

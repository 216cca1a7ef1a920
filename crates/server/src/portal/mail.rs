//! Outgoing email: sign-up links, invitations and password resets. Without SMTP settings the
//! messages go to the server log, so a fresh install can still be set up.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct MailConfig {
    /// `smtp://host:port`: a relay on this host or its network, without TLS or credentials.
    /// `None` writes messages to the log.
    pub smtp_url: Option<String>,
    /// The sender, `Deadbolt <deadbolt@example.com>`.
    pub from: Option<String>,
}

pub enum Mailer {
    Log,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Self {
        let Some(url) = &config.smtp_url else {
            tracing::info!(
                "no SMTP server configured (DEADBOLT_SMTP_URL): emails are written to the log"
            );
            return Mailer::Log;
        };
        let from = config
            .from
            .as_deref()
            .unwrap_or("Deadbolt <deadbolt@localhost>")
            .parse::<Mailbox>();
        let transport = smtp_transport(url);
        match (transport, from) {
            (Ok(transport), Ok(from)) => Mailer::Smtp { transport, from },
            (Err(e), _) => {
                tracing::error!(error = %e, "invalid DEADBOLT_SMTP_URL: emails are written to the log");
                Mailer::Log
            }
            (_, Err(e)) => {
                tracing::error!(error = %e, "invalid DEADBOLT_MAIL_FROM: emails are written to the log");
                Mailer::Log
            }
        }
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        match self {
            Mailer::Log => {
                tracing::info!(to, subject, "email (no SMTP server configured):\n{body}");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = to
                    .parse()
                    .map_err(|_| Error::Invalid(format!("invalid email address {to:?}")))?;
                let msg = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    .body(body)
                    .map_err(|e| Error::Unavailable(format!("cannot build email: {e}")))?;
                transport
                    .send(msg)
                    .await
                    .map_err(|e| Error::Unavailable(format!("cannot send email: {e}")))?;
                Ok(())
            }
        }
    }
}

/// `smtp://host:port` without TLS; anything else is refused (TLS relays are not built in yet).
fn smtp_transport(url: &str) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let rest = url
        .strip_prefix("smtp://")
        .ok_or_else(|| "only smtp://host:port is supported".to_string())?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?}"))?,
        ),
        None => (rest, 25),
    };
    if host.is_empty() || host.contains('@') {
        return Err("write smtp://host:port".into());
    }
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build(),
    )
}

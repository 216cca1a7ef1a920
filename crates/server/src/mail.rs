//! Outgoing email: the portal's sign-up links, invitations and password resets, and the alert
//! worker's alerts (one mailer, made once, shared by both). Without SMTP settings the messages
//! go to the server log, so a fresh install can still be set up.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct MailConfig {
    /// `smtp://host:port` (plain: a relay on this host or its network),
    /// `smtp+starttls://[user:password@]host:587` (STARTTLS, required) or
    /// `smtps://[user:password@]host:465` (TLS from the first byte). `None` writes messages to
    /// the log.
    pub smtp_url: Option<String>,
    /// The sender, `Deadbolt <deadbolt@example.com>`.
    pub from: Option<String>,
    /// Credentials for the relay, when not in the URL (`--smtp-user`, `--smtp-password`).
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password, in the URL or beside it.
impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field("smtp_url", &self.smtp_url.as_deref().map(redacted_url))
            .field("from", &self.from)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A relay URL with its password (if any) replaced, for logs.
pub fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<not a URL>".to_string(),
    }
}

#[derive(Clone)]
pub enum Mailer {
    Log,
    Smtp {
        /// Boxed: with TLS the transport is large, and `Log` is the other variant.
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
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
        let transport = smtp_transport(url, config.user.as_deref(), config.password.as_deref());
        match (transport, from) {
            (Ok(transport), Ok(from)) => Mailer::Smtp {
                transport: Box::new(transport),
                from,
            },
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

/// How the relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls,
    Tls,
}

/// The transport a relay URL names: `smtp://` (plain), `smtp+starttls://` (STARTTLS,
/// required: a relay that does not offer it is not sent the credentials or the message) or
/// `smtps://` (TLS from the start). Credentials from the URL win over `user`/`password`.
fn smtp_transport(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let (security, default_port) = if url.starts_with("smtp://") {
        (Security::Plain, 25)
    } else if url.starts_with("smtp+starttls://") {
        (Security::StartTls, 587)
    } else if url.starts_with("smtps://") {
        (Security::Tls, 465)
    } else {
        return Err(
            "write smtp://host:port, smtp+starttls://user:password@host:587 or smtps://user:password@host:465"
                .into(),
        );
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_string())?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "the URL names no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port().unwrap_or(default_port);
    let url_user = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
    let url_password = parsed.password().map(percent_decode);
    let credentials = match (
        url_user.or(user.map(str::to_string)),
        url_password.or(password.map(str::to_string)),
    ) {
        (Some(u), Some(p)) => Some(Credentials::new(u, p)),
        (Some(_), None) => return Err("a user without a password (DEADBOLT_SMTP_PASSWORD)".into()),
        (None, Some(_)) => return Err("a password without a user (--smtp-user)".into()),
        (None, None) => None,
    };
    let builder = match security {
        Security::Plain => {
            if credentials.is_some() {
                tracing::warn!("SMTP credentials are sent without TLS (smtp://): use smtp+starttls:// or smtps:// beyond a local relay");
            }
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        }
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
            .map_err(|e| format!("TLS set-up: {e}"))?,
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|e| format!("TLS set-up: {e}"))?,
    };
    let mut builder = builder
        .port(port)
        .timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(c) = credentials {
        builder = builder.credentials(c);
    }
    Ok(builder.build())
}

/// `%XX` escapes of a URL's user or password, decoded (a password may hold `@` or `:`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 3) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value the signing-in client chose, for a plain-text email: one line, bounded.
pub fn field(v: &Option<String>) -> String {
    match v.as_deref() {
        None | Some("") => "unknown".into(),
        Some(v) => {
            let line: String = v
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            deadbolt_core::body::bounded(&line, 200)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        assert!(smtp_transport("smtp://127.0.0.1:2525", None, None).is_ok());
        assert!(smtp_transport("smtp://mail.example.com", None, None).is_ok());
        assert!(smtp_transport("smtp+starttls://u:p@mail.example.com:587", None, None).is_ok());
        assert!(smtp_transport("smtps://mail.example.com", Some("u"), Some("p")).is_ok());
        assert!(smtp_transport("http://mail.example.com", None, None).is_err());
        assert!(smtp_transport("smtps://u@mail.example.com", None, None).is_err());
        assert!(smtp_transport("smtp://", None, None).is_err());
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn the_password_is_never_printed() {
        let c = MailConfig {
            smtp_url: Some("smtps://me:hunter2secret@mail.example.com".into()),
            from: None,
            user: Some("me".into()),
            password: Some("other-secret-pw".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2secret") && !shown.contains("other-secret-pw"),
            "{shown}"
        );
        assert!(shown.contains("mail.example.com"), "{shown}");
    }
}

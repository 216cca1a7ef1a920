//! Alerts and webhooks as the service keeps them: the worker's cursor and outboxes, the alert
//! emails' one-time links, the per-account switch, and companies' webhooks with their secrets
//! (encrypted under the master key like signing keys: they must be read back to sign).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use deadbolt_store::{
    AlertEvent, AlertLink, AlertMail, Attempt, Delivery, NewAlertLink, NewDelivery, Webhook,
};
use rand::RngCore;

use super::Service;
use crate::crypto::token_hash;
use crate::error::{Error, Result};

/// How long an alert email's links work.
pub const ALERT_LINK_DAYS: i64 = 3;
/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// What an alert link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLinkPurpose {
    /// "This was me": leads to the account's unlock choices (after signing in).
    WasMe,
    /// "This wasn't me": a confirmation, then lock everything and tell the company.
    NotMe,
}

impl AlertLinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLinkPurpose::WasMe => "was_me",
            AlertLinkPurpose::NotMe => "not_me",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "was_me" => Some(AlertLinkPurpose::WasMe),
            "not_me" => Some(AlertLinkPurpose::NotMe),
            _ => None,
        }
    }
}

/// A webhook URL as a company admin typed it, if it is one: http or https, with a host, at
/// most [`MAX_WEBHOOK_URL`] bytes, nothing a URL does not hold.
pub fn valid_webhook_url(url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::Invalid("Give the webhook's URL.".into()));
    }
    if url.len() > MAX_WEBHOOK_URL {
        return Err(Error::Invalid(format!(
            "A webhook URL is at most {MAX_WEBHOOK_URL} characters."
        )));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    {
        return Err(Error::Invalid(
            "A webhook URL cannot contain spaces, control characters or <>\".".into(),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| Error::Invalid("Write the webhook's full URL: https://…".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Invalid(
            "A webhook URL starts with https:// (or http://) and names a host.".into(),
        ));
    }
    Ok(parsed.to_string())
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl Service {
    pub async fn alert_cursor(&self) -> Result<i64> {
        Ok(self.store.alert_cursor().await?)
    }

    /// Takes or renews `holder`'s lease on queueing alerts for `lease` from now.
    pub async fn take_alert_queue(&self, holder: &str, lease: chrono::Duration) -> Result<bool> {
        let now = self.now();
        Ok(self
            .store
            .take_alert_queue(holder, now, now + lease)
            .await?)
    }

    pub async fn release_alert_queue(&self, holder: &str) -> Result<()> {
        Ok(self.store.release_alert_queue(holder).await?)
    }

    pub async fn blocked_attempts_after_id(
        &self,
        after: i64,
        runs: i64,
    ) -> Result<(Vec<Attempt>, i64, bool)> {
        Ok(self.store.blocked_attempts_after_id(after, runs).await?)
    }

    /// Queues emails and deliveries for the attempts in `span` and moves the cursor past
    /// them, in one transaction; `false` when another worker took them first. `counted`: per
    /// account, the latest of sign-ins told of by their number only, and that number.
    pub async fn queue_alerts(
        &self,
        span: (i64, i64),
        events: &[AlertEvent],
        counted: &[(AlertEvent, i64)],
        deliveries: &[NewDelivery],
        window: Duration,
    ) -> Result<bool> {
        Ok(self
            .store
            .queue_alerts(span, events, counted, deliveries, self.now(), window)
            .await?)
    }

    pub async fn claim_alert_mails(&self, lease: Duration, limit: i64) -> Result<Vec<AlertMail>> {
        let now = self.now();
        Ok(self
            .store
            .claim_alert_mails(now, now + lease, limit)
            .await?)
    }

    pub async fn alert_mail_events(&self, mail: &AlertMail) -> Result<Vec<AlertEvent>> {
        Ok(self.store.alert_mail_events(mail).await?)
    }

    /// Emails sent, each with the last attempt it told of, recorded in one transaction.
    pub async fn alert_mails_sent(&self, sent: &[(String, i64)], window: Duration) -> Result<()> {
        Ok(self
            .store
            .alert_mails_sent(sent, self.now(), window)
            .await?)
    }

    pub async fn alert_mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self.store.alert_mail_failed(id, error, retry_at).await?)
    }

    pub async fn unsent_alert_mails(&self) -> Result<i64> {
        Ok(self.store.unsent_alert_mails().await?)
    }

    pub async fn set_alerts(&self, account_id: &str, on: bool) -> Result<()> {
        Ok(self.store.set_alerts(account_id, on, self.now()).await?)
    }

    /// Enrolled accounts (application id, account key) and whether their alerts are on, in
    /// one read: `None` for a key no account has.
    pub async fn accounts_and_alerts(
        &self,
        slots: &[(&str, &deadbolt_core::AccountKey)],
    ) -> Result<Vec<Option<(deadbolt_store::Account, bool)>>> {
        Ok(self.store.accounts_and_alerts(slots).await?)
    }

    pub async fn alerts_on(&self, account_id: &str) -> Result<bool> {
        Ok(self.store.alerts_on(account_id).await?)
    }

    /// One-time links for alert emails, stored in one transaction: the tokens to put in the
    /// URLs, in order (only their hashes are kept).
    pub async fn create_alert_links(
        &self,
        links: &[(AlertLinkPurpose, &str, &str, i64)],
    ) -> Result<Vec<String>> {
        let now = self.now();
        let tokens: Vec<String> = links.iter().map(|_| random_token()).collect();
        let rows: Vec<NewAlertLink> = links
            .iter()
            .zip(&tokens)
            .map(
                |((purpose, person_id, account_id, attempt_id), token)| NewAlertLink {
                    token_hash: token_hash(token),
                    purpose: purpose.as_str(),
                    person_id: person_id.to_string(),
                    account_id: account_id.to_string(),
                    attempt_id: *attempt_id,
                    created_at: now,
                    expires_at: now + Duration::days(ALERT_LINK_DAYS),
                },
            )
            .collect();
        self.store.create_alert_links(&rows).await?;
        Ok(tokens)
    }

    /// The alert link of `token` while it can be used; `take` uses it up.
    pub async fn alert_link(&self, token: &str, take: bool) -> Result<Option<AlertLink>> {
        let hash = token_hash(token);
        let now = self.now();
        Ok(if take {
            self.store.take_alert_link(&hash, now).await?
        } else {
            self.store.alert_link(&hash, now).await?
        })
    }

    /// Sets a company's webhook to `url` with a new secret, returned once.
    pub async fn set_webhook(&self, company_id: &str, url: &str) -> Result<String> {
        let url = valid_webhook_url(url)?;
        self.company(company_id).await?;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let secret = format!("whsec_{}", URL_SAFE_NO_PAD.encode(b));
        // The ciphertext is bound to the webhook's id, as a signing key's is to its own.
        let id = uuid::Uuid::new_v4().to_string();
        let enc = self.master_key.encrypt(&id, secret.as_bytes())?;
        self.store
            .set_webhook(company_id, &id, &url, &enc, self.now())
            .await?;
        Ok(secret)
    }

    /// A company's webhook (its secret stays encrypted).
    pub async fn webhook(&self, company_id: &str) -> Result<Option<Webhook>> {
        Ok(self.store.webhook(company_id).await?)
    }

    /// A company's webhook URL and its secret, to sign a delivery with.
    pub async fn webhook_signing(&self, company_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let Some(w) = self.store.webhook(company_id).await? else {
            return Ok(None);
        };
        let secret = self.master_key.decrypt(&w.id, &w.secret_enc)?;
        Ok(Some((w.url, secret)))
    }

    pub async fn delete_webhook(&self, company_id: &str) -> Result<()> {
        Ok(self.store.delete_webhook(company_id).await?)
    }

    pub async fn claim_deliveries(&self, lease: Duration, limit: i64) -> Result<Vec<Delivery>> {
        let now = self.now();
        Ok(self.store.claim_deliveries(now, now + lease, limit).await?)
    }

    pub async fn delivery_tried(
        &self,
        id: &str,
        state: &str,
        status: Option<i64>,
        error: Option<&str>,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        Ok(self
            .store
            .delivery_tried(id, state, status, error, self.now(), retry_at)
            .await?)
    }

    /// Forgets expired alert links, and emails and deliveries done more than `keep` ago.
    pub async fn prune_alerts(&self, keep: Duration) -> Result<u64> {
        let now = self.now();
        Ok(self.store.prune_alerts(now, now - keep).await?)
    }

    pub async fn deliveries(&self, company_id: &str, limit: i64) -> Result<Vec<Delivery>> {
        Ok(self
            .store
            .deliveries(company_id, limit.clamp(1, 500))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert_eq!(
            valid_webhook_url(" https://hooks.example.com/deadbolt ").unwrap(),
            "https://hooks.example.com/deadbolt"
        );
        assert!(valid_webhook_url("http://127.0.0.1:8080/x").is_ok());
        for bad in [
            "",
            "javascript:alert(1)",
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://",
            "hooks.example.com",
            "https://a.example.com/<script>",
        ] {
            assert!(valid_webhook_url(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "<p>x</p>".repeat(400));
        assert!(valid_webhook_url(&long).is_err());
    }
}

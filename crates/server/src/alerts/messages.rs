//! What the alert worker sends: the webhook's JSON and its signature, and the alert email's
//! subject and text.

use deadbolt_core::Reason;
use deadbolt_store::{AlertEvent, Application, Attempt};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::LISTED;
use crate::mail::field;
use crate::service::ALERT_LINK_DAYS;

/// `hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`: what `x-deadbolt-signature` carries
/// after `sha256=`. The timestamp is signed too, so that a captured delivery cannot be
/// replayed later under a new one.
pub fn sign(secret: &[u8], timestamp: &str, body: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC takes a key of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The JSON a webhook receives for a blocked attempt.
pub(super) fn webhook_payload(a: &Attempt, app: &Application, has_person: bool) -> String {
    serde_json::json!({
        "type": "attempt.blocked",
        "attempt": {
            "id": a.id,
            "at": a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "account": a.account,
            "reason": a.reason,
            "ip": a.ip,
            "device": a.device,
            "location": a.location,
            "integration_type": a.integration_type,
        },
        "application": {"id": app.id, "issuer": app.issuer, "name": app.name},
        "account_has_person": has_person,
    })
    .to_string()
}

/// Why a sign-in was blocked, in the person's words (as on their attempts page).
fn why(reason: &str) -> &'static str {
    match reason.parse::<Reason>() {
        Ok(Reason::MasterLock) => "lock everything was on",
        Ok(Reason::Schedule) => "a lock schedule covered that time",
        Ok(Reason::AccountLocked) => "the account was locked",
        Ok(Reason::UnenrolledDeny) => "the account is not enrolled",
        _ => "the account was locked",
    }
}

/// The subject and text of an alert: one blocked sign-in, or a digest of several.
pub(super) fn alert_email(
    app: &Application,
    account: &str,
    (events, extra): (&[AlertEvent], usize),
    tz: chrono_tz::Tz,
    was_me: &str,
    not_me: &str,
    settings: &str,
) -> (String, String) {
    let account = field(&Some(account.to_string()));
    let total = events.len() + extra;
    let subject = if total == 1 {
        format!("Blocked sign-in to {} ({account})", app.name)
    } else {
        format!("{total} blocked sign-ins to {} ({account})", app.name)
    };
    let mut body = if total == 1 {
        format!(
            "Deadbolt blocked a sign-in to your account {account} at {} ({}).\n\n",
            app.name, app.issuer
        )
    } else {
        format!(
            "Deadbolt blocked {total} sign-ins to your account {account} at {} ({}).\n\n",
            app.name, app.issuer
        )
    };
    for e in events.iter().take(LISTED) {
        let local = e.at.with_timezone(&tz);
        body.push_str(&format!(
            "When: {} ({})\nIP: {}\nDevice: {}\nLocation: {}\nWhy it was blocked: {}\n\n",
            local.format("%Y-%m-%d %H:%M:%S %Z"),
            e.at.format("%Y-%m-%d %H:%M:%S UTC"),
            field(&e.ip),
            field(&e.device),
            field(&e.location),
            why(&e.reason),
        ));
    }
    if total > LISTED.min(events.len()) {
        body.push_str(&format!(
            "...and {} more blocked sign-ins since; all of them are on your accounts page.\n\n",
            total - LISTED.min(events.len())
        ));
    }
    body.push_str(&format!(
        "This was me: {was_me}\n(opens this account's unlock choices once you are signed in)\n\n\
         This wasn't me: {not_me}\n(asks you to confirm, then locks all your accounts and tells \
         the company's administrators)\n\n\
         The links work for {ALERT_LINK_DAYS} days (\"this wasn't me\" once). To stop these \
         emails for this account, turn alerts off on its page: {settings}\n"
    ));
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"key", b'1764230400.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"key", "1764230400", r#"{"a":1}"#),
            "14448dff9f08c3532e1372f990e47bd6f596745b82322dfd62824ae851ef8b2d"
        );
    }
}

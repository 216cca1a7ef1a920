//! Alerts and webhooks: the worker's cursor over attempts, the outbox of alert emails and of
//! webhook deliveries, their one-time links, the per-account switch and companies' webhooks.
//!
//! Sending is at least once and never twice within a lease: a sender claims due rows by
//! setting `claimed_until` in an `UPDATE … WHERE claimed_until <= now`, which on PostgreSQL
//! re-checks the condition on the locked row, so two replicas never hold one row at once.
//! Ingesting (attempts → outbox) and finishing an email both begin by writing the cursor row:
//! on PostgreSQL that row lock puts them in turn, so an attempt is never attached to an email
//! that has just been sent without it (SQLite has one writer anyway).
//!
//! Over 600 lines: the outbox's claim, finish and prune statements for emails and deliveries
//! are written side by side so that a change to one is seen against the other. Its tests are
//! in `alerts_tests.rs`.

use chrono::{DateTime, Duration, Utc};

use deadbolt_core::AccountKey;

use crate::accounts::{account_row, ACCOUNT_COLS_COUNT};
use crate::engine::{Row, Stmt, Val};
use crate::{ms, new_id, time, Account, Attempt, Result, Store, ACCOUNT_COLS};

/// An enrolled account, as [`Store::account`] reads it, and 1 when its alerts are on.
const ALERT_TARGET_SQL: &str = sql!(
    "SELECT ",
    ACCOUNT_COLS,
    ", CASE WHEN EXISTS (SELECT 1 FROM alerts_off o WHERE o.account_id = a.id) THEN 0 ELSE 1 END \
     FROM accounts a LEFT JOIN persons p ON p.id = a.person_id \
     WHERE a.app_id = $1 AND a.account_key = $2 ORDER BY a.key_dup LIMIT 1"
);

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod alerts_tests;

/// A blocked attempt on an account that has a person with alerts on, for an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub attempt_id: i64,
    pub person_id: String,
    pub account_id: String,
    pub app_id: String,
    pub at: DateTime<Utc>,
    pub account: String,
    pub reason: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub location: Option<String>,
}

/// A webhook delivery to queue: one blocked attempt, as the JSON body to post.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub company_id: String,
    pub attempt_id: i64,
    pub payload: String,
}

/// An alert email claimed for sending.
#[derive(Debug, Clone)]
pub struct AlertMail {
    pub id: String,
    pub person_id: String,
    pub account_id: String,
    pub app_id: String,
    pub tries: i64,
    /// Blocked sign-ins it tells of only by their number (beyond those listed).
    pub extra: i64,
}

/// A company's webhook, its secret still encrypted.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub company_id: String,
    pub url: String,
    pub secret_enc: String,
    pub created_at: DateTime<Utc>,
}

/// A webhook delivery, claimed for sending or listed in the delivery log.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub company_id: String,
    pub attempt_id: i64,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub tries: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_try_at: Option<DateTime<Utc>>,
}

/// A one-time link of an alert email.
#[derive(Debug, Clone)]
pub struct AlertLink {
    pub purpose: String,
    pub person_id: String,
    pub account_id: String,
    pub attempt_id: i64,
}

/// A one-time link of an alert email, to store.
#[derive(Debug, Clone)]
pub struct NewAlertLink {
    pub token_hash: String,
    pub purpose: &'static str,
    pub person_id: String,
    pub account_id: String,
    pub attempt_id: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const DELIVERY_COLS: &str = "id, company_id, attempt_id, payload, created_at, state, tries, \
     last_status, last_error, last_try_at";

fn delivery(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.text(0)?,
        company_id: r.text(1)?,
        attempt_id: r.int(2)?,
        payload: r.text(3)?,
        created_at: time(r.int(4)?)?,
        state: r.text(5)?,
        tries: r.int(6)?,
        last_status: r.opt_int(7)?,
        last_error: r.opt_text(8)?,
        last_try_at: r.opt_int(9)?.map(time).transpose()?,
    })
}

fn event(r: &Row) -> Result<AlertEvent> {
    Ok(AlertEvent {
        attempt_id: r.int(0)?,
        person_id: r.text(1)?,
        account_id: r.text(2)?,
        app_id: r.text(3)?,
        at: time(r.int(4)?)?,
        account: r.text(5)?,
        reason: r.text(6)?,
        ip: r.opt_text(7)?,
        device: r.opt_text(8)?,
        location: r.opt_text(9)?,
    })
}

fn alert_link(r: &Row) -> Result<AlertLink> {
    Ok(AlertLink {
        purpose: r.text(0)?,
        person_id: r.text(1)?,
        account_id: r.text(2)?,
        attempt_id: r.int(3)?,
    })
}

/// Claims up to `$3` due emails until `$1` (`$2`: now). The outer conditions repeat the inner
/// ones: on PostgreSQL a row another sender claimed meanwhile is re-checked once its lock is
/// free, and left out.
const CLAIM_MAILS: &str = sql!(CLAIM_MAILS_PICK, ")", CLAIM_MAILS_TAIL);
/// PostgreSQL: the same, with the rows it picks locked as it picks them, skipping those locked
/// by another transaction. Without it the claim waited on every row the queueing pass was
/// adding sign-ins to (seconds under a flood), and the two deadlocked: the claim locked the
/// rows one by one in its own order while the pass held some of them and wanted others
/// (PostgreSQL then aborts one, and the pass's whole batch is done again). A row skipped now
/// is claimed at the next pass, a second later.
const CLAIM_MAILS_PG: &str = sql!(CLAIM_MAILS_PICK, SKIP_LOCKED, ")", CLAIM_MAILS_TAIL);
const CLAIM_MAILS_PICK: &str =
    "UPDATE alert_mails SET claimed_until = $1 WHERE id IN (SELECT id FROM alert_mails \
     WHERE sent_at IS NULL AND due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
     ORDER BY due_at LIMIT $3";
const CLAIM_MAILS_TAIL: &str =
    " AND sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2) \
     RETURNING id, person_id, account_id, app_id, tries, extra";
/// Claims up to `$3` due deliveries until `$1`, as [`CLAIM_MAILS`].
const CLAIM_DELIVERIES: &str = sql!(CLAIM_DELIVERIES_PICK, ")", CLAIM_DELIVERIES_TAIL);
/// PostgreSQL: as [`CLAIM_MAILS_PG`].
const CLAIM_DELIVERIES_PG: &str = sql!(
    CLAIM_DELIVERIES_PICK,
    SKIP_LOCKED,
    ")",
    CLAIM_DELIVERIES_TAIL
);
const CLAIM_DELIVERIES_PICK: &str =
    "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN (SELECT id FROM webhook_deliveries \
     WHERE state = 'pending' AND due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
     ORDER BY due_at LIMIT $3";
const CLAIM_DELIVERIES_TAIL: &str = sql!(
    " AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= $2) RETURNING ",
    DELIVERY_COLS
);
/// PostgreSQL only: the rows a claim picks are locked as picked, those locked by another
/// transaction skipped.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
/// Moves the cursor to `$1` from `$2`; a row back only when it was still at `$2` (another
/// replica's worker did not take these attempts first).
const MOVE_CURSOR: &str = "UPDATE alert_cursor SET last_attempt_id = $1 WHERE id = 1 AND last_attempt_id = $2 RETURNING last_attempt_id";
/// Takes the cursor row's lock without changing it (see the module's comment).
const LOCK_CURSOR: &str =
    "UPDATE alert_cursor SET last_attempt_id = last_attempt_id WHERE id = 1 RETURNING last_attempt_id";
/// A new email for a person's account unless one is waiting: due now, or when the window after
/// the last one sent ends. Parameters: id, person, account, app, now, window (ms).
const NEW_MAIL: &str = "INSERT INTO alert_mails (id, person_id, account_id, app_id, created_at, due_at) \
     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS BIGINT), \
     CASE WHEN s.last IS NULL OR s.last + CAST($6 AS BIGINT) <= CAST($5 AS BIGINT) THEN CAST($5 AS BIGINT) \
     ELSE s.last + CAST($6 AS BIGINT) END \
     FROM (SELECT MAX(sent_at) AS last FROM alert_mails WHERE person_id = $2 AND account_id = $3) s \
     WHERE NOT EXISTS (SELECT 1 FROM alert_mails WHERE person_id = $2 AND account_id = $3 AND sent_at IS NULL)";
/// Attaches sign-ins of one person's account, oldest first, to the email waiting for it, as one
/// row (see the migration `0018_alert_event_packs`): the latest in the row's columns, the
/// earlier ones in `earlier`.
const ATTACH_EVENTS: &str = "INSERT INTO alert_events (attempt_id, mail_id, at, account, reason, ip, device, location, earlier) \
     SELECT CAST($1 AS BIGINT), m.id, CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), \
     CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT) FROM alert_mails m \
     WHERE m.person_id = $9 AND m.account_id = $10 AND m.sent_at IS NULL ORDER BY m.due_at LIMIT 1";

/// One of `earlier`'s entries: attempt id, time (ms), reason, IP, device, location.
type Earlier = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn attach_events(events: &[&AlertEvent]) -> Result<Option<Stmt>> {
    let Some((latest, before)) = events.split_last() else {
        return Ok(None);
    };
    let earlier = if before.is_empty() {
        None
    } else {
        let packed: Vec<Earlier> = before
            .iter()
            .map(|e| {
                (
                    e.attempt_id,
                    e.at.timestamp_millis(),
                    e.reason.clone(),
                    e.ip.clone(),
                    e.device.clone(),
                    e.location.clone(),
                )
            })
            .collect();
        Some(
            serde_json::to_string(&packed)
                .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?,
        )
    };
    Ok(Some((
        ATTACH_EVENTS,
        vec![
            latest.attempt_id.into(),
            ms(latest.at),
            latest.account.as_str().into(),
            latest.reason.as_str().into(),
            latest.ip.clone().into(),
            latest.device.clone().into(),
            latest.location.clone().into(),
            earlier.into(),
            latest.person_id.as_str().into(),
            latest.account_id.as_str().into(),
        ],
    )))
}
/// Adds to the number of blocked sign-ins the waiting email tells of without listing them.
const ADD_EXTRA: &str = "UPDATE alert_mails SET extra = extra + $1 \
     WHERE person_id = $2 AND account_id = $3 AND sent_at IS NULL";
const NEW_DELIVERY: &str = "INSERT INTO webhook_deliveries (id, company_id, attempt_id, payload, created_at, due_at, state) \
     VALUES ($1, $2, $3, $4, $5, $5, 'pending')";

impl Store {
    /// Where the alert worker stopped: the last attempt id it examined.
    pub async fn alert_cursor(&self) -> Result<i64> {
        crate::engine::scalar(
            &self
                .engine
                .query(
                    "SELECT last_attempt_id FROM alert_cursor WHERE id = 1",
                    vec![],
                )
                .await?,
        )
    }

    /// Takes or renews the lease on queueing alerts for `holder` until `until`: `true` when it
    /// is `holder`'s (free, already its own, or run out at `now`).
    pub async fn take_alert_queue(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let rows = self
            .engine
            .write(
                "UPDATE alert_cursor SET holder = $1, held_until = $2 WHERE id = 1 \
                 AND (holder IS NULL OR holder = $3 OR held_until <= $4) RETURNING id",
                vec![holder.into(), ms(until), holder.into(), ms(now)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Gives the lease on queueing alerts up, if `holder` has it: another replica takes over
    /// at once (a server stopping cleanly).
    pub async fn release_alert_queue(&self, holder: &str) -> Result<()> {
        self.engine
            .write(
                "UPDATE alert_cursor SET holder = NULL, held_until = NULL WHERE id = 1 AND holder = $1",
                vec![holder.into()],
            )
            .await?;
        Ok(())
    }

    /// Who holds the lease on queueing alerts, and until when.
    pub async fn alert_queue_holder(&self) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = self
            .one(
                "SELECT holder, held_until FROM alert_cursor WHERE id = 1 AND holder IS NOT NULL",
                vec![],
                |r| Ok((r.text(0)?, time(r.int(1)?)?)),
            )
            .await?;
        Ok(row)
    }

    /// The blocked attempts recorded after id `after`, oldest first, of at most `runs` stored batches of
    /// them, the last id they reach (`after` when there are none), and whether `runs` batches
    /// were read (more may follow). Ids are given in commit order (one writer at a time takes
    /// the next ones), so none can appear later below it.
    pub async fn blocked_attempts_after_id(
        &self,
        after: i64,
        runs: i64,
    ) -> Result<(Vec<Attempt>, i64, bool)> {
        let page = self
            .all(
                "SELECT first_id, last_id, until_at, app_id, data FROM attempt_runs \
                 WHERE last_id > $1 ORDER BY last_id LIMIT $2",
                vec![after.into(), runs.into()],
                crate::attempts::stored_run,
            )
            .await?;
        let mut out = Vec::new();
        let mut through = after;
        for run in &page {
            through = through.max(run.last_id);
            out.extend(run.blocked_attempts()?.into_iter().filter(|a| a.id > after));
        }
        let full = i64::try_from(page.len()).is_ok_and(|n| n >= runs);
        Ok((out, through, full))
    }

    /// Queues alert emails and webhook deliveries for the attempts in `(from, through]` and
    /// moves the cursor to `through`, in one transaction. `false` (nothing written) when the
    /// cursor was not at `from`: another worker took these attempts.
    pub async fn queue_alerts(
        &self,
        (from, through): (i64, i64),
        events: &[AlertEvent],
        counted: &[(AlertEvent, i64)],
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<bool> {
        let mut writes: Vec<Stmt> = Vec::new();
        // A counted tally arrives with its latest sign-in, listed, so that an email waits for
        // it even when the one that listed the others has gone out meanwhile.
        // One email waits per account: asked for once per account here, not once per sign-in.
        // Its sign-ins are attached as one row, in the order read (ascending ids: the listed
        // ones come before any counted after them), the latest in the row's own columns.
        let mut per_account: Vec<((&str, &str), Vec<&AlertEvent>)> = Vec::new();
        let mut at = std::collections::HashMap::new();
        for e in events.iter().chain(counted.iter().map(|(e, _)| e)) {
            let key = (e.person_id.as_str(), e.account_id.as_str());
            let i = *at.entry(key).or_insert_with(|| {
                per_account.push((key, Vec::new()));
                per_account.len() - 1
            });
            per_account[i].1.push(e);
        }
        for (_, listed) in &per_account {
            let e = listed[0];
            writes.push((
                NEW_MAIL,
                vec![
                    new_id().into(),
                    e.person_id.as_str().into(),
                    e.account_id.as_str().into(),
                    e.app_id.as_str().into(),
                    ms(now),
                    window.num_milliseconds().into(),
                ],
            ));
            writes.extend(attach_events(listed)?);
        }
        for (e, n) in counted {
            writes.push((
                ADD_EXTRA,
                vec![
                    (n - 1).into(),
                    e.person_id.as_str().into(),
                    e.account_id.as_str().into(),
                ],
            ));
        }
        for d in deliveries {
            writes.push((
                NEW_DELIVERY,
                vec![
                    new_id().into(),
                    d.company_id.as_str().into(),
                    d.attempt_id.into(),
                    d.payload.as_str().into(),
                    ms(now),
                ],
            ));
        }
        self.engine
            .read_modify_write_sized(
                vec![(MOVE_CURSOR, vec![through.into(), from.into()])],
                writes.len(),
                move |read| {
                    let moved = read.first().is_some_and(|rows| !rows.is_empty());
                    Ok((if moved { writes } else { Vec::new() }, moved))
                },
            )
            .await
    }

    /// Claims up to `limit` due alert emails until `lease_until`: no other sender takes them
    /// before then.
    pub async fn claim_alert_mails(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AlertMail>> {
        // A read first: the senders poll every second, and a write (a synced commit) only when
        // something is due.
        let due = self
            .one(
                "SELECT 1 FROM alert_mails WHERE sent_at IS NULL AND due_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until <= $1) LIMIT 1",
                vec![ms(now)],
                |_| Ok(()),
            )
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let claim = if self.is_postgres() {
            CLAIM_MAILS_PG
        } else {
            CLAIM_MAILS
        };
        let rows = self
            .engine
            .write(claim, vec![ms(lease_until), ms(now), limit.into()])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertMail {
                    id: r.text(0)?,
                    person_id: r.text(1)?,
                    account_id: r.text(2)?,
                    app_id: r.text(3)?,
                    tries: r.int(4)?,
                    extra: r.int(5)?,
                })
            })
            .collect()
    }

    /// The attempts an email tells of, oldest first.
    pub async fn alert_mail_events(&self, mail: &AlertMail) -> Result<Vec<AlertEvent>> {
        let packs = self
            .all(
                "SELECT e.attempt_id, m.person_id, m.account_id, m.app_id, e.at, e.account, e.reason, \
                 e.ip, e.device, e.location, e.earlier FROM alert_events e JOIN alert_mails m ON m.id = e.mail_id \
                 WHERE e.mail_id = $1 ORDER BY e.attempt_id",
                vec![mail.id.as_str().into()],
                |r| Ok((event(r)?, r.opt_text(10)?)),
            )
            .await?;
        let mut out = Vec::new();
        for (latest, earlier) in packs {
            if let Some(earlier) = earlier {
                let earlier: Vec<Earlier> = serde_json::from_str(&earlier).map_err(|e| {
                    crate::StoreError::Corrupt(format!("alert_events.earlier: {e}"))
                })?;
                for (attempt_id, at, reason, ip, device, location) in earlier {
                    out.push(AlertEvent {
                        attempt_id,
                        at: time(at)?,
                        reason,
                        ip,
                        device,
                        location,
                        ..latest.clone()
                    });
                }
            }
            out.push(latest);
        }
        Ok(out)
    }

    /// Records emails as sent, each with the last attempt it told of (`through`), in one
    /// transaction. Attempts attached to one while it was out move to a new email, due when
    /// the window after this one ends.
    pub async fn alert_mails_sent(
        &self,
        sent: &[(String, i64)],
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<()> {
        if sent.is_empty() {
            return Ok(());
        }
        let mut stmts: Vec<Stmt> = vec![(LOCK_CURSOR, vec![])];
        for (mail_id, through) in sent {
            let next = new_id();
            stmts.push((
                "INSERT INTO alert_mails (id, person_id, account_id, app_id, created_at, due_at) \
                 SELECT CAST($1 AS TEXT), person_id, account_id, app_id, CAST($2 AS BIGINT), CAST($3 AS BIGINT) \
                 FROM alert_mails WHERE id = $4 AND EXISTS \
                 (SELECT 1 FROM alert_events WHERE mail_id = $4 AND attempt_id > $5)",
                vec![
                    next.as_str().into(),
                    ms(now),
                    ms(now + window),
                    mail_id.as_str().into(),
                    (*through).into(),
                ],
            ));
            stmts.push((
                "UPDATE alert_events SET mail_id = $1 WHERE mail_id = $2 AND attempt_id > $3",
                vec![
                    next.as_str().into(),
                    mail_id.as_str().into(),
                    (*through).into(),
                ],
            ));
            stmts.push((
                "UPDATE alert_mails SET sent_at = $1, claimed_until = NULL, tries = tries + 1 WHERE id = $2",
                vec![ms(now), mail_id.as_str().into()],
            ));
        }
        // The relay has taken these emails: this record is all that keeps them from going out
        // again when their claim runs out. It waits for the cursor row behind the queueing
        // pass, which under a flood holds it for seconds: under the background deadline, not
        // the request's, which it used to miss.
        self.engine.transaction_background(stmts).await?;
        Ok(())
    }

    /// One email recorded as sent (see [`Store::alert_mails_sent`]).
    pub async fn alert_mail_sent(
        &self,
        mail_id: &str,
        through: i64,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<()> {
        self.alert_mails_sent(&[(mail_id.to_string(), through)], now, window)
            .await
    }

    /// Records a failed try of an email; it is tried again at `retry_at`.
    pub async fn alert_mail_failed(
        &self,
        mail_id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "UPDATE alert_mails SET tries = tries + 1, last_error = $1, due_at = $2, claimed_until = NULL WHERE id = $3",
                vec![error.into(), ms(retry_at), mail_id.into()],
            )
            .await?;
        Ok(())
    }

    /// Emails not sent yet (waiting, or failing and to be tried again).
    pub async fn unsent_alert_mails(&self) -> Result<i64> {
        crate::engine::scalar(
            &self
                .engine
                .query(
                    "SELECT COUNT(*) FROM alert_mails WHERE sent_at IS NULL",
                    vec![],
                )
                .await?,
        )
    }

    /// Turns alerts for an account on (the default) or off.
    pub async fn set_alerts(&self, account_id: &str, on: bool, now: DateTime<Utc>) -> Result<()> {
        if on {
            self.engine
                .write(
                    "DELETE FROM alerts_off WHERE account_id = $1",
                    vec![account_id.into()],
                )
                .await?;
        } else {
            self.engine
                .write(
                    "INSERT INTO alerts_off (account_id, changed_at) VALUES ($1, $2) ON CONFLICT (account_id) DO NOTHING",
                    vec![account_id.into(), ms(now)],
                )
                .await?;
        }
        Ok(())
    }

    /// Whether alerts are on for an account.
    /// Enrolled accounts (application id, account key), each with whether its alerts are on,
    /// in one trip to the store: the alert sender looks up a flood's thousands of accounts
    /// again every half minute, which would otherwise be two reads each.
    pub async fn accounts_and_alerts(
        &self,
        slots: &[(&str, &AccountKey)],
    ) -> Result<Vec<Option<(Account, bool)>>> {
        let stmts = slots
            .iter()
            .map(|(app_id, key)| {
                (
                    ALERT_TARGET_SQL,
                    vec![(*app_id).into(), key.as_str().into()],
                )
            })
            .collect();
        self.engine
            .queries(stmts)
            .await?
            .iter()
            .map(|rows| {
                rows.first()
                    .map(|r| Ok((account_row(r)?, r.flag(ACCOUNT_COLS_COUNT)?)))
                    .transpose()
            })
            .collect()
    }

    pub async fn alerts_on(&self, account_id: &str) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM alerts_off WHERE account_id = $1",
                vec![account_id.into()],
                |_| Ok(()),
            )
            .await?
            .is_none())
    }

    /// Stores one-time links (by the hash of their token), in one transaction.
    pub async fn create_alert_links(&self, links: &[NewAlertLink]) -> Result<()> {
        if links.is_empty() {
            return Ok(());
        }
        let stmts: Vec<Stmt> = links
            .iter()
            .map(|l| {
                (
                    "INSERT INTO alert_links (token_hash, purpose, person_id, account_id, attempt_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    vec![
                        l.token_hash.as_str().into(),
                        l.purpose.into(),
                        l.person_id.as_str().into(),
                        l.account_id.as_str().into(),
                        l.attempt_id.into(),
                        ms(l.created_at),
                        ms(l.expires_at),
                    ],
                )
            })
            .collect();
        self.engine.transaction(stmts).await?;
        Ok(())
    }

    /// An alert link, if it is unused and unexpired.
    pub async fn alert_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertLink>> {
        self.one(
            "SELECT purpose, person_id, account_id, attempt_id FROM alert_links \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
            vec![token_hash.into(), ms(now)],
            alert_link,
        )
        .await
    }

    /// Uses an alert link up; `None` when it was used, expired or never existed.
    pub async fn take_alert_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertLink>> {
        let rows = self
            .engine
            .write(
                "UPDATE alert_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
                 RETURNING purpose, person_id, account_id, attempt_id",
                vec![ms(now), token_hash.into()],
            )
            .await?;
        rows.first().map(alert_link).transpose()
    }

    /// Sets (or replaces) a company's webhook.
    pub async fn set_webhook(
        &self,
        company_id: &str,
        id: &str,
        url: &str,
        secret_enc: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "INSERT INTO webhooks (company_id, id, url, secret_enc, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (company_id) DO UPDATE SET id = excluded.id, url = excluded.url, \
                 secret_enc = excluded.secret_enc, created_at = excluded.created_at",
                vec![
                    company_id.into(),
                    id.into(),
                    url.into(),
                    secret_enc.into(),
                    ms(now),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn webhook(&self, company_id: &str) -> Result<Option<Webhook>> {
        self.one(
            "SELECT id, company_id, url, secret_enc, created_at FROM webhooks WHERE company_id = $1",
            vec![company_id.into()],
            |r| {
                Ok(Webhook {
                    id: r.text(0)?,
                    company_id: r.text(1)?,
                    url: r.text(2)?,
                    secret_enc: r.text(3)?,
                    created_at: time(r.int(4)?)?,
                })
            },
        )
        .await
    }

    /// Removes a company's webhook; its pending deliveries fail when their turn comes.
    pub async fn delete_webhook(&self, company_id: &str) -> Result<()> {
        self.engine
            .write(
                "DELETE FROM webhooks WHERE company_id = $1",
                vec![company_id.into()],
            )
            .await?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries until `lease_until`.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        // A read first, as for emails.
        let due = self
            .one(
                "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND due_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until <= $1) LIMIT 1",
                vec![ms(now)],
                |_| Ok(()),
            )
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let claim = if self.is_postgres() {
            CLAIM_DELIVERIES_PG
        } else {
            CLAIM_DELIVERIES
        };
        self.engine
            .write(claim, vec![ms(lease_until), ms(now), limit.into()])
            .await?
            .iter()
            .map(delivery)
            .collect()
    }

    /// Records a try of a delivery: its new state (`pending` again with `retry_at`, or
    /// `delivered`, or `failed`), the answer's status and the error, if any (an earlier
    /// error stays shown after a later success).
    #[allow(clippy::too_many_arguments)]
    pub async fn delivery_tried(
        &self,
        id: &str,
        state: &str,
        status: Option<i64>,
        error: Option<&str>,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.engine
            .write(
                "UPDATE webhook_deliveries SET state = $1, tries = tries + 1, last_status = $2, \
                 last_error = COALESCE(CAST($3 AS TEXT), last_error), last_try_at = $4, due_at = $5, \
                 claimed_until = NULL WHERE id = $6",
                vec![
                    state.into(),
                    Val::from(status),
                    error.map(str::to_string).into(),
                    ms(now),
                    ms(retry_at),
                    id.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Forgets what alerts no longer need: links expired by `now`, and emails sent and
    /// deliveries finished before `before` (the log keeps the rest). How many rows went.
    pub async fn prune_alerts(&self, now: DateTime<Utc>, before: DateTime<Utc>) -> Result<u64> {
        let out = self
            .engine
            .transaction(vec![
                (
                    "DELETE FROM alert_links WHERE expires_at < $1 RETURNING token_hash",
                    vec![ms(now)],
                ),
                (
                    "DELETE FROM alert_events WHERE mail_id IN \
                     (SELECT id FROM alert_mails WHERE sent_at < $1) RETURNING attempt_id",
                    vec![ms(before)],
                ),
                (
                    "DELETE FROM alert_mails WHERE sent_at < $1 RETURNING id",
                    vec![ms(before)],
                ),
                (
                    "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1 RETURNING id",
                    vec![ms(before)],
                ),
            ])
            .await?;
        Ok(out.iter().map(|rows| rows.len() as u64).sum())
    }

    /// A company's deliveries, newest first: the delivery log.
    pub async fn deliveries(&self, company_id: &str, limit: i64) -> Result<Vec<Delivery>> {
        self.all(
            const_format::concatcp!(
                "SELECT ",
                DELIVERY_COLS,
                " FROM webhook_deliveries WHERE company_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            vec![company_id.into(), limit.into()],
            delivery,
        )
        .await
    }
}

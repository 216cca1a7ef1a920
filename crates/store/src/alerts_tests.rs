//! Alerts: the worker's cursor and lease, the outbox of emails and deliveries, their links and
//! the per-account switch, run on SQLite and on PostgreSQL.

use super::*;
use crate::test_support::t0;

fn ev(id: i64) -> AlertEvent {
    AlertEvent {
        attempt_id: id,
        person_id: "p".into(),
        account_id: "a".into(),
        app_id: "app".into(),
        at: t0(),
        account: "pat".into(),
        reason: "account_locked".into(),
        ip: Some("192.0.2.1".into()),
        device: None,
        location: None,
    }
}

// One email waits per account; a second worker with a stale cursor writes nothing; a
// claimed email is not claimed again within its lease; what arrives while an email is out
// goes into the next one, due when the window ends; a failure keeps the email.
both_engines!(
    an_account_has_one_waiting_email_and_nothing_is_sent_twice,
    |s| {
        let now = t0();
        let w = Duration::minutes(10);
        let lease = now + Duration::seconds(60);
        assert!(s
            .queue_alerts((0, 2), &[ev(1), ev(2)], &[], &[], now, w)
            .await
            .unwrap());
        assert!(!s
            .queue_alerts((0, 2), &[ev(1)], &[], &[], now, w)
            .await
            .unwrap());
        assert_eq!(s.alert_cursor().await.unwrap(), 2);
        let mails = s.claim_alert_mails(now, lease, 10).await.unwrap();
        assert_eq!(mails.len(), 1);
        assert!(s
            .claim_alert_mails(now, lease, 10)
            .await
            .unwrap()
            .is_empty());
        let events = s.alert_mail_events(&mails[0]).await.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], ev(1));
        // The relay fails: kept, due again later, not before.
        s.alert_mail_failed(&mails[0].id, "relay down", now + Duration::seconds(30))
            .await
            .unwrap();
        assert!(s
            .claim_alert_mails(now, lease, 10)
            .await
            .unwrap()
            .is_empty());
        let at = now + Duration::seconds(30);
        let mails = s
            .claim_alert_mails(at, at + Duration::seconds(60), 10)
            .await
            .unwrap();
        assert_eq!((mails.len(), mails[0].tries), (1, 1));
        // An attempt attached while the email is being sent.
        assert!(s
            .queue_alerts((2, 3), &[ev(3)], &[], &[], at, w)
            .await
            .unwrap());
        s.alert_mail_sent(&mails[0].id, 2, at, w).await.unwrap();
        assert_eq!(s.unsent_alert_mails().await.unwrap(), 1);
        assert!(s.claim_alert_mails(at, lease, 10).await.unwrap().is_empty());
        // Another within the window joins the waiting digest.
        assert!(s
            .queue_alerts((3, 4), &[ev(4)], &[], &[], at, w)
            .await
            .unwrap());
        let later = at + w;
        let next = s
            .claim_alert_mails(later, later + Duration::seconds(60), 10)
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        let events = s.alert_mail_events(&next[0]).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.attempt_id).collect::<Vec<_>>(),
            [3, 4]
        );
        s.alert_mail_sent(&next[0].id, 4, later, w).await.unwrap();
        assert_eq!(s.unsent_alert_mails().await.unwrap(), 0);
        // Long after: pruned, the two emails and their three rows of sign-ins (1 and 2
        // were attached together).
        let far = later + Duration::days(40);
        assert_eq!(
            s.prune_alerts(far, far - Duration::days(30)).await.unwrap(),
            5
        );
    }
);

// The worker reads only blocked attempts, whole, whatever their strings hold.
both_engines!(only_blocked_attempts_are_read_for_alerts, |s| {
    let app = "app-1".to_string();
    let attempt = |n: i64, locked: bool| crate::NewAttempt {
        at: t0() + Duration::seconds(n),
        app_id: app.clone(),
        key_id: None,
        account: format!("user \"{n}\"\\"),
        locked,
        reason: deadbolt_core::Reason::AccountLocked,
        ip: Some("192.0.2.1".into()),
        device: Some("Agent \"quoted\" \u{e9}".into()),
        location: None,
        integration_type: Some("cognito".into()),
        integration_data: Some("{\"a\":[1,\"x\"]}".into()),
    };
    s.record_attempts(&crate::AttemptBatch::new(
        (0..6).map(|n| attempt(n, n % 3 == 0)).collect(),
    ))
    .await
    .unwrap();
    let (blocked, through, full) = s.blocked_attempts_after_id(0, 10).await.unwrap();
    assert!(!full, "one stored batch of ten asked for");
    assert_eq!(
        blocked
            .iter()
            .map(|a| a.account.as_str())
            .collect::<Vec<_>>(),
        ["user \"0\"\\", "user \"3\"\\"]
    );
    assert!(blocked.iter().all(|a| a.locked));
    assert_eq!(
        blocked[1].device.as_deref(),
        Some("Agent \"quoted\" \u{e9}")
    );
    assert_eq!(
        through,
        blocked[1].id + 2,
        "the cursor passes the allowed ones too"
    );
    // A second stored batch: asked for one batch at a time, the first page says more may
    // follow and stops at its batch's end; the next page reads the rest.
    s.record_attempts(&crate::AttemptBatch::new(
        (6..9).map(|n| attempt(n, true)).collect(),
    ))
    .await
    .unwrap();
    let (_, first_end, full) = s.blocked_attempts_after_id(0, 1).await.unwrap();
    assert!(full);
    assert_eq!(first_end, through);
    let (rest, end, full) = s.blocked_attempts_after_id(first_end, 1).await.unwrap();
    assert!(full, "one batch asked for, one read");
    assert_eq!(rest.len(), 3);
    assert_eq!(end, rest[2].id);
    let (none, still, full) = s.blocked_attempts_after_id(end, 1).await.unwrap();
    assert!(none.is_empty() && !full);
    assert_eq!(still, end);
});

// The blocked attempts a batch hands over when it is written are those a read gives back, with
// the same ids and fields, whatever the order the attempts of several applications came in.
both_engines!(
    a_batch_hands_over_the_blocked_attempts_a_read_gives_back,
    |s| {
        let attempt = |n: i64| crate::NewAttempt {
            // Nanoseconds, which a read does not give back: handed over to the millisecond too.
            at: t0() + Duration::milliseconds(n) + Duration::nanoseconds(123_456),
            app_id: format!("app-{}", n % 3),
            key_id: (n % 2 == 0).then(|| format!("key-{n}")),
            account: format!("user \"{n}\"\u{e9}"),
            locked: n % 4 != 1,
            reason: if n % 4 == 0 {
                deadbolt_core::Reason::AccountLocked
            } else {
                deadbolt_core::Reason::Schedule
            },
            ip: Some(format!("192.0.2.{n}")),
            device: (n % 5 == 0).then(|| "Agent \"x\"".to_string()),
            location: Some("48.85,2.35".into()),
            integration_type: Some("cognito".into()),
            integration_data: (n % 2 == 1).then(|| "{\"a\":[1]}".to_string()),
        };
        // A batch before, so that the one looked at does not start at the first id.
        s.record_attempts(&crate::AttemptBatch::new((0..5).map(attempt).collect()))
            .await
            .unwrap();
        let mut attempts: Vec<_> = (5..40).map(attempt).collect();
        let (batch, blocked) = crate::AttemptBatch::encode_keeping_blocked(&mut attempts);
        assert!(attempts.is_empty(), "moved out, not copied");
        let first = s.record_attempts(&batch).await.unwrap().unwrap();
        let (from, to, handed) = blocked.numbered(first);
        assert_eq!((from, to), (6, 40), "the ids the batch took");
        let (read, through, _) = s.blocked_attempts_after_id(5, 100).await.unwrap();
        assert_eq!(through, to);
        assert_eq!(handed.len(), 26, "all but n % 4 == 1");
        // A read walks runs in id order; each run is one application's, in the order queued.
        assert_eq!(handed, read);
        assert_eq!(
            s.record_attempts(&crate::AttemptBatch::new(vec![]))
                .await
                .unwrap(),
            None
        );
    }
);

// Sign-ins of one account attached together are one row, and read back one by one, each as
// it was (strings with quotes and accents, missing fields, its own time), oldest first;
// another account's go to its own email. Those attached after an email was read (a pack
// whose latest id is past what it told) move to the next email whole.
both_engines!(sign_ins_attached_together_are_read_back_one_by_one, |s| {
    let now = t0();
    let w = Duration::minutes(10);
    let mut a = ev(1);
    a.device = Some("Agent \"quoted\" \u{e9} <b>".into());
    let mut b = ev(2);
    b.at = now + Duration::seconds(1);
    b.ip = None;
    b.location = Some("48.85,2.35".into());
    let mut c = ev(3);
    c.reason = "master_lock".into();
    let mut other = ev(4);
    other.account_id = "a2".into();
    assert!(s
        .queue_alerts(
            (0, 4),
            &[a.clone(), b.clone(), c.clone(), other.clone()],
            &[],
            &[],
            now,
            w
        )
        .await
        .unwrap());
    let mails = s
        .claim_alert_mails(now, now + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(mails.len(), 2);
    let mine = mails.iter().find(|m| m.account_id == "a").unwrap();
    assert_eq!(s.alert_mail_events(mine).await.unwrap(), [a, b, c]);
    let theirs = mails.iter().find(|m| m.account_id == "a2").unwrap();
    assert_eq!(s.alert_mail_events(theirs).await.unwrap(), [other]);
    // Two more while the email is out; it is recorded sent having told of 1..=3.
    assert!(s
        .queue_alerts((4, 6), &[ev(5), ev(6)], &[], &[], now, w)
        .await
        .unwrap());
    s.alert_mail_sent(&mine.id, 3, now, w).await.unwrap();
    let later = now + w;
    let next = s
        .claim_alert_mails(later, later + Duration::seconds(60), 10)
        .await
        .unwrap();
    let next = next.iter().find(|m| m.account_id == "a").unwrap();
    assert_eq!(
        s.alert_mail_events(next)
            .await
            .unwrap()
            .iter()
            .map(|e| e.attempt_id)
            .collect::<Vec<_>>(),
        [5, 6]
    );
});

// One holder at a time; the holder renews; another takes over once the lease ran out, or
// at once when the holder gave it up.
both_engines!(one_replica_at_a_time_queues_alerts, |s| {
    let now = t0();
    let later = now + Duration::seconds(30);
    assert_eq!(s.alert_queue_holder().await.unwrap(), None);
    assert!(s.take_alert_queue("a", now, later).await.unwrap());
    assert!(!s.take_alert_queue("b", now, later).await.unwrap());
    assert!(s
        .take_alert_queue(
            "a",
            now + Duration::seconds(10),
            later + Duration::seconds(10)
        )
        .await
        .unwrap());
    assert!(
        !s.take_alert_queue("b", later, later).await.unwrap(),
        "renewed"
    );
    let gone = later + Duration::seconds(10);
    assert!(s
        .take_alert_queue("b", gone, gone + Duration::seconds(30))
        .await
        .unwrap());
    assert_eq!(
        s.alert_queue_holder().await.unwrap(),
        Some(("b".to_string(), gone + Duration::seconds(30)))
    );
    s.release_alert_queue("a").await.unwrap();
    assert!(
        !s.take_alert_queue("a", gone, gone).await.unwrap(),
        "only its holder gives it up"
    );
    s.release_alert_queue("b").await.unwrap();
    assert!(s
        .take_alert_queue("a", gone, gone + Duration::seconds(30))
        .await
        .unwrap());
});

// A guesser's thousands of sign-ins of one account: the first are listed, the rest arrive
// as one number with the latest of them, and the waiting email tells of all of them.
both_engines!(sign_ins_beyond_the_listed_are_counted, |s| {
    let now = t0();
    let w = Duration::minutes(10);
    assert!(s
        .queue_alerts((0, 2), &[ev(1), ev(2)], &[], &[], now, w)
        .await
        .unwrap());
    assert!(s
        .queue_alerts((2, 1000), &[], &[(ev(1000), 998)], &[], now, w)
        .await
        .unwrap());
    let mails = s
        .claim_alert_mails(now, now + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(mails.len(), 1, "one email waits for the account");
    assert_eq!(mails[0].extra, 997);
    let events = s.alert_mail_events(&mails[0]).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.attempt_id).collect::<Vec<_>>(),
        [1, 2, 1000]
    );
});

both_engines!(deliveries_are_claimed_once_and_logged, |s| {
    let now = t0();
    let d = |c: &str, id| NewDelivery {
        company_id: c.into(),
        attempt_id: id,
        payload: format!("{{\"id\":{id}}}"),
    };
    assert!(s
        .queue_alerts(
            (0, 2),
            &[],
            &[],
            &[d("c1", 1), d("c2", 2)],
            now,
            Duration::minutes(10)
        )
        .await
        .unwrap());
    let lease = now + Duration::seconds(60);
    let due = s.claim_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(s.claim_deliveries(now, lease, 10).await.unwrap().is_empty());
    let c1 = due.iter().find(|x| x.company_id == "c1").unwrap();
    s.delivery_tried(
        &c1.id,
        "pending",
        Some(500),
        Some("answered HTTP 500"),
        now,
        now + Duration::seconds(30),
    )
    .await
    .unwrap();
    let at = now + Duration::seconds(30);
    let again = s
        .claim_deliveries(at, at + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    s.delivery_tried(&c1.id, "delivered", Some(200), None, at, at)
        .await
        .unwrap();
    let log = s.deliveries("c1", 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].state.as_str(),
            log[0].tries,
            log[0].last_status,
            log[0].last_error.as_deref()
        ),
        ("delivered", 2, Some(200), Some("answered HTTP 500"))
    );
    // Each company's log is its own.
    assert!(s
        .deliveries("c2", 10)
        .await
        .unwrap()
        .iter()
        .all(|x| x.company_id == "c2"));
    assert!(s.deliveries("c3", 10).await.unwrap().is_empty());
});

both_engines!(alert_links_work_once_and_alerts_switch_per_account, |s| {
    let now = t0();
    let link = |hash: &str, purpose: &'static str| NewAlertLink {
        token_hash: hash.into(),
        purpose,
        person_id: "p".into(),
        account_id: "a".into(),
        attempt_id: 7,
        created_at: now,
        expires_at: now + Duration::days(3),
    };
    s.create_alert_links(&[link("h1", "not_me"), link("h2", "was_me")])
        .await
        .unwrap();
    assert_eq!(
        s.alert_link("h1", now).await.unwrap().unwrap().attempt_id,
        7
    );
    assert!(s.take_alert_link("h1", now).await.unwrap().is_some());
    assert!(s.take_alert_link("h1", now).await.unwrap().is_none());
    assert!(s.alert_link("h1", now).await.unwrap().is_none());
    assert!(s
        .take_alert_link("h2", now + Duration::days(4))
        .await
        .unwrap()
        .is_none());
    assert!(s.alerts_on("a").await.unwrap());
    s.set_alerts("a", false, now).await.unwrap();
    s.set_alerts("a", false, now).await.unwrap();
    assert!(!s.alerts_on("a").await.unwrap());
    assert!(s.alerts_on("b").await.unwrap());
    s.set_alerts("a", true, now).await.unwrap();
    assert!(s.alerts_on("a").await.unwrap());
});

// A flood's pass queues thousands of accounts in one transaction: its deadline grows with its
// statements, so that it commits on a busy store instead of failing at the fixed deadline and
// being done again with more. Here 10,000 accounts (20,000 statements) under a 50 ms deadline.
both_engines!(
    a_large_queueing_pass_is_given_time_for_its_statements,
    |s| {
        let now = t0();
        let events: Vec<AlertEvent> = (1..=10_000)
            .map(|i| AlertEvent {
                account_id: format!("a{i}"),
                ..ev(i)
            })
            .collect();
        s.set_timeout(std::time::Duration::from_millis(50));
        let queued = s
            .queue_alerts((0, 10_000), &events, &[], &[], now, Duration::minutes(10))
            .await;
        s.set_timeout(crate::engine::DEFAULT_TIMEOUT);
        assert_eq!(queued, Ok(true));
        assert_eq!(s.unsent_alert_mails().await.unwrap(), 10_000);
        assert_eq!(s.alert_cursor().await.unwrap(), 10_000);
    }
);

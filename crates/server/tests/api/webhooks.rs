//! Webhooks: a company admin sets a URL in the portal and is shown its secret once; each
//! blocked sign-in to the company's enrolled accounts is posted there, signed; a 5xx is tried
//! again later; the delivery log shows each delivery's tries; a company never receives
//! another's events; and a URL that is not one is refused.

use crate::helpers::*;
use crate::portal::Http;
use axum::http::{HeaderMap, StatusCode};
use chrono::Duration;
use deadbolt::service::By;
use deadbolt_store::Application as App;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "an admin's long password";

/// What a receiver got: (timestamp header, signature header, body).
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A webhook receiver on 127.0.0.1:0 answering the statuses of `answers` in turn (200 once
/// they run out); its URL and what it received.
async fn receiver(answers: Vec<u16>) -> (String, Received) {
    let got: Received = Arc::default();
    let answers = Arc::new(Mutex::new(answers));
    let (g, a) = (got.clone(), answers.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                g.lock().unwrap().push((
                    h("x-deadbolt-timestamp"),
                    h("x-deadbolt-signature"),
                    body,
                ));
                let mut a = a.lock().unwrap();
                let status = if a.is_empty() { 200 } else { a.remove(0) };
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, got)
}

async fn received(got: &Received, n: usize) {
    for _ in 0..500 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{n} deliveries not received: {:?}", got.lock().unwrap());
}

/// A company with an application, a locked enrolled account `acct` and an admin signed in.
async fn company(t: &TestApp, name: &str) -> (App, String, Http) {
    let issuer = format!("{name}.hooks.example");
    let app = t.app(&issuer).await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "acct", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "acct").await.unwrap();
    let email = format!("admin@{name}.example");
    let admin = t
        .service
        .create_person(&email, Some(PASSWORD), None)
        .await
        .unwrap();
    let now = deadbolt_core::Clock::now(&*t.clock);
    t.store
        .grant_role(&admin.id, "admin", &app.company_id, now)
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(&email, PASSWORD).await.status, 303);
    (app, key, http)
}

/// Sets the company's webhook through the portal; the secret the page shows once.
async fn set_webhook(http: &mut Http, cid: &str, url: &str) -> String {
    let page = http.get(&format!("/companies/{cid}/webhook")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let r = http
        .post(
            &format!("/companies/{cid}/webhook"),
            &[("csrf", &page.csrf()), ("url", url)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tag = "<code id=\"new-secret\">";
    let i = r.body.find(tag).expect("the secret shown") + tag.len();
    let secret = r.body[i..i + r.body[i..].find('<').unwrap()].to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // Shown once: the page does not show it again.
    let again = http.get(&format!("/companies/{cid}/webhook")).await;
    assert!(!again.body.contains(&secret));
    secret
}

/// Whether a delivery's signature is the HMAC-SHA256 of `timestamp.body` under `secret`.
fn signed_with(secret: &str, (ts, sig, body): &(String, String, String)) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ts.parse::<i64>().is_ok() && sig == &format!("sha256={want}")
}

async fn a_failed_delivery_is_delivered_on_retry_and_logged(t: TestApp) {
    let (app, key, mut http) = company(&t, "acme").await;
    let (url, got) = receiver(vec![500]).await;
    let secret = set_webhook(&mut http, &app.company_id, &url).await;
    assert!(t.locked(&app.issuer, &key, "acct").await);
    received(&got, 1).await;
    // Answered 500: pending, tried again 30 s later on the server's clock.
    t.clock.advance(Duration::seconds(31));
    received(&got, 2).await;
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries[0].2, deliveries[1].2, "the same event");
    for d in &deliveries {
        assert!(signed_with(&secret, d), "{d:?}");
    }
    let event: serde_json::Value = serde_json::from_str(&deliveries[0].2).unwrap();
    assert_eq!(event["type"], "attempt.blocked");
    assert_eq!(event["attempt"]["account"], "acct");
    assert_eq!(event["attempt"]["reason"], "account_locked");
    assert_eq!(event["application"]["issuer"], app.issuer);
    // Another secret, or another body, does not verify.
    assert!(!signed_with("whsec_other", &deliveries[0]));
    let (ts, sig, body) = deliveries[0].clone();
    assert!(!signed_with(
        &secret,
        &(ts, sig, body.replace("acct", "acct2"))
    ));
    // The log: delivered, after two tries, the 500 kept as the last error.
    let mut row = String::new();
    for _ in 0..250 {
        let page = http
            .get(&format!("/companies/{}/webhook", app.company_id))
            .await;
        if let Some(i) = page.body.find("class=\"delivery\"") {
            row = page.body[i..i + page.body[i..].find("</tr>").unwrap()].to_string();
            if row.contains("delivered") {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(row.contains("<td class=\"state\">delivered</td>"), "{row}");
    assert!(row.contains("<td class=\"tries\">2</td>"), "{row}");
    assert!(row.contains("HTTP 500"), "{row}");
    // And in /metrics: one failed try, one delivery.
    let metric = |r: &'static str| {
        crate::faults::metric(
            &t,
            match r {
                "delivered" => "deadbolt_webhook_deliveries_total{result=\"delivered\"}",
                _ => "deadbolt_webhook_deliveries_total{result=\"failed\"}",
            },
        )
    };
    assert_eq!((metric("failed").await, metric("delivered").await), (1, 1));
}

#[tokio::test]
async fn a_failed_delivery_is_delivered_on_retry_and_logged_sqlite() {
    let t =
        TestApp::spawn_with(|c| c.alerts.poll_every = std::time::Duration::from_millis(50)).await;
    a_failed_delivery_is_delivered_on_retry_and_logged(t).await;
}

#[tokio::test]
async fn a_failed_delivery_is_delivered_on_retry_and_logged_postgres() {
    if let Some(t) =
        TestApp::spawn_pg_with(|c| c.alerts.poll_every = std::time::Duration::from_millis(50)).await
    {
        a_failed_delivery_is_delivered_on_retry_and_logged(t).await;
    }
}

/// Two companies with a webhook each: each receives its own applications' events only, and
/// neither admin can see or change the other's webhook.
#[tokio::test]
async fn a_company_never_receives_another_companys_events() {
    let t =
        TestApp::spawn_with(|c| c.alerts.poll_every = std::time::Duration::from_millis(50)).await;
    let (a, a_key, mut a_http) = company(&t, "alpha").await;
    let (b, b_key, mut b_http) = company(&t, "beta").await;
    let (a_url, a_got) = receiver(vec![]).await;
    let (b_url, b_got) = receiver(vec![]).await;
    set_webhook(&mut a_http, &a.company_id, &a_url).await;
    set_webhook(&mut b_http, &b.company_id, &b_url).await;
    assert!(t.locked(&a.issuer, &a_key, "acct").await);
    assert!(t.locked(&b.issuer, &b_key, "acct").await);
    assert!(t.locked(&b.issuer, &b_key, "acct").await);
    received(&a_got, 1).await;
    received(&b_got, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a_events = a_got.lock().unwrap().clone();
    let b_events = b_got.lock().unwrap().clone();
    assert_eq!((a_events.len(), b_events.len()), (1, 2));
    assert!(a_events
        .iter()
        .all(|e| e.2.contains(&a.issuer) && !e.2.contains(&b.issuer)));
    assert!(b_events
        .iter()
        .all(|e| e.2.contains(&b.issuer) && !e.2.contains(&a.issuer)));
    // A's admin on B's webhook page and forms: nothing there for them.
    let page = a_http
        .get(&format!("/companies/{}/webhook", b.company_id))
        .await;
    assert!(matches!(page.status, 403 | 404), "{}", page.status);
    assert!(!page.body.contains(&b_url));
    let own = a_http
        .get(&format!("/companies/{}/webhook", a.company_id))
        .await;
    let r = a_http
        .post(
            &format!("/companies/{}/webhook", b.company_id),
            &[
                ("csrf", &own.csrf()),
                ("url", "https://planted.example.com/"),
            ],
        )
        .await;
    assert!(matches!(r.status, 403 | 404), "{}", r.status);
    let hook = t.service.webhook(&b.company_id).await.unwrap().unwrap();
    assert_eq!(hook.url, b_url);
}

/// A URL that is not an http(s) URL is refused with a 400 that says why; nothing is saved,
/// and what was typed is not echoed as markup.
#[tokio::test]
async fn hostile_webhook_urls_are_refused() {
    let t = TestApp::spawn().await;
    let (app, _, mut http) = company(&t, "gamma").await;
    let path = format!("/companies/{}/webhook", app.company_id);
    let html = format!(
        "https://x.example/{}",
        "<script>alert(1)</script>".repeat(120)
    );
    assert!(html.len() > 3000);
    for (url, says) in [
        ("javascript:alert(1)", "starts with https://"),
        ("file:///etc/passwd", "starts with https://"),
        ("ftp://files.example.com/", "starts with https://"),
        ("hooks.example.com/x", "full URL"),
        (html.as_str(), "at most 2048"),
        (
            "https://x.example/<img src=x onerror=alert(1)>",
            "cannot contain",
        ),
    ] {
        let page = http.get(&path).await;
        let r = http
            .post(&path, &[("csrf", &page.csrf()), ("url", url)])
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert!(r.body.contains(says), "{url}: {}", r.body);
        assert!(!r.body.contains("<script>alert(1)"), "echoed as markup");
        assert!(!r.body.contains("<img src=x"), "echoed as markup");
    }
    assert!(t.service.webhook(&app.company_id).await.unwrap().is_none());
}

//! A company admin's and the operator's pages in the browser: a refresh after creating an
//! application makes no second one, and every page is photographed at desktop and phone width
//! (`target/screenshots/admin-*`).

use crate::harness::*;
use deadbolt::service::By;
use deadbolt_core::Reason;
use deadbolt_store::{AttemptBatch, NewAttempt};

const OPERATOR: &str = "operator@deadbolt.test";
const ADMIN: &str = "admin@initech.test";
const PASSWORD: &str = "a long enough password";

/// Photographs the page at desktop width, then at a phone's, and back; with the element `at`
/// scrolled into view (a screenshot is of the window only).
async fn shots(b: &Browser, name: &str, at: &str) {
    for (width, height, size) in [(1280, 900, "desktop"), (390, 844, "phone")] {
        b.client.set_window_size(width, height).await.unwrap();
        let e = b.find(at).await;
        b.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center'});",
                vec![serde_json::to_value(&e).unwrap()],
            )
            .await
            .unwrap();
        b.shot(&format!("admin-{name}-{size}")).await;
    }
    b.client.set_window_size(1280, 900).await.unwrap();
}

#[tokio::test]
async fn an_admin_creates_an_application_and_a_refresh_makes_no_second() {
    if skipped() {
        return;
    }
    let portal = TestPortal::spawn().await;
    let c = portal.service.create_company("Initech").await.unwrap();
    let admin = portal.person(ADMIN, PASSWORD).await;
    portal
        .store
        .grant_role(&admin.id, "admin", &c.id, t0())
        .await
        .unwrap();
    let second = portal.person("second@initech.test", PASSWORD).await;
    portal
        .store
        .grant_role(&second.id, "admin", &c.id, t0())
        .await
        .unwrap();
    let b = Browser::start().await;
    b.sign_in(&portal.url, ADMIN, PASSWORD).await;
    let company = format!("{}/companies/{}", portal.url, c.id);
    b.goto(&company).await;

    // A refused issuer: said in the form, the input kept.
    b.fill("#issuer", "tps reports.initech.test").await;
    b.fill("#name", "TPS").await;
    b.click("#app-form button[type=submit]").await;
    b.wait_text("#app-error", "host name or URI").await;
    assert_eq!(
        b.find("#name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("TPS")
    );
    shots(&b, "01-refused-issuer", "#app-error").await;

    // Created: the application's page says so; a refresh repeats nothing.
    b.fill("#issuer", "tps.initech.test").await;
    b.click("#app-form button[type=submit]").await;
    b.wait_text("#notice", "Created").await;
    b.client.refresh().await.unwrap();
    b.wait_text("#issuer", "tps.initech.test").await;
    b.goto(&company).await;
    let apps = b
        .client
        .find_all(fantoccini::Locator::Css("#apps li"))
        .await
        .unwrap();
    assert_eq!(apps.len(), 1, "one application after the refresh");
    let apps = portal.service.applications(Some(&c.id)).await.unwrap();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];

    // A labelled signing key, shown once.
    let app_url = format!("{company}/apps/{}", app.id);
    b.goto(&app_url).await;
    b.fill("#key-label", "production pool").await;
    b.click("#new-key").await;
    b.find("#new-secret").await;
    shots(&b, "02-signing-key", "#new-secret").await;
    b.goto(&app_url).await;
    b.wait_text("#keys", "production pool").await;
    shots(&b, "03-application", "#keys").await;

    // Attempts, two pages of them.
    let attempts: Vec<NewAttempt> = (0..230)
        .map(|i| NewAttempt {
            at: t0() + chrono::Duration::seconds(i),
            app_id: app.id.clone(),
            key_id: None,
            account: format!("employee{:03}@initech.test", i % 40),
            locked: i % 4 == 0,
            reason: if i % 4 == 0 {
                Reason::AccountLocked
            } else {
                Reason::AccountUnlocked
            },
            ip: Some("198.51.100.23".into()),
            device: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".into()),
            location: Some("Austin, TX".into()),
            integration_type: Some("cognito".into()),
            integration_data: None,
        })
        .collect();
    portal
        .store
        .record_attempts(&AttemptBatch::new(attempts))
        .await
        .unwrap();
    b.goto(&format!("{app_url}/attempts")).await;
    b.wait_text("#attempts-count", "of 230").await;
    shots(&b, "04-attempts", "#attempts-count").await;
    b.click("#attempts-next").await;
    b.wait_text("#attempts-count", "201–230 of 230").await;

    // Accounts, the delete confirmation, the company with an invitation pending.
    for i in 0..12 {
        portal
            .service
            .enroll(
                &By::CLI,
                &app.id,
                &format!("employee{i:03}@initech.test"),
                None,
            )
            .await
            .unwrap();
    }
    b.goto(&format!("{app_url}/accounts")).await;
    b.find("#accounts-count").await;
    shots(&b, "05-accounts", "#accounts-count").await;
    b.goto(&format!("{app_url}/delete")).await;
    b.find("#confirm-form").await;
    shots(&b, "06-delete-application", "#confirm-form").await;
    b.goto(&company).await;
    b.fill("#invite-email", "milton@initech.test").await;
    b.click("#invite-form button[type=submit]").await;
    b.wait_text("#invitations", "milton@initech.test").await;
    shots(&b, "07-company", "#invitations").await;
    b.click("#admins a.btn").await;
    b.find("#confirm-form").await;
    shots(&b, "08-remove-admin", "#confirm-form").await;
    b.sign_out().await;

    // The operator's pages.
    deadbolt::portal::create_operator(&portal.service, OPERATOR, PASSWORD)
        .await
        .unwrap();
    b.sign_in(&portal.url, OPERATOR, PASSWORD).await;
    b.goto(&format!("{}/operator", portal.url)).await;
    b.find("#companies-count").await;
    shots(&b, "09-operator", "#companies").await;
    b.goto(&format!("{}/operator/companies/{}", portal.url, c.id))
        .await;
    b.find("#rename-form").await;
    shots(&b, "10-operator-company", "#admins").await;
    b.click("#delete-company").await;
    b.find("#confirm-name").await;
    shots(&b, "11-delete-company", "#confirm-name").await;
    b.close().await;
    portal.stop().await;
}

//! The tenant matrix: every role of company A (a person, a company admin, an SDK key, a signing
//! key) against every page and endpoint that names an object of company B, with B's real ids.
//! Each is answered 403 or 404, and B's state is the same afterwards. The routes are read from
//! the router's source, so a new route without a row (or a stated reason for having none) fails.

use crate::helpers::*;
use deadbolt::service::By;
use deadbolt_core::Schedule;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

/// Each with the prefix its router is nested under.
const ROUTER_SOURCES: [(&str, &str); 4] = [
    ("", include_str!("../../src/app.rs")),
    ("", include_str!("../../src/api/mod.rs")),
    ("", include_str!("../../src/portal/mod.rs")),
    (
        "/companies/{cid}",
        include_str!("../../src/portal/company_pages.rs"),
    ),
];

/// `(METHOD, path)` of every route the router declares, as written (`{cid}` and such).
pub fn declared_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (prefix, src) in ROUTER_SOURCES {
        let mut rest = src;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let end = [
                ".route(",
                ".layer(",
                ".merge(",
                ".fallback(",
                ".method_not_allowed_fallback(",
                ".with_state(",
                ".nest(",
            ]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
            let span = &rest[..end];
            let path = match span.trim_start().strip_prefix('"') {
                Some(s) => match &s[..s.find('"').unwrap()] {
                    "/" if !prefix.is_empty() => prefix.to_string(),
                    p => format!("{prefix}{p}"),
                },
                None if span.trim_start().starts_with("CHECK_PATH") => {
                    deadbolt::api::CHECK_PATH.to_string()
                }
                None => panic!("a route whose path is not a literal: {span}"),
            };
            for method in ["get", "post", "put", "patch", "delete"] {
                let call = format!("{method}(");
                if span
                    .match_indices(&call)
                    .any(|(j, _)| j == 0 || !span.as_bytes()[j - 1].is_ascii_alphanumeric())
                {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

/// Routes that name no object of another company, and why they need no row.
const NAMES_NO_OBJECT: &[(&str, &str, &str)] = &[
    ("GET", "/", "redirects by role"),
    ("GET", "/login", "sign-in form"),
    ("POST", "/login", "sign-in form"),
    ("POST", "/logout", "one's own session"),
    ("GET", "/signup", "anonymous form"),
    ("POST", "/signup", "anonymous form"),
    ("GET", "/reset", "anonymous form"),
    ("POST", "/reset", "anonymous form"),
    (
        "GET",
        "/welcome/{token}",
        "an emailed one-time link, not an object id",
    ),
    (
        "POST",
        "/welcome/{token}",
        "an emailed one-time link, not an object id",
    ),
    (
        "GET",
        "/alerts/{token}",
        "an alert email's one-time link, not an object id",
    ),
    (
        "POST",
        "/alerts/{token}",
        "an alert email's one-time link, not an object id",
    ),
    ("GET", "/password", "one's own password"),
    ("POST", "/password", "one's own password"),
    ("GET", "/me", "one's own accounts"),
    ("GET", "/me/events", "one's own accounts"),
    ("POST", "/me/lock-all", "one's own master lock"),
    ("GET", "/me/schedules", "one's own schedules"),
    ("POST", "/me/time-zone", "one's own time zone"),
    ("GET", "/me/pairing", "one's own pairing codes"),
    ("GET", "/me/passkeys", "one's own passkeys"),
    (
        "POST",
        "/me/passkeys/options",
        "one's own passkeys (a JSON request, tested in passkeys.rs)",
    ),
    (
        "POST",
        "/me/passkeys/finish",
        "one's own passkeys: the challenge is bound to its person",
    ),
    (
        "POST",
        "/login/passkey/options",
        "anonymous passkey sign-in",
    ),
    ("POST", "/login/passkey/finish", "anonymous passkey sign-in"),
    (
        "GET",
        "/login/second-factor",
        "a sign-in in progress, named by its cookie",
    ),
    (
        "POST",
        "/login/second-factor/options",
        "a sign-in in progress, named by its cookie",
    ),
    (
        "POST",
        "/login/second-factor/finish",
        "a sign-in in progress, named by its cookie",
    ),
    (
        "POST",
        "/operator/second-factor",
        "the operator's (no company role reaches it)",
    ),
    ("POST", "/me/pairing", "one's own pairing codes"),
    (
        "GET",
        "/operator",
        "the operator's (no company role reaches it)",
    ),
    (
        "POST",
        "/operator/companies",
        "the operator's (no company role reaches it)",
    ),
    ("GET", "/static/{file}", "static files"),
    ("GET", "/favicon.ico", "the site's icon"),
    ("GET", "/healthz", "no tenant data"),
    ("GET", "/readyz", "the server's own readiness"),
    ("GET", "/openapi.json", "the APIs' description"),
    ("GET", "/metrics", "no tenant data"),
];

/// The objects of company B the rows name, with the ids B's own pages use.
#[derive(Clone)]
struct B {
    cid: String,
    aid: String,
    issuer: String,
    signing_key_id: String,
    signing_key: String,
    sdk_key_id: String,
    account_id: String,
    account: String,
    attempt_id: i64,
    schedule_id: String,
    passkey_id: String,
}

/// A signed-in browser: cookies kept by hand, redirects not followed.
struct Session {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    csrf: String,
}

impl Session {
    async fn sign_in(base: &str, email: &str, password: &str) -> Session {
        let mut s = Session {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            csrf: String::new(),
        };
        let (_, form) = s.send(Method::GET, "/login", None).await;
        let csrf = csrf_of(&form);
        let (status, body) = s
            .form(
                "/login",
                &[("csrf", &csrf), ("email", email), ("password", password)],
            )
            .await;
        assert_eq!(status, 303, "sign-in of {email}: {body}");
        let (status, me) = s.send(Method::GET, "/me", None).await;
        assert_eq!(status, 200, "{me}");
        s.csrf = csrf_of(&me);
        s
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> (u16, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", cookie);
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        self.finish(req).await
    }

    async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(fields);
        self.finish(req).await
    }

    async fn finish(&mut self, req: reqwest::RequestBuilder) -> (u16, String) {
        let resp = req.send().await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = resp.status().as_u16();
        // An event stream that was (wrongly) opened would never end: read a bounded prefix.
        let is_stream = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        let body = if is_stream {
            "(an event stream)".to_string()
        } else {
            resp.text().await.unwrap_or_default()
        };
        (status, body)
    }
}

fn csrf_of(page: &str) -> String {
    let i = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[i + 19..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// One portal row: method, route (as declared), the path with B's ids, the form fields.
struct PortalRow {
    method: &'static str,
    route: &'static str,
    path: String,
    fields: Vec<(&'static str, String)>,
    multipart: bool,
}

fn portal_rows(a_cid: &str, a_aid: &str, b: &B) -> Vec<PortalRow> {
    let (cb, ab) = (b.cid.as_str(), b.aid.as_str());
    let row = |method, route, path: String, fields: Vec<(&'static str, String)>| PortalRow {
        method,
        route,
        path,
        fields,
        multipart: false,
    };
    let account = || vec![("account", b.account.clone())];
    // Each company page under B's company, and under A's company with B's application: the
    // admin of A must not reach B's application through A's own company id.
    let mut rows = Vec::new();
    for cid in [cb, a_cid] {
        let app = format!("/companies/{cid}/apps/{ab}");
        rows.extend([
            row("GET", "/companies/{cid}/apps/{aid}", app.clone(), vec![]),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/accounts",
                format!("{app}/accounts?q={}", b.account),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/attempts",
                format!("{app}/attempts"),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/audit",
                format!("{app}/audit"),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/attempts/events",
                format!("{app}/attempts/events"),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/integration",
                format!("{app}/integration"),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/attempts.csv",
                format!("{app}/attempts.csv"),
                vec![],
            ),
            row(
                "GET",
                "/companies/{cid}/apps/{aid}/delete",
                format!("{app}/delete"),
                vec![],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/delete",
                format!("{app}/delete"),
                vec![],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/settings",
                format!("{app}/settings"),
                vec![
                    ("unenrolled", "deny".into()),
                    ("default_state", "locked".into()),
                    ("audit_mode", "on".into()),
                ],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/keys",
                format!("{app}/keys"),
                vec![],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/keys/{kid}/revoke",
                format!("{app}/keys/{}/revoke", b.signing_key_id),
                vec![],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/accounts/enroll",
                format!("{app}/accounts/enroll"),
                vec![
                    ("account", "planted".into()),
                    ("email", "planted@example.com".into()),
                ],
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/accounts/lock",
                format!("{app}/accounts/lock"),
                account(),
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/accounts/unlock",
                format!("{app}/accounts/unlock"),
                account(),
            ),
            row(
                "POST",
                "/companies/{cid}/apps/{aid}/accounts/unlock",
                format!("{app}/accounts/unlock"),
                vec![("account", b.account.clone()), ("minutes", "60".into())],
            ),
            PortalRow {
                multipart: true,
                ..row(
                    "POST",
                    "/companies/{cid}/apps/{aid}/import",
                    format!("{app}/import"),
                    vec![],
                )
            },
            row(
                "POST",
                "/companies/{cid}/sdk-keys/{kid}/revoke",
                format!("/companies/{cid}/sdk-keys/{}/revoke", b.sdk_key_id),
                vec![],
            ),
        ]);
    }
    rows.extend([
        row(
            "GET",
            "/companies/{cid}",
            format!("/companies/{cb}"),
            vec![],
        ),
        row(
            "POST",
            "/companies/{cid}/admins",
            format!("/companies/{cb}/admins"),
            vec![("email", "intruder@example.com".into())],
        ),
        row(
            "POST",
            "/companies/{cid}/apps",
            format!("/companies/{cb}/apps"),
            vec![("issuer", "planted.example.com".into())],
        ),
        row(
            "GET",
            "/companies/{cid}/admins/remove",
            format!("/companies/{cb}/admins/remove?email=admin%40b.example.com"),
            vec![],
        ),
        row(
            "POST",
            "/companies/{cid}/admins/remove",
            format!("/companies/{cb}/admins/remove"),
            vec![("email", "admin@b.example.com".into())],
        ),
        row(
            "POST",
            "/companies/{cid}/invitations/resend",
            format!("/companies/{cb}/invitations/resend"),
            vec![("email", B_INVITED.into())],
        ),
        row(
            "POST",
            "/companies/{cid}/invitations/cancel",
            format!("/companies/{cb}/invitations/cancel"),
            vec![("email", B_INVITED.into())],
        ),
        // The operator's pages of company B: no company role reaches them.
        row(
            "GET",
            "/operator/companies/{cid}",
            format!("/operator/companies/{cb}"),
            vec![],
        ),
        row(
            "POST",
            "/operator/companies/{cid}/rename",
            format!("/operator/companies/{cb}/rename"),
            vec![("name", "Planted".into())],
        ),
        row(
            "POST",
            "/operator/companies/{cid}/admins",
            format!("/operator/companies/{cb}/admins"),
            vec![("email", "intruder@example.com".into())],
        ),
        row(
            "GET",
            "/operator/companies/{cid}/delete",
            format!("/operator/companies/{cb}/delete"),
            vec![],
        ),
        row(
            "POST",
            "/operator/companies/{cid}/delete",
            format!("/operator/companies/{cb}/delete"),
            vec![("confirm", "company of b.example.com".into())],
        ),
        row(
            "POST",
            "/companies/{cid}/sdk-keys",
            format!("/companies/{cb}/sdk-keys"),
            vec![],
        ),
        // A's own application, B's signing key.
        row(
            "POST",
            "/companies/{cid}/apps/{aid}/keys/{kid}/revoke",
            format!(
                "/companies/{a_cid}/apps/{a_aid}/keys/{}/revoke",
                b.signing_key_id
            ),
            vec![],
        ),
        // The person's pages, with B's person's account, attempt and schedule.
        row(
            "GET",
            "/me/accounts/{id}",
            format!("/me/accounts/{}", b.account_id),
            vec![],
        ),
        row(
            "POST",
            "/me/attempts/{id}/not-me",
            format!("/me/attempts/{}/not-me", b.attempt_id),
            vec![],
        ),
        row(
            "POST",
            "/me/accounts/{id}/alerts",
            format!("/me/accounts/{}/alerts", b.account_id),
            vec![("on", "0".into())],
        ),
        row(
            "GET",
            "/companies/{cid}/webhook",
            format!("/companies/{cb}/webhook"),
            vec![],
        ),
        row(
            "POST",
            "/companies/{cid}/webhook",
            format!("/companies/{cb}/webhook"),
            vec![("url", "https://planted.example.com/".into())],
        ),
        row(
            "POST",
            "/companies/{cid}/webhook/delete",
            format!("/companies/{cb}/webhook/delete"),
            vec![],
        ),
        row(
            "POST",
            "/me/accounts/{id}/lock",
            format!("/me/accounts/{}/lock", b.account_id),
            vec![],
        ),
        row(
            "POST",
            "/me/accounts/{id}/unlock",
            format!("/me/accounts/{}/unlock", b.account_id),
            vec![],
        ),
        row(
            "POST",
            "/me/accounts/{id}/unlock",
            format!("/me/accounts/{}/unlock", b.account_id),
            vec![("minutes", "once".into())],
        ),
        row(
            "POST",
            "/me/attempts/{id}/this-was-me",
            format!("/me/attempts/{}/this-was-me", b.attempt_id),
            vec![],
        ),
        row(
            "POST",
            "/me/passkeys/{id}/delete",
            format!("/me/passkeys/{}/delete", b.passkey_id),
            vec![],
        ),
        row(
            "POST",
            "/me/schedules/{id}/delete",
            format!("/me/schedules/{}/delete", b.schedule_id),
            vec![],
        ),
        row(
            "POST",
            "/me/schedules",
            "/me/schedules".into(),
            vec![
                ("account", b.account_id.clone()),
                ("days", "all".into()),
                ("from", "00:00".into()),
                ("to", "00:00".into()),
            ],
        ),
    ]);
    rows
}

/// Who company B has invited to administer it (a pending invitation the rows try to resend or
/// cancel).
const B_INVITED: &str = "invited@b.example.com";

/// One API row: the route, the request, the credential of A it carries.
struct ApiRow {
    route: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    /// The refusal expected.
    status: u16,
}

fn sdk_rows(b: &B) -> Vec<ApiRow> {
    let target = json!({"domain": b.issuer, "userAccountId": b.account});
    let row = |route, method, path: String, body: Option<Value>, status| ApiRow {
        route,
        method,
        path,
        body,
        status,
    };
    vec![
        row(
            "/nl3/api/v1/sdk/lock",
            Method::POST,
            "lock".into(),
            Some(target.clone()),
            403,
        ),
        row(
            "/nl3/api/v1/sdk/unlock",
            Method::POST,
            "unlock".into(),
            Some(target.clone()),
            403,
        ),
        row(
            "/nl3/api/v1/sdk/unlock",
            Method::POST,
            "unlock".into(),
            Some(json!({"domain": b.issuer, "userAccountId": b.account, "minutes": 60})),
            403,
        ),
        row(
            "/nl3/api/v1/sdk/status",
            Method::GET,
            format!("status?domain={}&userAccountId={}", b.issuer, b.account),
            None,
            403,
        ),
        row(
            "/nl3/api/v1/sdk/attempts",
            Method::GET,
            format!("attempts?domain={}", b.issuer),
            None,
            403,
        ),
        row(
            "/nl3/api/v1/sdk/attempts",
            Method::GET,
            format!("attempts?domain={}&since=0", b.issuer),
            None,
            403,
        ),
        row(
            "/nl3/api/v1/sdk/importUsers",
            Method::POST,
            "importUsers".into(),
            Some(
                json!([{"domain": b.issuer, "userAccountId": "planted", "email": "planted@example.com"}]),
            ),
            400,
        ),
        row(
            "/nl3/api/v1/sdk/importUsers",
            Method::POST,
            "importUsers".into(),
            Some(
                json!([{"domain": b.issuer, "userAccountId": b.account, "email": "intruder@example.com"}]),
            ),
            400,
        ),
        row(
            "/nl3/api/v1/sdk/pair",
            Method::POST,
            "pair".into(),
            Some(json!({"code": "ABCD-EFGH", "domain": b.issuer, "userAccountId": b.account})),
            403,
        ),
    ]
}

/// B's state as text: everything a row might have changed.
async fn snapshot(t: &TestApp, b: &B, b_person: &str) -> String {
    let s = &t.store;
    let apps = s.applications(Some(&b.cid)).await.unwrap();
    let mut out = format!("{apps:?}\n");
    for app in &apps {
        out += &format!("{:?}\n", s.signing_keys(&app.id).await.unwrap());
        out += &format!("{:?}\n", s.accounts(&app.id, None, 1000).await.unwrap());
        out += &format!(
            "{}\n",
            s.recent_attempts(&app.id, 1000).await.unwrap().len()
        ); // Nothing A tried left a change in B's audit trail either.
        out += &format!("{:?}\n", s.app_audit(&app.id, None, 1000).await.unwrap());
    }
    out += &format!("{:?}\n", s.company(&b.cid).await.unwrap());
    out += &format!(
        "{:?}\n",
        t.service.pending_invitations(&b.cid).await.unwrap()
    );
    out += &format!("{:?}\n", s.sdk_keys(&b.cid).await.unwrap());
    out += &format!("{:?}\n", s.company_admins(&b.cid).await.unwrap());
    let person = s.person_by_email(b_person).await.unwrap().unwrap();
    out += &format!(
        "{person:?}\n{:?}\n{:?}\n",
        s.person_schedules(&person.id).await.unwrap(),
        s.passkeys(&person.id).await.unwrap()
    );
    out
}

#[tokio::test]
async fn company_a_reaches_nothing_of_company_b_sqlite() {
    matrix(TestApp::spawn().await).await;
}

#[tokio::test]
async fn company_a_reaches_nothing_of_company_b_postgres() {
    if let Some(t) = TestApp::spawn_pg().await {
        matrix(t).await;
    }
}

async fn matrix(t: TestApp) {
    let now = deadbolt_core::Clock::now(&*t.clock);
    // Company A: an application with a key, an admin, a person with an account, an SDK key.
    let a = t.app("a.example.com").await;
    let a_key = t.key(&a).await;
    let (_, a_sdk) = t.service.create_sdk_key(&a.company_id).await.unwrap();
    let a_admin = t
        .service
        .create_person("admin@a.example.com", Some("admin-a-password"), None)
        .await
        .unwrap();
    t.store
        .grant_role(&a_admin.id, "admin", &a.company_id, now)
        .await
        .unwrap();
    t.service
        .create_person("person@a.example.com", Some("person-a-password"), None)
        .await
        .unwrap();
    t.service
        .enroll(&By::CLI, &a.id, "pa", Some("person@a.example.com"))
        .await
        .unwrap();

    // Company B: the same, with a locked account that has a blocked attempt and a schedule.
    let b_app = t.app("b.example.com").await;
    let (signing_key_id, signing_key) = t.service.create_signing_key(&b_app.id).await.unwrap();
    let (sdk_key_id, _) = t.service.create_sdk_key(&b_app.company_id).await.unwrap();
    let b_admin = t
        .service
        .create_person("admin@b.example.com", None, None)
        .await
        .unwrap();
    t.store
        .grant_role(&b_admin.id, "admin", &b_app.company_id, now)
        .await
        .unwrap();
    let b_person = t
        .service
        .create_person("person@b.example.com", None, None)
        .await
        .unwrap();
    let b_passkey = t
        .store
        .add_passkey(
            &deadbolt_store::NewPasskey {
                person_id: &b_person.id,
                user_handle: "00000000-0000-4000-8000-00000000000b",
                credential_id: "b's credential",
                name: "B's laptop",
                credential: "{}",
                counter: 0,
            },
            &deadbolt_store::AuditBy::default(),
            now,
        )
        .await
        .unwrap();
    t.service
        .create_link(
            "a hash of B's invitation",
            "admin_invite",
            B_INVITED,
            Some(&b_app.company_id),
            now,
            now + chrono::Duration::days(7),
        )
        .await
        .unwrap();
    let (acc, _) = t
        .service
        .enroll(&By::CLI, &b_app.id, "pb", Some("person@b.example.com"))
        .await
        .unwrap();
    t.service.lock(&By::CLI, &b_app.id, "pb").await.unwrap();
    let schedule = t
        .service
        .add_schedule(
            &By::CLI,
            "person@b.example.com",
            None,
            Schedule::parse("mon", "01:00-02:00").unwrap(),
        )
        .await
        .unwrap();
    assert!(t.locked("b.example.com", &signing_key, "pb").await);
    let service = t.service.clone();
    let bid = b_app.id.clone();
    eventually(|| {
        let (service, bid) = (service.clone(), bid.clone());
        async move { !service.attempts(&bid, 10).await.unwrap().is_empty() }
    })
    .await;
    let attempt_id = t.service.attempts(&b_app.id, 10).await.unwrap()[0].id;
    let b = B {
        cid: b_app.company_id.clone(),
        aid: b_app.id.clone(),
        issuer: "b.example.com".into(),
        signing_key_id,
        signing_key,
        sdk_key_id,
        account_id: acc.id,
        account: "pb".into(),
        attempt_id,
        schedule_id: schedule.id,
        passkey_id: b_passkey.id,
    };
    let before = snapshot(&t, &b, "person@b.example.com").await;

    // Every declared route has rows or a reason to have none.
    let portal = portal_rows(&a.company_id, &a.id, &b);
    let sdk = sdk_rows(&b);
    let mut covered: BTreeSet<(String, String)> = portal
        .iter()
        .map(|r| (r.method.to_string(), r.route.to_string()))
        .chain(
            sdk.iter()
                .map(|r| (r.method.to_string(), r.route.to_string())),
        )
        .chain(
            NAMES_NO_OBJECT
                .iter()
                .map(|(m, p, _)| (m.to_string(), p.to_string())),
        )
        .collect();
    covered.insert(("POST".into(), deadbolt::api::CHECK_PATH.into()));
    let declared = declared_routes();
    assert!(
        declared.len() > 40,
        "routes read from the router: {declared:?}"
    );
    let missing: Vec<_> = declared.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a tenant row: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    // The portal, as A's person and as A's admin, with their own sessions and CSRF tokens.
    let mut failures = Vec::new();
    let mut count = 0;
    for (who, email, password) in [
        ("A's person", "person@a.example.com", "person-a-password"),
        ("A's admin", "admin@a.example.com", "admin-a-password"),
    ] {
        let mut s = Session::sign_in(&t.url, email, password).await;
        // The session works: A's own pages answer.
        let own = if who == "A's admin" {
            format!("/companies/{}/apps/{}", a.company_id, a.id)
        } else {
            "/me".to_string()
        };
        assert_eq!(s.send(Method::GET, &own, None).await.0, 200, "{who}: {own}");
        for r in &portal {
            // Each form token is good for one form: a fresh one for every row.
            if r.method != "GET" {
                let (_, me) = s.send(Method::GET, "/me", None).await;
                s.csrf = csrf_of(&me);
            }
            let csrf = s.csrf.clone();
            let got = match (r.method, r.multipart) {
                ("GET", _) => s.send(Method::GET, &r.path, None).await,
                (_, true) => {
                    let boundary = "deadbolt-tenant-matrix";
                    let form = format!(
                        "--{boundary}\r\ncontent-disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
                         --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"users.csv\"\r\n\
                         content-type: text/csv\r\n\r\nuserAccountId,email\nplanted,planted@example.com\n\r\n\
                         --{boundary}--\r\n"
                    );
                    let content_type = format!("multipart/form-data; boundary={boundary}");
                    s.send(
                        Method::POST,
                        &r.path,
                        Some((content_type, form.into_bytes())),
                    )
                    .await
                }
                _ => {
                    let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf)];
                    fields.extend(r.fields.iter().map(|(k, v)| (*k, v.as_str())));
                    s.form(&r.path, &fields).await
                }
            };
            count += 1;
            if got.0 != 404 || !got.1.contains("This page does not exist") {
                failures.push(format!(
                    "{who} {} {}: {} {}",
                    r.method,
                    r.path,
                    got.0,
                    &got.1[..got.1.len().min(200)]
                ));
            }
        }
        // The session is still good (no row signed A out or spent the CSRF token).
        assert_eq!(
            s.send(Method::GET, &own, None).await.0,
            200,
            "{who} still signed in"
        );
    }

    // The SDK API with A's key.
    for r in &sdk {
        let got = t
            .sdk(r.method.clone(), &r.path, &a_sdk, r.body.clone())
            .await;
        count += 1;
        if got.0 != r.status || got.1.get("message").is_none() || got.1.get("locked").is_some() {
            failures.push(format!("SDK {} {}: {} {}", r.method, r.path, got.0, got.1));
        }
    }

    // The check API with A's signing key: B's issuer is refused; B's account name, asked as A,
    // is A's (not enrolled there, so allowed) and never B's lock.
    let forged = t.token("b.example.com", &a_key, "pb");
    let got = t.check_raw(Some(&forged), "{}").await;
    count += 1;
    if got.0 != 401 {
        failures.push(format!("check as B with A's key: {} {}", got.0, got.1));
    }
    let as_a = t.token("a.example.com", &a_key, "pb");
    count += 1;
    let got = t.check_raw(Some(&as_a), "{}").await;
    if got != (200, json!({"locked": false})) {
        failures.push(format!(
            "check of B's account name as A: {} {}",
            got.0, got.1
        ));
    }
    // B's key cannot be used for A's issuer either (B's key is not A's).
    let got = t
        .check_raw(Some(&t.token("a.example.com", &b.signing_key, "pa")), "{}")
        .await;
    count += 1;
    if got.0 != 401 {
        failures.push(format!("check as A with B's key: {} {}", got.0, got.1));
    }
    assert!(
        failures.is_empty(),
        "{} of {count} rows reached B:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 70, "{count} rows");

    // Nothing of B changed, and B still works.
    let service = t.service.clone();
    let aid = a.id.clone();
    // The check rows as A are recorded on A: wait for them so that the writer is idle.
    eventually(|| {
        let (service, aid) = (service.clone(), aid.clone());
        async move { !service.attempts(&aid, 10).await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(before, snapshot(&t, &b, "person@b.example.com").await);
    assert!(t.locked("b.example.com", &b.signing_key, "pb").await);
}

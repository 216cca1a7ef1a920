//! Portal forms: each form token is good for one form (a refresh or a second click does
//! nothing twice), the answer to a form is a page that says what was done, and signing in
//! leads back to the page that was asked for.

use crate::helpers::TestApp;
use crate::portal::Http;

const OPERATOR: &str = "operator@example.test";
const PERSON: &str = "pat@example.test";
const PASSWORD: &str = "a long enough password";

async fn operator(t: &TestApp) -> Http {
    deadbolt::portal::create_operator(&t.service, OPERATOR, PASSWORD)
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(OPERATOR, PASSWORD).await.status, 303);
    http
}

/// The token of the first form on a page after the sign-out form's (which has its own).
fn form_token(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let mut found = body.match_indices(marker).map(|(i, _)| {
        let rest = &body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    });
    found.next().expect("the sign-out form");
    found.next().expect("a form on the page")
}

#[tokio::test]
async fn a_form_sent_twice_does_its_work_once() {
    let t = TestApp::spawn().await;
    let mut op = operator(&t).await;
    let token = form_token(&op.get("/operator").await.body);
    let form = [
        ("csrf", token.as_str()),
        ("name", "Acme"),
        ("admin_email", "admin@acme.test"),
    ];
    let first = op.post("/operator/companies", &form).await;
    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.header("location"), "/operator?done=invited");
    // The refresh of the answer, or a second click: the same form again.
    let again = op.post("/operator/companies", &form).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert!(again.header("location").ends_with("done=again"));
    assert_eq!(t.service.companies().await.unwrap().len(), 1);
    // The page the answer leads to says what happened; the repeat says nothing was done.
    let page = op.get("/operator?done=invited").await.body;
    assert!(page.contains("its first admin has been invited"), "{page}");
    let page = op.get("/operator?done=again").await.body;
    assert!(page.contains("nothing was done a second time"), "{page}");
    // A new page's form is a new form.
    let token = form_token(&op.get("/operator").await.body);
    let other = op
        .post(
            "/operator/companies",
            &[
                ("csrf", token.as_str()),
                ("name", "Globex"),
                ("admin_email", "admin@globex.test"),
            ],
        )
        .await;
    assert_eq!(other.status, 303);
    assert_eq!(t.service.companies().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_repeated_form_leads_back_to_the_page_it_came_from_on_this_site_only() {
    let t = TestApp::spawn().await;
    let mut op = operator(&t).await;
    let token = form_token(&op.get("/operator").await.body);
    let form = [
        ("csrf", token.as_str()),
        ("name", "Acme"),
        ("admin_email", "admin@acme.test"),
    ];
    assert_eq!(op.post("/operator/companies", &form).await.status, 303);
    for (referer, back) in [
        (
            format!("{}/operator?page=2", t.url),
            "/operator?page=2&done=again",
        ),
        (
            "https://evil.example/operator".to_string(),
            "/operator?done=again",
        ),
        (
            "https://evil.example//evil.example/".to_string(),
            "/me?done=again",
        ),
        ("not a url".to_string(), "/me?done=again"),
    ] {
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}/operator/companies", t.url))
            .header("cookie", cookie_header(&op))
            .header("referer", referer.as_str())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()["location"], back, "referer {referer}");
    }
    assert_eq!(t.service.companies().await.unwrap().len(), 1);
}

fn cookie_header(http: &Http) -> String {
    http.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_form_token_of_another_session_or_made_up_is_refused() {
    let t = TestApp::spawn().await;
    t.service
        .create_person(PERSON, Some(PASSWORD), None)
        .await
        .unwrap();
    let mut op = operator(&t).await;
    let mut pat = Http::new(&t.url);
    assert_eq!(pat.login(PERSON, PASSWORD).await.status, 303);
    let pats = pat.get("/me").await.csrf();
    let (nonce, _) = pats.split_once('.').unwrap();
    for token in [
        pats.clone(),
        format!("{nonce}.{}", "A".repeat(43)),
        nonce.to_string(),
        String::new(),
        "<script>".to_string(),
    ] {
        let page = op
            .post(
                "/operator/companies",
                &[
                    ("csrf", token.as_str()),
                    ("name", "Forged"),
                    ("admin_email", "a@forged.test"),
                ],
            )
            .await;
        assert_eq!(page.status, 403, "token {token:?}: {}", page.body);
    }
    assert!(t.service.companies().await.unwrap().is_empty());
}

#[tokio::test]
async fn signing_out_works_from_a_page_whose_form_was_used() {
    let t = TestApp::spawn().await;
    let mut op = operator(&t).await;
    let page = op.get("/operator").await.body;
    let sign_out = {
        let marker = "name=\"csrf\" value=\"";
        let i = page.find(marker).unwrap() + marker.len();
        page[i..i + page[i..].find('"').unwrap()].to_string()
    };
    let token = form_token(&page);
    assert_ne!(sign_out, token, "the sign-out form has its own token");
    let form = [
        ("csrf", token.as_str()),
        ("name", "Acme"),
        ("admin_email", "admin@acme.test"),
    ];
    assert_eq!(op.post("/operator/companies", &form).await.status, 303);
    // Back to the page as it was (its forms used), then sign out from it.
    let out = op.post("/logout", &[("csrf", sign_out.as_str())]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), "/login");
    assert_eq!(op.get("/operator").await.status, 303, "signed out");
}

#[tokio::test]
async fn signing_in_leads_back_to_the_page_asked_for() {
    let t = TestApp::spawn().await;
    t.service
        .create_person(PERSON, Some(PASSWORD), None)
        .await
        .unwrap();
    let mut pat = Http::new(&t.url);
    let asked = pat.get("/me/schedules?x=1").await;
    assert_eq!(asked.status, 303);
    assert_eq!(
        asked.header("location"),
        "/login?next=%2Fme%2Fschedules%3Fx%3D1"
    );
    let login = pat.get(&asked.header("location")).await.body;
    assert!(
        login.contains("name=\"next\" value=\"/me/schedules?x=1\""),
        "{login}"
    );
    let csrf = pat.pre_csrf().await;
    let signed_in = pat
        .post(
            "/login",
            &[
                ("csrf", csrf.as_str()),
                ("email", PERSON),
                ("password", PASSWORD),
                ("next", "/me/schedules?x=1"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), "/me/schedules?x=1");
    // Somewhere else than a page of this site: the start page instead.
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/me\r\nSet-Cookie: x=1",
        "javascript:alert(1)",
        "/login",
        "",
    ] {
        let mut other = Http::new(&t.url);
        let csrf = other.pre_csrf().await;
        let page = other
            .post(
                "/login",
                &[
                    ("csrf", csrf.as_str()),
                    ("email", PERSON),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "next {next:?}");
        assert_eq!(page.header("location"), "/", "next {next:?}");
        let shown = other
            .get(&format!(
                "/login?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(shown.status, 303, "signed in already: to the start");
        assert_eq!(shown.header("location"), "/");
    }
    // A form posted while signed out asks to sign in, with nowhere to come back to.
    let mut out = Http::new(&t.url);
    let page = out
        .post("/me/lock-all", &[("csrf", "x"), ("on", "1")])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");
}

#[tokio::test]
async fn a_notice_is_one_of_the_fixed_list() {
    let t = TestApp::spawn().await;
    t.service
        .create_person(PERSON, Some(PASSWORD), None)
        .await
        .unwrap();
    let mut pat = Http::new(&t.url);
    assert_eq!(pat.login(PERSON, PASSWORD).await.status, 303);
    let page = pat.get("/me?done=locked").await.body;
    assert!(page.contains("id=\"notice\">Locked.</p>"), "{page}");
    // The live list of blocked sign-ins is announced by screen readers as it grows.
    assert!(page.contains("id=\"attempts\" class=\"feed\" aria-live=\"polite\""));
    for q in ["done=%3Cscript%3E", "done=Locked.", "done=", "x=locked"] {
        let page = pat.get(&format!("/me?{q}")).await.body;
        assert!(!page.contains("id=\"notice\""), "{q}: {page}");
    }
}

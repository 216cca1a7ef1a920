//! Nothing secret in the logs, at any level, on either engine: the real binary runs a whole
//! scenario with `RUST_LOG=trace` and its stderr is searched for every secret it made.
//! Emails go to an SMTP receiver here (without SMTP, the portal writes them to the log on
//! purpose, which the README says is for a laptop only).

use crate::helpers::sign;
use crate::portal::{Http, Page};
use crate::smtp::{smtp_receiver, Inbox};
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Waits for the `n`-th email (from 1) to `to` and returns the link in it.
pub async fn emailed_link(inbox: &Inbox, to: &str, n: usize) -> String {
    for _ in 0..250 {
        let body = inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == to)
            .nth(n - 1)
            .map(|(_, b)| b.clone());
        if let Some(body) = body {
            let start = body.find("http://").expect("a link in the email");
            return body[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no email to {to}");
}

/// The secret shown once on a page.
fn shown_secret(page: &Page) -> String {
    let i = page
        .body
        .find("id=\"new-secret\">")
        .unwrap_or_else(|| panic!("no secret shown: {}", page.body));
    let rest = &page.body[i + 16..];
    rest[..rest.find('<').unwrap()].to_string()
}

fn sha256_hex(s: &str) -> String {
    deadbolt::crypto::token_hash(s)
}

struct Server {
    child: Child,
    url: String,
    stderr: std::thread::JoinHandle<String>,
}

fn deadbolt(db: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deadbolt"));
    cmd.arg("--db")
        .arg(db)
        .env("RUST_LOG", "trace")
        .env_remove("DEADBOLT_LOG_FORMAT")
        .env_remove("DEADBOLT_PUBLIC_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Server {
    fn start(db: &str, env: &[(&str, String)]) -> Self {
        let mut child = deadbolt(db, env)
            .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr.read_to_string(&mut all);
            all
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line).unwrap();
        Self {
            child,
            url: started["url"].as_str().unwrap().to_string(),
            stderr,
        }
    }

    /// Stops the server (SIGTERM, then waits); returns everything it logged.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.stderr.join().unwrap()
    }
}

#[tokio::test]
async fn no_secret_is_logged_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
    scenario(&db).await;
}

#[tokio::test]
async fn no_secret_is_logged_on_postgres() {
    let Some(admin) = deadbolt_store::testing::pg_admin_url() else {
        return;
    };
    let db = deadbolt_store::testing::fresh_pg_url(&admin).await.unwrap();
    scenario(&db).await;
}

async fn scenario(db: &str) {
    let (smtp, inbox) = smtp_receiver();
    let master_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let env = [
        ("DEADBOLT_SMTP_URL", format!("smtp://127.0.0.1:{smtp}")),
        (
            "DEADBOLT_MAIL_FROM",
            "Deadbolt <deadbolt@test.example>".into(),
        ),
        ("DEADBOLT_MASTER_KEY", master_key.clone()),
    ];
    let mut secrets: Vec<(&str, String)> = vec![("master key", master_key)];
    let mut logs = String::new();

    // The operator, from the CLI.
    let op_password = "the operator's long password";
    secrets.push(("operator password", op_password.into()));
    let out = deadbolt(db, &env)
        .args(["operator", "create", "--email", "op@example.test"])
        .env("DEADBOLT_OPERATOR_PASSWORD", op_password)
        .output()
        .unwrap();
    assert!(out.status.success());
    logs.push_str(&String::from_utf8_lossy(&out.stderr));

    let server = Server::start(db, &env);
    let url = server.url.clone();

    // The operator signs in and creates a company, inviting its admin.
    let mut op = Http::new(&url);
    assert_eq!(op.login("op@example.test", op_password).await.status, 303);
    let csrf = op.get("/operator").await.csrf();
    secrets.push(("operator CSRF token", csrf.clone()));
    let page = op
        .post(
            "/operator/companies",
            &[
                ("csrf", &csrf),
                ("name", "Acme"),
                ("admin_email", "admin@example.test"),
            ],
        )
        .await;
    // Post/redirect/get: the answer is a redirect to the operator's page.
    assert_eq!(page.status, 303, "{}", page.body);

    // The admin accepts and makes an application, a signing key and an SDK key.
    let invite = emailed_link(&inbox, "admin@example.test", 1).await;
    secrets.push(("invitation link", invite.clone()));
    let admin_password = "the admin's long password";
    secrets.push(("admin password", admin_password.into()));
    let mut admin = Http::new(&url);
    let csrf = admin.get(&invite).await.csrf();
    secrets.push(("pre-sign-in CSRF token", csrf.clone()));
    let page = admin
        .post(
            &invite,
            &[
                ("csrf", &csrf),
                ("password", admin_password),
                ("confirm", admin_password),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let company = page.header("location");
    let csrf = admin.get(&company).await.csrf();
    secrets.push(("admin CSRF token", csrf.clone()));
    let page = admin
        .post(
            &format!("{company}/apps"),
            &[
                ("csrf", &csrf),
                ("issuer", "app.example.test"),
                ("name", "App"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // The application's page, without the notice the redirect adds.
    let app = page.header("location");
    let app = app.split('?').next().unwrap().to_string();
    // A form token is good for one form: each post takes the one of a fresh page.
    let csrf = admin.get(&app).await.csrf();
    secrets.push(("admin CSRF token", csrf.clone()));
    let key = shown_secret(&admin.post(&format!("{app}/keys"), &[("csrf", &csrf)]).await);
    secrets.push(("signing key", key.clone()));
    let csrf = admin.get(&company).await.csrf();
    secrets.push(("admin CSRF token", csrf.clone()));
    let sdk_key = shown_secret(
        &admin
            .post(&format!("{company}/sdk-keys"), &[("csrf", &csrf)])
            .await,
    );
    secrets.push(("SDK key", sdk_key.clone()));

    // The company's back end imports a person and locks their account; the app checks it.
    let http = reqwest::Client::new();
    let sdk = |path: &str, body: Value| {
        http.post(format!("{url}/nl3/api/v1/sdk/{path}"))
            .header("x-nl3-server-api-token", &sdk_key)
            .body(body.to_string())
            .send()
    };
    let r = sdk(
        "importUsers",
        json!([{"first_name": "Pat", "last_name": "Doe", "email": "pat@example.test",
                "domain": "app.example.test", "phone": "", "userAccountId": "pat"}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = sdk(
        "lock",
        json!({"domain": "app.example.test", "userAccountId": "pat"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let now = {
        use deadbolt_core::Clock;
        deadbolt_core::SystemClock.now().timestamp() as f64
    };
    let token = sign(
        &json!({"iss": "app.example.test", "aud": url, "sub": "pat", "iat": now - 60.0, "exp": now + 300.0}),
        &key,
    );
    secrets.push(("check token", token.clone()));
    let r = http
        .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
        .header("x-nl3-authorization-token", &token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["locked"], true);

    // The person signs up, changes their password, forgets it and resets it.
    let mut pat = Http::new(&url);
    let csrf = pat.pre_csrf().await;
    let page = pat
        .post("/signup", &[("csrf", &csrf), ("email", "pat@example.test")])
        .await;
    assert_eq!(page.status, 200);
    let signup = emailed_link(&inbox, "pat@example.test", 1).await;
    secrets.push(("sign-up link", signup.clone()));
    let passwords = [
        "pat's first long password",
        "pat's second long password",
        "pat's third long password",
    ];
    for p in passwords {
        secrets.push(("person password", p.into()));
    }
    let page = pat
        .post(
            &signup,
            &[
                ("csrf", &csrf),
                ("password", passwords[0]),
                ("confirm", passwords[0]),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let csrf = pat.get("/password").await.csrf();
    secrets.push(("person CSRF token", csrf.clone()));
    let page = pat
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("current", passwords[0]),
                ("password", passwords[1]),
                ("confirm", passwords[1]),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut again = Http::new(&url);
    let csrf = again.pre_csrf().await;
    let page = again
        .post("/reset", &[("csrf", &csrf), ("email", "pat@example.test")])
        .await;
    assert_eq!(page.status, 200);
    let reset = emailed_link(&inbox, "pat@example.test", 2).await;
    secrets.push(("reset link", reset.clone()));
    let page = again
        .post(
            &reset,
            &[
                ("csrf", &csrf),
                ("password", passwords[2]),
                ("confirm", passwords[2]),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        Http::new(&url)
            .login("pat@example.test", passwords[2])
            .await
            .status,
        303
    );

    // Every session id, and what the store keeps of the secrets.
    for http in [&op, &admin, &pat, &again] {
        for (name, value) in &http.cookies {
            secrets.push(("cookie", value.clone()));
            if name == "deadbolt_session" {
                secrets.push(("session id hash", sha256_hex(value)));
            }
        }
    }
    for link in [&invite, &signup, &reset] {
        let token = link.rsplit('/').next().unwrap().to_string();
        secrets.push(("link token hash", sha256_hex(&token)));
        secrets.push(("link token", token));
    }
    secrets.push(("SDK key hash", sha256_hex(&sdk_key)));
    logs.push_str(&server.stop());
    let store = deadbolt_store::Store::open(db).await.unwrap();
    for email in ["op@example.test", "admin@example.test", "pat@example.test"] {
        let (_, hash) = store.password_hash(email).await.unwrap().unwrap();
        let hash = hash.unwrap();
        // The salt and the digest, each alone, are secrets too.
        for part in hash.rsplit('$').take(2) {
            secrets.push(("password hash part", part.to_string()));
        }
        secrets.push(("password hash", hash));
    }

    // The capture works: the server logged at trace level.
    assert!(logs.contains("TRACE"), "no trace-level logs captured");
    for (what, secret) in &secrets {
        assert!(secret.len() >= 10, "{what}: {secret:?}");
        assert!(
            !logs.contains(secret.as_str()),
            "the {what} {secret:?} is in the logs"
        );
    }
}

//! The operator CLI as a separate process, writing the store while a server runs.

use crate::helpers::*;
use deadbolt::service::By;
use serde_json::Value;
use std::process::{Command, Stdio};

/// Runs the CLI on the store `db_url`; asserts success and one JSON line, which it returns.
pub fn deadbolt(db_url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .arg("--db")
        .arg(db_url)
        .args(args)
        .env_remove("DEADBOLT_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deadbolt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Runs the CLI expecting it to fail; its standard error.
pub fn deadbolt_fails(db_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .arg("--db")
        .arg(db_url)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "deadbolt {args:?} should fail");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn a_cli_change_is_enforced_by_the_next_check() {
    let t = TestApp::spawn().await;
    // The CLI runs on the real clock: put the server's clock there too.
    t.clock
        .set(deadbolt_core::Clock::now(&deadbolt_core::SystemClock));
    let db = t.db_url.clone();
    let company = deadbolt(&db, &["company", "create", "--name", "Acme"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let app = deadbolt(
        &db,
        &[
            "app",
            "create",
            "--company",
            &company,
            "--issuer",
            "https://cli.example.com",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = deadbolt(&db, &["key", "create", "--app", &app])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    deadbolt(
        &db,
        &[
            "person",
            "create",
            "--email",
            "cli@example.com",
            "--time-zone",
            "Europe/Paris",
        ],
    );
    deadbolt(
        &db,
        &[
            "account",
            "enroll",
            "--app",
            &app,
            "--account",
            "carol",
            "--person",
            "cli@example.com",
        ],
    );
    let iss = "cli.example.com";
    assert!(!t.locked(iss, &key, "carol").await);
    // Warm the cache, then change the state from another process.
    assert!(!t.locked(iss, &key, "carol").await);
    deadbolt(
        &db,
        &["account", "lock", "--app", &app, "--account", "carol"],
    );
    assert!(
        t.locked(iss, &key, "carol").await,
        "the very next check sees the lock"
    );
    let shown = deadbolt(
        &db,
        &["account", "show", "--app", &app, "--account", "carol"],
    );
    assert_eq!(
        (shown["locked"].as_bool(), shown["reason"].as_str()),
        (Some(true), Some("account_locked"))
    );
    deadbolt(
        &db,
        &[
            "account",
            "unlock",
            "--app",
            &app,
            "--account",
            "carol",
            "--for",
            "15m",
        ],
    );
    assert!(!t.locked(iss, &key, "carol").await);
    deadbolt(&db, &["person", "lock-all", "--email", "cli@example.com"]);
    assert!(t.locked(iss, &key, "carol").await);
    deadbolt(&db, &["person", "unlock-all", "--email", "cli@example.com"]);
    deadbolt(
        &db,
        &["account", "lock", "--app", &app, "--account", "carol"],
    );
    let once = deadbolt(
        &db,
        &[
            "account",
            "unlock",
            "--app",
            &app,
            "--account",
            "carol",
            "--once",
        ],
    );
    assert_eq!(once["relock_after_use"], true);
    assert!(
        !t.locked(iss, &key, "carol").await,
        "the next sign-in gets through"
    );
    assert!(t.locked(iss, &key, "carol").await, "and only that one");
    deadbolt(
        &db,
        &["account", "unlock", "--app", &app, "--account", "carol"],
    );
    assert!(!t.locked(iss, &key, "carol").await);
    deadbolt(
        &db,
        &[
            "schedule",
            "add",
            "--person",
            "cli@example.com",
            "--days",
            "all",
            "--window",
            "00:00-00:00",
        ],
    );
    assert!(
        t.locked(iss, &key, "carol").await,
        "a schedule added by the CLI"
    );
    let keys = deadbolt(&db, &["key", "list", "--app", &app]);
    let key_id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    deadbolt(&db, &["key", "revoke", "--id", &key_id]);
    assert_refused(
        &t.check_raw(Some(&t.token(iss, &key, "carol")), "{}").await,
        401,
    );

    let attempts = deadbolt(&db, &["attempts", "--app", &app, "--limit", "3"]);
    let list = attempts["attempts"].as_array().unwrap();
    assert!(!list.is_empty());
    for field in [
        "at",
        "account",
        "locked",
        "reason",
        "ip",
        "device",
        "location",
        "integration_type",
    ] {
        assert!(list[0].get(field).is_some(), "{field}");
    }
}

#[tokio::test]
async fn cli_errors_are_clear_and_exit_non_zero() {
    let t = TestApp::spawn().await;
    let db = t.db_url.clone();
    assert!(deadbolt_fails(
        &db,
        &["app", "create", "--company", "nope", "--issuer", "x"]
    )
    .contains("company not found"));
    assert!(deadbolt_fails(
        &db,
        &[
            "account",
            "unlock",
            "--app",
            "a",
            "--account",
            "b",
            "--for",
            "soon"
        ]
    )
    .contains("invalid duration"));
    assert!(deadbolt_fails(&db, &["person", "create", "--email", "bad"]).contains("invalid email"));
    assert!(deadbolt_fails(
        &db,
        &[
            "person",
            "create",
            "--email",
            "a@b.c",
            "--time-zone",
            "Mars/Base"
        ]
    )
    .contains("unknown time zone"));
    assert!(deadbolt_fails("mysql://x", &["company", "list"]).contains("unsupported store URL"));
    let c = deadbolt(&db, &["company", "create", "--name", "Dup"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    deadbolt(
        &db,
        &[
            "app",
            "create",
            "--company",
            &c,
            "--issuer",
            "dup.example.com",
        ],
    );
    assert!(deadbolt_fails(
        &db,
        &[
            "app",
            "create",
            "--company",
            &c,
            "--issuer",
            "HTTPS://dup.example.com/"
        ]
    )
    .contains("already exists"));
}

/// `kill -9` right after a 200 on lock: the lock is on disk. The server's log never shows the
/// signing key, the SDK key or the token.
#[tokio::test]
async fn an_acknowledged_lock_survives_kill_9_and_logs_hold_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("d.db").display());
    let company = deadbolt(&db, &["company", "create", "--name", "Durable"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let app = deadbolt(
        &db,
        &[
            "app",
            "create",
            "--company",
            &company,
            "--issuer",
            "durable.example.com",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = deadbolt(&db, &["key", "create", "--app", &app])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk = deadbolt(&db, &["sdk-key", "create", "--company", &company])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    deadbolt(
        &db,
        &["account", "enroll", "--app", &app, "--account", "dora"],
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap();
    let url = started["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();

    // A check with a real token, and a few bad ones, so the log has something to say.
    let token = sign(
        &serde_json::json!({"iss": "durable.example.com", "aud": url, "sub": "dora",
                             "exp": chrono_now() + 300, "iat": chrono_now() - 60}),
        &key,
    );
    let r = http
        .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
        .header("x-nl3-authorization-token", &token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"locked": false})
    );
    let bad = format!("{}x", &token[..token.len() - 1]);
    http.post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
        .header("x-nl3-authorization-token", &bad)
        .send()
        .await
        .unwrap();

    let r = http
        .post(format!("{url}/nl3/api/v1/sdk/lock"))
        .header("x-nl3-server-api-token", &sdk)
        .body(r#"{"domain":"durable.example.com","userAccountId":"dora"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());

    let shown = deadbolt(
        &db,
        &["account", "show", "--app", &app, "--account", "dora"],
    );
    assert_eq!(shown["locked"], true, "the acknowledged lock is durable");

    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("check refused"),
        "the log did record the refusal: {log}"
    );
    let (_, sdk_secret) = sdk.split_once('.').unwrap();
    for secret in [
        key.as_str(),
        sdk_secret,
        token.as_str(),
        bad.as_str(),
        token.rsplit('.').next().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    let key_file = std::fs::read_to_string(dir.path().join("d.db.key")).unwrap();
    assert!(!log.contains(key_file.trim()));
    // The signing key is not stored in clear.
    let raw = std::fs::read(dir.path().join("d.db")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(&key) && !raw.contains(sdk_secret));
}

#[tokio::test]
async fn postgres_store_serves_checks_and_sees_cli_changes() {
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    let app = t.app("pg.example.com").await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "pia", None)
        .await
        .unwrap();
    assert!(!t.locked("pg.example.com", &key, "pia").await);
    let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args([
            "--db",
            &t.db_url,
            "account",
            "lock",
            "--app",
            &app.id,
            "--account",
            "pia",
        ])
        .env("DEADBOLT_MASTER_KEY", base64_key())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.locked("pg.example.com", &key, "pia").await);
    // Without a master key a PostgreSQL store is refused rather than given a key per replica.
    let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args(["--db", &t.db_url, "company", "list"])
        .env_remove("DEADBOLT_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEADBOLT_MASTER_KEY"));
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([9u8; 32])
}

fn chrono_now() -> i64 {
    use deadbolt_core::Clock;
    deadbolt_core::SystemClock.now().timestamp()
}

#[tokio::test]
async fn the_operator_is_created_from_the_cli() {
    let t = TestApp::spawn().await;
    let db = t.db_url.clone();
    let link = deadbolt(
        &db,
        &[
            "operator",
            "invite",
            "--email",
            "ops@example.com",
            "--public-url",
            "https://deadbolt.example.com",
        ],
    );
    assert!(
        link["link"]
            .as_str()
            .unwrap()
            .starts_with("https://deadbolt.example.com/"),
        "{link}"
    );
    let op = deadbolt(
        &db,
        &[
            "operator",
            "create",
            "--email",
            "Ops@Example.com",
            "--password",
            "a long operator password",
        ],
    );
    assert_eq!(op["email"], "ops@example.com");
    assert!(deadbolt_fails(
        &db,
        &[
            "operator",
            "create",
            "--email",
            "x@example.com",
            "--password",
            "short"
        ]
    )
    .contains("10 characters"));
}

/// A subject no account can have (a control character: enrolment refuses them) is not enrolled,
/// on every engine: PostgreSQL refuses a NUL in a query parameter, and the check must not turn
/// that into a 503. The attempt is recorded with the name as sent.
#[tokio::test]
async fn a_subject_with_a_nul_is_not_enrolled_on_postgres() {
    let Some(t) = TestApp::spawn_pg().await else {
        return;
    };
    let app = t.app("nul.example.com").await;
    let key = t.key(&app).await;
    assert!(!t.locked("nul.example.com", &key, "eve\u{0}admin").await);
    let store = t.store.clone();
    t.stop().await;
    let recorded = store.recent_attempts(&app.id, 1).await.unwrap();
    assert_eq!(recorded[0].account, "eve\u{0}admin");
    assert_eq!(recorded[0].reason, "unenrolled_allow");
}

/// `deadbolt check` names what went wrong, and where; the account commands tell a wrong
/// application from a missing account; merging and switching names from the CLI.
// Several threads: the CLI runs as a blocking child process while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_account_messages_name_the_problem() {
    let t = TestApp::spawn().await;
    t.clock
        .set(deadbolt_core::Clock::now(&deadbolt_core::SystemClock));
    let db = t.db_url.clone();
    let app = t.app("msg.example.com").await;
    let key = t.key(&app).await;
    t.service
        .enroll(&By::CLI, &app.id, "Alice", None)
        .await
        .unwrap();
    t.service.lock(&By::CLI, &app.id, "Alice").await.unwrap();
    let check = |api: &str, account: &str| {
        vec![
            "check".to_string(),
            "--api".into(),
            api.into(),
            "--issuer".into(),
            "msg.example.com".into(),
            "--key".into(),
            key.clone(),
            "--account".into(),
            account.into(),
            "--timeout".into(),
            "3s".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        deadbolt(&db, &refs)
    };
    let fail = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        deadbolt_fails(&db, &refs)
    };

    // Enrolled, in another case: locked, and enrolled.
    let out = run(check(&t.url, "alice"));
    assert_eq!(out["locked"], true, "{out}");
    assert_eq!(out["enrolled"], true, "{out}");
    // Not enrolled: allowed by the policy, and said so.
    let out = run(check(&t.url, "nobody"));
    assert_eq!(out["locked"], false);
    assert_eq!(out["enrolled"], false, "{out}");
    assert_eq!(out["reason"], "unenrolled_allow");

    // No scheme.
    let host = t.url.trim_start_matches("http://").to_string();
    let msg = fail(check(&host, "alice"));
    assert!(msg.contains("add http:// or https://"), "{msg}");
    // Nothing listening: the URL is named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let msg = fail(check(&closed_url, "alice"));
    assert!(
        msg.contains(&format!("{closed_url}/nl3/api/v1/accountProtectionCheck")),
        "{msg}"
    );
    assert!(!msg.contains("<api>"), "{msg}");
    // HTTPS against a server that speaks plain HTTP.
    let msg = fail(check(&format!("https://{host}"), "alice"));
    assert!(msg.contains("speaks plain HTTP"), "{msg}");

    // A wrong application id is "application not found", not "account not found".
    for cmd in [
        vec![
            "account",
            "lock",
            "--app",
            "no-such-app",
            "--account",
            "alice",
        ],
        vec![
            "account",
            "unlock",
            "--app",
            "no-such-app",
            "--account",
            "alice",
        ],
        vec![
            "account",
            "show",
            "--app",
            "no-such-app",
            "--account",
            "alice",
        ],
    ] {
        let msg = deadbolt_fails(&db, &cmd);
        assert!(msg.contains("application not found"), "{cmd:?}: {msg}");
    }
    let msg = deadbolt_fails(
        &db,
        &["account", "lock", "--app", &app.id, "--account", "nobody"],
    );
    assert!(msg.contains("enrolled account not found"), "{msg}");
    // Another spelling finds the account; enrolment refuses invisible characters by name.
    let shown = deadbolt(
        &db,
        &["account", "show", "--app", &app.id, "--account", "ALICE"],
    );
    assert_eq!(shown["account"]["account"], "Alice");
    let msg = deadbolt_fails(
        &db,
        &[
            "account",
            "enroll",
            "--app",
            &app.id,
            "--account",
            "al\u{200D}ice",
        ],
    );
    assert!(msg.contains("U+200D ZERO WIDTH JOINER"), "{msg}");

    // Exact names, two spellings, the refused switch, the merge, the switch.
    deadbolt(
        &db,
        &["app", "set", "--id", &app.id, "--account-names", "exact"],
    );
    deadbolt(
        &db,
        &["account", "enroll", "--app", &app.id, "--account", "alice"],
    );
    let msg = deadbolt_fails(
        &db,
        &[
            "app",
            "set",
            "--id",
            &app.id,
            "--account-names",
            "case-insensitive",
        ],
    );
    assert!(msg.contains("[Alice, alice]"), "{msg}");
    let merged = deadbolt(
        &db,
        &[
            "account", "merge", "--app", &app.id, "--into", "Alice", "--from", "alice",
        ],
    );
    assert_eq!(merged["account"]["state"], "locked");
    let set = deadbolt(
        &db,
        &[
            "app",
            "set",
            "--id",
            &app.id,
            "--account-names",
            "case-insensitive",
        ],
    );
    assert_eq!(set["account_names"], "case-insensitive");
    assert_eq!(
        deadbolt(&db, &["account", "collisions"])["collisions"],
        serde_json::json!([])
    );
    t.stop().await;
}

/// Every command and every flag says what it is; `check` does not offer store flags.
#[test]
fn help_describes_every_command_and_flag() {
    fn help(args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    }
    /// The names listed under "Commands:" of a help text.
    fn commands(text: &str) -> Vec<String> {
        text.split("Commands:")
            .nth(1)
            .map(|rest| rest.split("\n\n").next().unwrap_or(""))
            .unwrap_or("")
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let name = l.split_whitespace().next()?;
                assert!(
                    l.len() > name.len() + 2,
                    "command {name:?} has no description"
                );
                (name != "help").then(|| name.to_string())
            })
            .collect()
    }
    fn flags_described(args: &[&str], text: &str) {
        let options = text.split("Options:").nth(1).unwrap_or("");
        let lines: Vec<&str> = options.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            // Flags (`--name`, `-h, --help`), not the lists of possible values (`- text: …`).
            let is_flag = l.starts_with("--")
                || (l.len() > 3 && l.starts_with('-') && l.as_bytes()[2] == b',');
            if !is_flag {
                continue;
            }
            // Short help: the description after the flag on its line; long help: on the
            // next line, indented further.
            let same_line = l
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty());
            let next_line = lines.get(i + 1).is_some_and(|n| {
                !n.trim().is_empty() && !n.trim().starts_with('-') && indent(n) > indent(line)
            });
            assert!(
                same_line || next_line,
                "{args:?}: flag without a description: {l}"
            );
        }
    }
    let top = help(&[]);
    let mut checked = 0;
    for cmd in commands(&top) {
        let text = help(&[&cmd]);
        flags_described(&[&cmd], &text);
        for sub in commands(&text) {
            let args = [cmd.as_str(), sub.as_str()];
            flags_described(&args, &help(&args));
            checked += 1;
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} commands seen");
    let check = help(&["check"]);
    assert!(!check.contains("--db"), "{check}");
    assert!(!check.contains("--master-key-file"), "{check}");
    assert!(help(&["account", "lock"]).contains("--db"));
}

/// What each command prints, pinned: scripts read these keys, so renaming, adding or dropping one
/// changes the CLI's interface and must change this test. Values that differ between runs (ids,
/// times, secrets) are compared by their JSON type. Every line is one compact JSON object whose
/// keys come in the order serde_json renders a parsed object: sorted, at every depth (serde_json
/// is built without `preserve_order`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_prints_these_keys() {
    use serde_json::json;
    let t = TestApp::spawn().await;
    // The CLI signs its check on the real clock: put the server's clock there too.
    t.clock
        .set(deadbolt_core::Clock::now(&deadbolt_core::SystemClock));
    let db = t.db_url.clone();
    let run = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("DEADBOLT_MASTER_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deadbolt {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let parsed: Value = serde_json::from_str(&line).unwrap();
        // Rendered again from the parsed value: the same bytes only if compact and sorted.
        assert_eq!(line, format!("{parsed}\n"), "{args:?}");
        parsed
    };
    /// Every scalar replaced by its JSON type; an array by the shape of its first element.
    fn shape(v: &Value) -> Value {
        match v {
            Value::Null => json!("null"),
            Value::Bool(_) => json!("bool"),
            Value::Number(_) => json!("number"),
            Value::String(_) => json!("string"),
            Value::Array(a) => json!([a.first().map(shape)]),
            Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), shape(v))).collect(),
        }
    }
    let s = "string";
    let application = json!({"account_names": s, "audit_mode": "bool", "company_id": s,
        "created_at": s, "default_state": s, "id": s, "issuer": s, "name": s, "unenrolled": s});
    let account = |person: &str, until: &str| {
        json!({"account": s, "app_id": s, "created_at": s, "id": s, "person_email": person,
               "person_id": person, "relock_after_use": "bool", "state": s,
               "unlocked_until": until, "updated_at": s})
    };

    let company = run(&["company", "create", "--name", "Acme"]);
    assert_eq!(shape(&company), json!({"id": s}));
    let company = company["id"].as_str().unwrap().to_string();
    assert_eq!(
        shape(&run(&["company", "list"])),
        json!({"companies": [{"created_at": s, "id": s, "name": s}]})
    );
    let app = run(&[
        "app",
        "create",
        "--company",
        &company,
        "--issuer",
        "keys.example.com",
    ]);
    assert_eq!(
        app,
        json!({"account_names": "case-insensitive", "id": app["id"], "issuer": "keys.example.com"})
    );
    let app = app["id"].as_str().unwrap().to_string();
    assert_eq!(shape(&run(&["app", "show", "--id", &app])), application);
    assert_eq!(
        shape(&run(&["app", "list", "--company", &company])),
        json!({"applications": [application]})
    );
    let set = run(&["app", "set", "--id", &app, "--audit-mode", "true"]);
    assert_eq!(shape(&set), application);
    assert_eq!(set["audit_mode"], true);
    run(&["app", "set", "--id", &app, "--audit-mode", "false"]);

    let key = run(&["key", "create", "--app", &app]);
    assert_eq!(shape(&key), json!({"id": s, "secret": s}));
    let keys = run(&["key", "list", "--app", &app]);
    assert_eq!(
        shape(&keys),
        json!({"keys": [{"created_at": s, "id": s, "last_used_at": "null", "revoked_at": "null"}]})
    );
    assert_eq!(keys["keys"][0]["id"], key["id"]);
    let sdk = run(&["sdk-key", "create", "--company", &company]);
    assert_eq!(shape(&sdk), json!({"id": s, "secret": s}));
    assert_eq!(
        shape(&run(&["sdk-key", "list", "--company", &company])),
        json!({"keys": [{"created_at": s, "id": s, "revoked_at": "null"}]})
    );
    let sdk_id = sdk["id"].as_str().unwrap();
    assert_eq!(
        run(&["sdk-key", "revoke", "--id", sdk_id]),
        json!({"id": sdk_id, "revoked": true})
    );

    let person = run(&["person", "create", "--email", "keys@example.com"]);
    assert_eq!(
        person,
        json!({"email": "keys@example.com", "id": person["id"]})
    );
    assert_eq!(
        shape(&run(&["person", "show", "--email", "keys@example.com"])),
        json!({"created_at": s, "email": s, "first_name": "null", "id": s, "last_name": "null",
               "master_locked": "bool", "phone": "null", "time_zone": s})
    );
    assert_eq!(
        run(&["person", "lock-all", "--email", "keys@example.com"]),
        json!({"email": "keys@example.com", "master_lock": true})
    );
    assert_eq!(
        run(&["person", "unlock-all", "--email", "keys@example.com"]),
        json!({"email": "keys@example.com", "master_lock": false})
    );

    let enrolled = run(&[
        "account",
        "enroll",
        "--app",
        &app,
        "--account",
        "Kim",
        "--person",
        "keys@example.com",
    ]);
    assert_eq!(
        enrolled,
        json!({"account": "Kim", "created": true, "id": enrolled["id"], "state": "unlocked"})
    );
    let again = run(&["account", "enroll", "--app", &app, "--account", "kim"]);
    assert_eq!(
        again,
        json!({"account": "Kim", "created": false, "id": enrolled["id"], "state": "unlocked"})
    );
    assert_eq!(
        run(&["account", "lock", "--app", &app, "--account", "kim"]),
        json!({"account": "kim", "app": app, "locked": true})
    );
    let shown = run(&["account", "show", "--app", &app, "--account", "kim"]);
    assert_eq!(
        shape(&shown),
        json!({"account": account(s, "null"), "locked": "bool", "reason": s})
    );
    assert_eq!(
        (&shown["locked"], &shown["reason"]),
        (&json!(true), &json!("account_locked"))
    );
    let unlocked = run(&[
        "account",
        "unlock",
        "--app",
        &app,
        "--account",
        "kim",
        "--for",
        "15m",
    ]);
    assert_eq!(
        shape(&unlocked),
        json!({"account": s, "app": s, "locked": "bool", "unlocked_until": s})
    );
    assert_eq!(
        shape(&run(&[
            "account",
            "show",
            "--app",
            &app,
            "--account",
            "kim"
        ])),
        json!({"account": account(s, s), "locked": "bool", "reason": s})
    );
    assert_eq!(
        run(&[
            "account",
            "unlock",
            "--app",
            &app,
            "--account",
            "kim",
            "--once"
        ]),
        json!({"account": "kim", "app": app, "locked": false, "relock_after_use": true})
    );
    assert_eq!(
        run(&["account", "unlock", "--app", &app, "--account", "kim"]),
        json!({"account": "kim", "app": app, "locked": false, "unlocked_until": null})
    );
    assert_eq!(
        shape(&run(&["account", "list", "--app", &app])),
        json!({"accounts": [account(s, "null")]})
    );
    assert_eq!(
        run(&["account", "collisions", "--app", &app]),
        json!({"collisions": []})
    );

    let added = run(&[
        "schedule",
        "add",
        "--person",
        "keys@example.com",
        "--days",
        "weekends",
        "--window",
        "22:00-06:30",
    ]);
    assert_eq!(
        added,
        json!({"account_id": null, "days": "weekends", "id": added["id"], "window": "22:00-06:30"})
    );
    assert_eq!(
        run(&["schedule", "list", "--person", "keys@example.com"]),
        json!({"schedules": [{"account_id": null, "days": 96, "end": "06:30", "id": added["id"],
                              "start": "22:00"}]})
    );
    let schedule = added["id"].as_str().unwrap();
    assert_eq!(
        run(&["schedule", "delete", "--id", schedule]),
        json!({"deleted": true, "id": schedule})
    );

    let checked = run(&[
        "check",
        "--api",
        &t.url,
        "--issuer",
        "keys.example.com",
        "--key",
        key["secret"].as_str().unwrap(),
        "--account",
        "KIM",
        "--ip",
        "192.0.2.7",
        "--device",
        "phone",
        "--location",
        "Lyon",
    ]);
    assert_eq!(
        checked,
        json!({"account": "KIM", "enrolled": true, "locked": false, "reason": "account_unlocked"})
    );
    let (service, app_id) = (t.service.clone(), app.clone());
    eventually(|| {
        let (db, app_id) = (service.clone(), app_id.clone());
        async move { !db.attempts(&app_id, 1).await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(
        shape(&run(&["attempts", "--app", &app, "--limit", "1"])),
        json!({"attempts": [{"account": s, "at": s, "device": s, "integration_type": s, "ip": s,
                             "location": s, "locked": "bool", "reason": s}]})
    );
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(
        run(&["key", "revoke", "--id", key_id]),
        json!({"app": app, "id": key_id, "revoked": true})
    );
    let op = run(&[
        "operator",
        "invite",
        "--email",
        "op@example.com",
        "--public-url",
        "https://p.example.com",
    ]);
    assert_eq!(shape(&op), json!({"link": s}));
    let op = run(&[
        "operator",
        "create",
        "--email",
        "op@example.com",
        "--password",
        "a long password",
    ]);
    assert_eq!(shape(&op), json!({"email": s, "id": s}));
    t.stop().await;
}

//! The stores failing underneath a serving Deadbolt, with the real engines: PostgreSQL frozen,
//! stopped and restarted under load; the SQLite file deleted and replaced; the disk full; the
//! server killed at random moments. Each asserts the exact answers during the fault, that
//! service resumes by itself, and that nothing acknowledged is lost.

use crate::helpers::*;
use base64::Engine as _;
use deadbolt::service::By;
use deadbolt::MasterKeySource;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOMAIN: &str = "faults.example.com";
/// The store deadline the servers under test run with.
const DEADLINE: Duration = Duration::from_secs(1);
/// Longer than any answer may take with that deadline: past it, the server hung.
const HANG: Duration = Duration::from_secs(6);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_required() -> bool {
    std::env::var("DEADBOLT_REQUIRE_PG").as_deref() == Ok("1")
}

pub(crate) fn master_key() -> MasterKeySource {
    MasterKeySource {
        value: Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
        file: None,
    }
}

/// A port nobody listens on (a race with other tests is possible but harmless: PostgreSQL then
/// fails to start and the test says so).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL cluster of this test's own, to stop and freeze without disturbing the shared
/// one. Thawed and stopped on drop.
pub(crate) struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    /// `None` (with the reason printed) where it cannot run; under `DEADBOLT_REQUIRE_PG=1` as
    /// root (CI) it must.
    pub(crate) fn start() -> Option<Self> {
        let skip = |why: &str| {
            assert!(
                !(pg_required() && is_root()),
                "a private PostgreSQL cluster is required here: {why}"
            );
            eprintln!("PostgreSQL fault test skipped: {why}");
            None
        };
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            let mut v: Vec<PathBuf> = d
                .flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect();
            v.sort();
            v.pop()
        });
        let Some(bin) = bin else {
            return skip("no PostgreSQL server binaries in /usr/lib/postgresql");
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pg = Self {
            bin,
            data,
            port: free_port(),
            _dir: dir,
        };
        if is_root() {
            let st = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg._dir.path())
                .status();
            if !st.is_ok_and(|s| s.success()) {
                return skip("cannot hand a directory to the postgres user");
            }
        }
        let out = pg
            .as_pg(pg.bin.join("initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .output()
            .unwrap();
        if !out.status.success() {
            return skip(&format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        pg.pg_ctl_start();
        Some(pg)
    }

    fn as_pg(&self, program: PathBuf) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    pub(crate) fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            self.data.parent().unwrap().display()
        );
        let st = self
            .as_pg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.parent().unwrap().join("server.log"))
            .args(["-w", "start", "-o", &opts])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "private PostgreSQL did not start");
    }

    pub(crate) fn stop(&self, mode: &str) {
        self.signal("CONT");
        let _ = self
            .as_pg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", mode, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster and every process it started.
    fn pids(&self) -> Vec<String> {
        let Ok(pidfile) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return vec![];
        };
        let Some(main) = pidfile.lines().next().map(str::trim).map(String::from) else {
            return vec![];
        };
        let mut pids = vec![main.clone()];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
                // pid (comm) state ppid …: the fields after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1));
                if ppid == Some(main.as_str()) {
                    pids.push(name);
                }
            }
        }
        pids
    }

    fn signal(&self, sig: &str) {
        let pids = self.pids();
        if !pids.is_empty() {
            // Some may have exited meanwhile: that is fine.
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .args(&pids)
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// What the load saw: every answer's status, and for a check its `locked`.
#[derive(Default)]
struct Seen {
    checks_ok: u64,
    checks_503: u64,
    changes_ok: u64,
    changes_503: u64,
    /// Answers that were neither 200 nor 503, or took longer than [`HANG`], or wrong.
    wrong: Vec<String>,
    /// Accounts whose lock was acknowledged.
    locked: Vec<String>,
}

/// Checks and locks from a few tasks until `stop`: checks of accounts whose state is known
/// (`p*` locked, `u*` unlocked) and locks of fresh accounts (`w{task}-{n}`), each answer timed.
fn load(
    t: &TestApp,
    key: &str,
    sdk: &str,
    changes: bool,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    let mut tasks = Vec::new();
    for task in 0..if changes { 4 } else { 3 } {
        let (url, stop) = (t.url.clone(), stop.clone());
        let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
        let tokens: Vec<(bool, String)> = (0..10)
            .map(|i| {
                if i % 2 == 0 {
                    (true, t.token(DOMAIN, key, &format!("p{i}")))
                } else {
                    (false, t.token(DOMAIN, key, &format!("u{i}")))
                }
            })
            .collect();
        let sdk = sdk.to_string();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                if task < 3 {
                    let (expect, token) = &tokens[n % tokens.len()];
                    let r = http
                        .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
                        .header("x-nl3-authorization-token", token)
                        .body("{}")
                        .send()
                        .await;
                    match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            match status {
                                200 if body["locked"] == json!(*expect) => seen.checks_ok += 1,
                                503 if body.get("locked").is_none() => seen.checks_503 += 1,
                                _ => seen.wrong.push(format!("check answered {status} {body}")),
                            }
                        }
                        Err(e) => seen.wrong.push(format!("check: {e}")),
                    }
                } else if n >= LOCKABLE {
                    // Every account the setup enrolled for it is locked.
                } else {
                    let account = format!("w{n}");
                    let r = http
                        .post(format!("{url}/nl3/api/v1/sdk/lock"))
                        .header("x-nl3-server-api-token", &sdk)
                        .body(json!({"domain": DOMAIN, "userAccountId": account}).to_string())
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => {
                            seen.changes_ok += 1;
                            seen.locked.push(account);
                        }
                        Ok(503) => seen.changes_503 += 1,
                        Ok(s) => seen.wrong.push(format!("lock answered {s}")),
                        Err(e) => seen.wrong.push(format!("lock: {e}")),
                    }
                }
                if started.elapsed() >= HANG {
                    seen.wrong
                        .push(format!("an answer took {:?}", started.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(if task < 3 { 5 } else { 10 })).await;
            }
            seen
        }));
    }
    tasks
}

/// A company, an application, its key and SDK key; accounts p0, p2, … locked and u1, u3, …
/// unlocked, x1 for changes during faults, and w1… enrolled unlocked for the load's locks.
async fn setup(t: &TestApp) -> (String, String) {
    // Set-up is not under test: a busy machine may take longer than the deadline to import.
    t.store.set_timeout(Duration::from_secs(60));
    let app = t.app(DOMAIN).await;
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&app.company_id).await.unwrap();
    let mut rows = Vec::new();
    for i in 0..10 {
        let name = if i % 2 == 0 {
            format!("p{i}")
        } else {
            format!("u{i}")
        };
        rows.push(json!({"domain": DOMAIN, "userAccountId": name}));
    }
    rows.push(json!({"domain": DOMAIN, "userAccountId": "x1"}));
    for n in 1..LOCKABLE {
        rows.push(json!({"domain": DOMAIN, "userAccountId": format!("w{n}")}));
    }
    let got = t
        .sdk(Method::POST, "importUsers", &sdk, Some(Value::Array(rows)))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    for i in (0..10).step_by(2) {
        let got = t
            .sdk(
                Method::POST,
                "lock",
                &sdk,
                Some(json!({"domain": DOMAIN, "userAccountId": format!("p{i}")})),
            )
            .await;
        assert_eq!(got.0, 200, "{}", got.1);
    }
    t.store.set_timeout(DEADLINE);
    (key, sdk)
}

/// Accounts `w1`… enrolled for the load's locks.
const LOCKABLE: usize = 1500;

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    let r = t.http.get(format!("{}{path}", t.url)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The value of a metric in `/metrics`.
pub(crate) async fn metric(t: &TestApp, name: &str) -> i64 {
    let text = t.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// One check and one lock, timed: both must be refused with 503 within [`HANG`].
async fn assert_refusing(t: &TestApp, key: &str, sdk: &str, what: &str) {
    let started = Instant::now();
    let got = t.check_raw(Some(&t.token(DOMAIN, key, "p0")), "{}").await;
    assert_refused(&got, 503);
    let check_took = started.elapsed();
    let started = Instant::now();
    let got = t
        .sdk(
            Method::POST,
            "lock",
            sdk,
            Some(json!({"domain": DOMAIN, "userAccountId": "x1"})),
        )
        .await;
    assert_refused(&got, 503);
    let lock_took = started.elapsed();
    assert!(check_took < HANG && lock_took < HANG, "{what}: hung");
    let ready = get(t, "/readyz").await;
    assert_eq!(ready.0, 503, "{what}: /readyz {}", ready.1);
    assert_eq!(get(t, "/healthz").await.0, 200, "{what}: alive");
    eprintln!(
        "{what}: check 503 in {check_took:?}, lock 503 in {lock_took:?}, /readyz 503 {}",
        ready.1["message"]
    );
}

/// Waits until a check answers 200 (with the right answer) and a change is acknowledged;
/// returns how long that took.
async fn recovery(t: &TestApp, key: &str, sdk: &str) -> Duration {
    let started = Instant::now();
    loop {
        let check = t.check_raw(Some(&t.token(DOMAIN, key, "p0")), "{}").await;
        let change = t
            .sdk(
                Method::POST,
                "unlock",
                sdk,
                Some(json!({"domain": DOMAIN, "userAccountId": "u3"})),
            )
            .await;
        if check.0 == 200 && change.0 == 200 {
            assert_eq!(check.1, json!({"locked": true}));
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no recovery within 20 s: {check:?} {change:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.checks_ok += s.checks_ok;
        all.checks_503 += s.checks_503;
        all.changes_ok += s.changes_ok;
        all.changes_503 += s.changes_503;
        all.wrong.extend(s.wrong);
        all.locked.extend(s.locked);
    }
    all
}

/// Every acknowledged lock is there, and every answered check was recorded (or dropped and
/// counted): waits for the queue to drain, then compares.
async fn assert_nothing_lost(t: &TestApp, seen: &Seen, answered_elsewhere: i64) {
    assert!(
        seen.wrong.is_empty(),
        "wrong answers: {:?}",
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    let app = t
        .store
        .application_by_issuer(DOMAIN)
        .await
        .unwrap()
        .unwrap();
    for account in &seen.locked {
        let a = t.service.account(&app.id, account).await.unwrap();
        assert_eq!(
            a.state,
            deadbolt_core::AccountState::Locked,
            "{account} was acknowledged locked"
        );
    }
    eventually_within(Duration::from_secs(20), || async {
        metric(t, "deadbolt_attempt_queue_depth").await == 0
    })
    .await;
    let written = metric(t, "deadbolt_attempts_written_total").await;
    let dropped = metric(t, "deadbolt_attempts_dropped_total").await;
    let recorded = t.store.attempt_count().await.unwrap();
    let answered = seen.checks_ok as i64 + answered_elsewhere;
    eprintln!(
        "checks answered 200: {answered} (503: {}), changes acknowledged: {} (503: {}); attempts recorded: {recorded}, written: {written}, dropped: {dropped}",
        seen.checks_503, seen.changes_ok, seen.changes_503
    );
    assert_eq!(recorded, written, "what the writer counts is in the store");
    assert_eq!(
        written + dropped,
        answered,
        "every answered check is recorded or counted dropped"
    );
}

pub(crate) async fn eventually_within<F, Fut>(limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks of the setup accounts answered 200 by the helpers (setup, probes, recovery) count as
/// answered too; they are counted by the server, so read them from its metrics.
async fn answered_by_probes(t: &TestApp, seen: &Seen) -> i64 {
    let locked = metric(t, "deadbolt_checks_total{decision=\"locked\"}").await;
    let unlocked = metric(t, "deadbolt_checks_total{decision=\"unlocked\"}").await;
    locked + unlocked - seen.checks_ok as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_stopped_and_restarted_under_load() {
    let Some(pg) = PrivatePg::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = TestApp::spawn_on(pg.url(), dir, master_key(), |c| c.store_timeout = DEADLINE).await;
    let (key, sdk) = setup(&t).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&t, &key, &sdk, true, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Frozen: the connections stay open and nothing answers. Until the change listener's
    // trust lapses (2 s after its last answer) a check may still answer from what it has
    // cached, rightly (nothing can change while PostgreSQL is frozen): the load tolerates
    // that; after it, checks must read and answer 503.
    pg.signal("STOP");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_refusing(&t, &key, &sdk, "PostgreSQL frozen").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.signal("CONT");
    let took = recovery(&t, &key, &sdk).await;
    eprintln!("PostgreSQL thawed: checks and changes answered 200 again after {took:?}");

    // Stopped: the connections close, new ones are refused.
    pg.stop("fast");
    assert_refusing(&t, &key, &sdk, "PostgreSQL stopped").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.pg_ctl_start();
    let took = recovery(&t, &key, &sdk).await;
    eprintln!("PostgreSQL restarted: checks and changes answered 200 again after {took:?}");

    // Killed (as by the OOM killer) and restarted: connections cut mid-query.
    pg.stop("immediate");
    assert_refusing(&t, &key, &sdk, "PostgreSQL killed").await;
    pg.pg_ctl_start();
    let took = recovery(&t, &key, &sdk).await;
    eprintln!("PostgreSQL killed and restarted: 200 again after {took:?}");
    assert_eq!(get(&t, "/readyz").await.0, 200);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = finish(tasks).await;
    assert!(
        seen.checks_503 > 0 && seen.changes_503 > 0,
        "the load met the faults"
    );
    let others = answered_by_probes(&t, &seen).await;
    assert_nothing_lost(&t, &seen, others).await;
    t.stop().await;
}

/// The SQLite file removed (with its WAL and SHM, as when its directory is wiped) while
/// serving: changes and checks are refused, /readyz says why; nothing is acknowledged that a
/// restart would not find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_deleted_while_serving() {
    let t = TestApp::spawn_with(|c| c.store_timeout = DEADLINE).await;
    let (key, sdk) = setup(&t).await;
    assert!(!t.locked(DOMAIN, &key, "u1").await);
    let db = t.dir.path().join("deadbolt.db");
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", db.display())).unwrap();
    }
    // Reads look at the file's identity every 200 ms; changes at every change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_refusing(&t, &key, &sdk, "SQLite file deleted").await;
    let got = t
        .sdk(
            Method::POST,
            "importUsers",
            &sdk,
            Some(json!([{"domain": DOMAIN, "userAccountId": "new-1"}])),
        )
        .await;
    assert_refused(&got, 503);
    let ready = get(&t, "/readyz").await;
    assert!(
        ready.1["message"]
            .as_str()
            .unwrap()
            .contains("deleted or replaced"),
        "{}",
        ready.1
    );
    let answered = metric(&t, "deadbolt_checks_total{decision=\"unlocked\"}").await
        + metric(&t, "deadbolt_checks_total{decision=\"locked\"}").await;
    eprintln!("SQLite file deleted: {answered} checks answered before; after it, every check and change 503");
    t.stop().await;
}

/// The SQLite file replaced by another (a restore from backup over a running server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_replaced_while_serving() {
    let t = TestApp::spawn_with(|c| c.store_timeout = DEADLINE).await;
    let (key, sdk) = setup(&t).await;
    assert!(t.locked(DOMAIN, &key, "p0").await);
    let db = t.dir.path().join("deadbolt.db");
    let copy = t.dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    std::fs::rename(&copy, &db).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_refusing(&t, &key, &sdk, "SQLite file replaced").await;
    let ready = get(&t, "/readyz").await;
    assert!(
        ready.1["message"]
            .as_str()
            .unwrap()
            .contains("deleted or replaced"),
        "{}",
        ready.1
    );
    t.stop().await;
}

/// Unmounts on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir`; the returned file holds the space.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_while_serving() {
    if !is_root() {
        eprintln!("disk-full test skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status();
    if !st.is_ok_and(|s| s.success()) {
        // Root in a container without the right to mount.
        eprintln!("disk-full test skipped: cannot mount a tmpfs here");
        return;
    }
    let _mount = Mount(mnt.clone());
    let data = tempfile::tempdir_in(&mnt).unwrap();
    let db_url = format!("sqlite://{}", data.path().join("deadbolt.db").display());
    let t = TestApp::spawn_on(db_url, data, MasterKeySource::default(), |c| {
        c.store_timeout = DEADLINE
    })
    .await;
    let (key, sdk) = setup(&t).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Checks only: the changes are made below, one at a time, so that what /readyz says
    // follows from them.
    let tasks = load(&t, &key, &sdk, false, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let filler = fill(&mnt);
    // Changes are refused, unless the little space a refused write left behind holds them
    // (then they are really stored: checked at the end). Checks still answer from what is
    // known (or 503), never wrongly.
    let got = t
        .sdk(
            Method::POST,
            "lock",
            &sdk,
            Some(json!({"domain": DOMAIN, "userAccountId": "x1"})),
        )
        .await;
    let lock_status = got.0;
    assert!(lock_status == 503 || lock_status == 200, "{got:?}");
    let rows: Vec<Value> = (0..500)
        .map(|i| json!({"domain": DOMAIN, "userAccountId": format!("full-{i}"), "email": format!("full{i}@example.com")}))
        .collect();
    let got = t
        .sdk(Method::POST, "importUsers", &sdk, Some(Value::Array(rows)))
        .await;
    assert_refused(&got, 503);
    let check = t.check_raw(Some(&t.token(DOMAIN, &key, "p0")), "{}").await;
    assert!(
        check == (200, json!({"locked": true})) || check.0 == 503,
        "a locked account is never answered unlocked: {check:?}"
    );
    let ready = get(&t, "/readyz").await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    eprintln!(
        "disk full: lock {lock_status}, import 503, check {check:?}, /readyz 503 {}",
        ready.1["message"]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    std::fs::remove_file(filler).unwrap();
    let took = recovery(&t, &key, &sdk).await;
    eprintln!("disk full: space back, checks and changes answered 200 again after {took:?}");
    eventually_within(Duration::from_secs(10), || async {
        get(&t, "/readyz").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = finish(tasks).await;
    if lock_status == 200 {
        seen.locked.push("x1".into());
    }
    let others = answered_by_probes(&t, &seen).await;
    assert_nothing_lost(&t, &seen, others).await;
    t.stop().await;
}

/// The real `deadbolt serve`, killed with SIGKILL at random moments under concurrent SDK
/// changes: every change acknowledged with a 200 is there after the restart.
async fn crash_cycles(db_url: String, dir: &Path, key: MasterKeySource) {
    const ACCOUNTS: usize = 64;
    {
        let service = deadbolt::Service::open(&db_url, &key, Arc::new(deadbolt_core::SystemClock))
            .await
            .unwrap();
        let c = service.create_company("crash").await.unwrap();
        let app = service
            .create_application(
                &c.id,
                DOMAIN,
                None,
                deadbolt_core::UnenrolledPolicy::Allow,
                deadbolt_core::AccountState::Unlocked,
            )
            .await
            .unwrap();
        let (_, sdk) = service.create_sdk_key(&app.company_id).await.unwrap();
        std::fs::write(dir.join("sdk"), sdk).unwrap();
        for i in 0..ACCOUNTS {
            service
                .enroll(&By::CLI, &app.id, &format!("c{i}"), None)
                .await
                .unwrap();
        }
    }
    let sdk = std::fs::read_to_string(dir.join("sdk")).unwrap();
    // account → the state last acknowledged (None: a change was in flight when the server died).
    let known: Arc<Mutex<HashMap<usize, Option<bool>>>> = Arc::new(Mutex::new(
        (0..ACCOUNTS).map(|i| (i, Some(false))).collect(),
    ));
    let mut acknowledged = 0;
    for cycle in 0..3 {
        let mut server = Server::start(&db_url, &key);
        let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
        // What the previous cycle left: acknowledged states must be there; in-flight ones are
        // learnt.
        for i in 0..ACCOUNTS {
            let r = http
                .get(format!(
                    "{}/nl3/api/v1/sdk/status?domain={DOMAIN}&userAccountId=c{i}",
                    server.url
                ))
                .header("x-nl3-server-api-token", &sdk)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let locked = r.json::<Value>().await.unwrap()["locked"]
                .as_bool()
                .unwrap();
            let mut k = known.lock().unwrap();
            match k[&i] {
                Some(want) => assert_eq!(
                    locked, want,
                    "cycle {cycle}: c{i}: an acknowledged change was lost"
                ),
                None => {
                    k.insert(i, Some(locked));
                }
            }
        }
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let (url, sdk, known, http) =
                    (server.url.clone(), sdk.clone(), known.clone(), http.clone());
                tokio::spawn(async move {
                    let mut acked = 0;
                    for n in 0.. {
                        let i = (task + 8 * n) % ACCOUNTS;
                        let lock = rand::random::<bool>();
                        known.lock().unwrap().insert(i, None);
                        let r = http
                            .post(format!(
                                "{url}/nl3/api/v1/sdk/{}",
                                if lock { "lock" } else { "unlock" }
                            ))
                            .header("x-nl3-server-api-token", &sdk)
                            .body(
                                json!({"domain": DOMAIN, "userAccountId": format!("c{i}")})
                                    .to_string(),
                            )
                            .send()
                            .await;
                        match r.map(|r| r.status().as_u16()) {
                            Ok(200) => {
                                known.lock().unwrap().insert(i, Some(lock));
                                acked += 1;
                            }
                            // The server is gone: the account stays "in flight".
                            Err(_) => return acked,
                            Ok(s) => panic!("a change answered {s}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        let alive = Duration::from_millis(300 + rand::random::<u64>() % 1200);
        tokio::time::sleep(alive).await;
        server.kill();
        for t in tasks {
            acknowledged += t.await.unwrap();
        }
    }
    // The last cycle's changes, checked by one more start.
    let server = Server::start(&db_url, &key);
    let http = reqwest::Client::new();
    for i in 0..ACCOUNTS {
        let r = http
            .get(format!(
                "{}/nl3/api/v1/sdk/status?domain={DOMAIN}&userAccountId=c{i}",
                server.url
            ))
            .header("x-nl3-server-api-token", &sdk)
            .send()
            .await
            .unwrap();
        let locked = r.json::<Value>().await.unwrap()["locked"]
            .as_bool()
            .unwrap();
        if let Some(want) = known.lock().unwrap()[&i] {
            assert_eq!(locked, want, "c{i}: an acknowledged change was lost");
        }
    }
    eprintln!("{db_url}: 3 SIGKILL cycles, {acknowledged} changes acknowledged, none lost");
}

/// A `deadbolt serve` process, killed on drop.
struct Server {
    child: std::process::Child,
    url: String,
    /// Kept open: the server's stdout is not closed under it.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(db_url: &str, key: &MasterKeySource) -> Self {
        use std::io::BufRead;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deadbolt"));
        cmd.args(["--db", db_url, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .env_remove("DEADBOLT_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(v) = &key.value {
            cmd.env("DEADBOLT_MASTER_KEY", v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let out: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Self {
            url: out["url"].as_str().unwrap().to_string(),
            child,
            _stdout: stdout,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
    crash_cycles(url, dir.path(), MasterKeySource::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_changes_survive_sigkill() {
    let Some(admin) = deadbolt_store::testing::pg_admin_url() else {
        return;
    };
    let url = deadbolt_store::testing::fresh_pg_url(&admin).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    crash_cycles(url, dir.path(), master_key()).await;
}

/// The database and its WAL and SHM are created readable by their owner only, whatever the
/// umask.
#[tokio::test]
async fn sqlite_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestApp::spawn().await;
    let app = t.app(DOMAIN).await;
    t.key(&app).await;
    for suffix in ["", "-wal", "-shm", ".key"] {
        let p = format!("{}{suffix}", t.dir.path().join("deadbolt.db").display());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p} is {mode:o}");
    }
    t.stop().await;
}

/// Another program holds SQLite's write lock (a long transaction in an `sqlite3` shell): changes
/// answer 503 after the deadline, checks keep answering, and once the small attempt queue is
/// full a check waits only a moment: its attempt is dropped and counted, and /readyz says the
/// queue is above its high-water mark. When the lock goes, everything resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_held_fills_the_attempt_queue_without_hanging_checks() {
    let t = TestApp::spawn_with(|c| {
        c.store_timeout = DEADLINE;
        c.attempt_queue = 40;
    })
    .await;
    let (key, sdk) = setup(&t).await;
    let blocker = rusqlite::Connection::open(t.dir.path().join("deadbolt.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let got = t
        .sdk(
            Method::POST,
            "lock",
            &sdk,
            Some(json!({"domain": DOMAIN, "userAccountId": "x1"})),
        )
        .await;
    assert_refused(&got, 503);
    assert!(
        started.elapsed() < HANG,
        "a change waited {:?}",
        started.elapsed()
    );
    let token = t.token(DOMAIN, &key, "p0");
    // One attempt, and time for the writer to be stuck writing it.
    assert!(t.locked(DOMAIN, &key, "p0").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..200 {
        let started = Instant::now();
        let got = t.check_raw(Some(&token), "{}").await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(got, (200, json!({"locked": true})));
    }
    assert!(slowest < HANG, "a check waited {slowest:?}");
    let dropped = metric(&t, "deadbolt_attempts_dropped_total").await;
    assert!(dropped > 0, "the queue of 40 filled");
    let ready = get(&t, "/readyz").await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(
        ready.1["message"].as_str().unwrap().contains("high-water"),
        "{}",
        ready.1
    );
    eprintln!(
        "SQLite write lock held: lock 503, 200 checks answered 200 (slowest {slowest:?}), {dropped} attempts dropped and counted, /readyz 503 {}",
        ready.1["message"]
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    let took = recovery(&t, &key, &sdk).await;
    eprintln!("SQLite write lock released: changes answered 200 again after {took:?}");
    eventually_within(Duration::from_secs(10), || async {
        get(&t, "/readyz").await.0 == 200
    })
    .await;
    assert_nothing_lost(
        &t,
        &Seen::default(),
        answered_by_probes(&t, &Seen::default()).await,
    )
    .await;
    t.stop().await;
}

/// SIGTERM: the real server finishes, and every check it answered is recorded before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_attempt_queue() {
    use deadbolt_core::Clock;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
    let key_b64 = {
        let service = deadbolt::Service::open(
            &url,
            &MasterKeySource::default(),
            Arc::new(deadbolt_core::SystemClock),
        )
        .await
        .unwrap();
        let c = service.create_company("drain").await.unwrap();
        let app = service
            .create_application(
                &c.id,
                DOMAIN,
                None,
                deadbolt_core::UnenrolledPolicy::Allow,
                deadbolt_core::AccountState::Unlocked,
            )
            .await
            .unwrap();
        service.create_signing_key(&app.id).await.unwrap().1
    };
    let mut server = Server::start(&url, &MasterKeySource::default());
    let now = deadbolt_core::SystemClock.now().timestamp();
    let aud = server.url.trim_start_matches("http://").to_string();
    let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
    let mut answered = 0;
    for i in 0..300 {
        let token = sign(
            &json!({"iss": DOMAIN, "aud": aud, "sub": format!("s{i}"), "iat": now - 60, "exp": now + 300}),
            &key_b64,
        );
        let r = http
            .post(format!("{}/nl3/api/v1/accountProtectionCheck", server.url))
            .header("x-nl3-authorization-token", token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        answered += 1;
    }
    let pid = server.child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        (server, status)
    })
    .await
    .unwrap();
    assert!(exit.1.success(), "{:?}", exit.1);
    let store = deadbolt_store::Store::open(&url).await.unwrap();
    let recorded = store.attempt_count().await.unwrap();
    eprintln!("SIGTERM: {answered} checks answered, {recorded} attempts recorded");
    assert_eq!(recorded, answered);
}

/// An existing database readable by others is warned about when a Deadbolt process opens it.
#[tokio::test]
async fn a_database_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deadbolt.db");
    let url = format!("sqlite://{}", db.display());
    drop(deadbolt_store::Store::open(&url).await.unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args(["--db", &url, "company", "list"])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("readable by group or others") && stderr.contains("deadbolt.db"),
        "{stderr}"
    );
}

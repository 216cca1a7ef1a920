//! The server under hostile conditions: stderr that cannot be written, floods of idle and
//! half-sent connections under a lowered file-descriptor limit (the real `deadbolt serve`
//! process), bodies that never arrive.

use crate::cli::deadbolt;
use crate::helpers::sign;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ISSUER: &str = "served.example.com";

/// A store prepared through the CLI: a company, an application with a signing key, an SDK key
/// and two enrolled accounts (`ann` unlocked, `ben` locked).
struct Prepared {
    _dir: tempfile::TempDir,
    db: String,
    key: String,
    sdk: String,
}

fn prepare() -> Prepared {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("d.db").display());
    let company = deadbolt(&db, &["company", "create", "--name", "Served"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let app = deadbolt(
        &db,
        &["app", "create", "--company", &company, "--issuer", ISSUER],
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
        &["account", "enroll", "--app", &app, "--account", "ann"],
    );
    deadbolt(
        &db,
        &["account", "enroll", "--app", &app, "--account", "ben"],
    );
    deadbolt(&db, &["account", "lock", "--app", &app, "--account", "ben"]);
    Prepared {
        _dir: dir,
        db,
        key,
        sdk,
    }
}

/// A running server process; killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// The line the server printed on start.
    started: Value,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `[wrapper…] deadbolt --db DB serve --listen 127.0.0.1:0 extra…` with the given stderr.
fn serve(p: &Prepared, wrapper: &[&str], extra: &[&str], stderr: Stdio) -> Server {
    let exe = env!("CARGO_BIN_EXE_deadbolt");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = cmd
        .args(["--db", &p.db, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("DEADBOLT_MASTER_KEY")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let started: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("the server did not start: {line:?}"));
    Server {
        url: started["url"].as_str().unwrap().to_string(),
        started,
        child,
    }
}

fn unix_now() -> i64 {
    use deadbolt_core::Clock;
    deadbolt_core::SystemClock.now().timestamp()
}

fn token(p: &Prepared, url: &str, sub: &str) -> String {
    let now = unix_now();
    sign(
        &json!({"iss": ISSUER, "aud": url, "sub": sub, "exp": now + 300, "iat": now - 60}),
        &p.key,
    )
}

async fn check(http: &reqwest::Client, p: &Prepared, url: &str, sub: &str) -> (u16, Value) {
    let r = http
        .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
        .header("x-nl3-authorization-token", token(p, url, sub))
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn sdk_post(http: &reqwest::Client, p: &Prepared, url: &str, path: &str, body: Value) -> u16 {
    http.post(format!("{url}/nl3/api/v1/sdk/{path}"))
        .header("x-nl3-server-api-token", &p.sdk)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The attempts the server recorded for `sub`, read back through the SDK feed.
async fn recorded(http: &reqwest::Client, p: &Prepared, url: &str, sub: &str) -> usize {
    let feed: Value = http
        .get(format!("{url}/nl3/api/v1/sdk/attempts"))
        .query(&[("domain", ISSUER), ("limit", "1000")])
        .header("x-nl3-server-api-token", &p.sdk)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    feed["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["account"] == sub)
        .count()
}

/// Checks, SDK changes (lock, unlock, an import of `newcomer`) and the recording of attempts
/// keep working whatever stderr does.
async fn serves_whatever_stderr_does(p: &Prepared, server: &Server, newcomer: &str) {
    let http = reqwest::Client::new();
    let url = &server.url;
    let bad = format!("{}x", token(p, url, "ann"));
    let before = (
        recorded(&http, p, url, "ann").await,
        recorded(&http, p, url, "ben").await,
    );
    let mut answered = 0;
    for round in 0..50 {
        // Refusals and debug lines keep the log busy.
        let r = http
            .post(format!("{url}/nl3/api/v1/accountProtectionCheck"))
            .header("x-nl3-authorization-token", &bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let got = check(&http, p, url, "ann").await;
        assert_eq!(got, (200, json!({"locked": false})), "round {round}");
        let got = check(&http, p, url, "ben").await;
        assert_eq!(got, (200, json!({"locked": true})), "round {round}");
        answered += 1;
    }
    let lock = json!({"domain": ISSUER, "userAccountId": "ann"});
    assert_eq!(sdk_post(&http, p, url, "lock", lock.clone()).await, 200);
    assert_eq!(check(&http, p, url, "ann").await.1, json!({"locked": true}));
    assert_eq!(sdk_post(&http, p, url, "unlock", lock).await, 200);
    assert_eq!(
        check(&http, p, url, "ann").await.1,
        json!({"locked": false})
    );
    let rows = json!([{"first_name": "New", "last_name": "Comer",
                       "email": format!("{newcomer}@example.com"),
                       "domain": ISSUER, "phone": "", "userAccountId": newcomer}]);
    assert_eq!(sdk_post(&http, p, url, "importUsers", rows).await, 200);
    assert_eq!(
        check(&http, p, url, newcomer).await,
        (200, json!({"locked": false}))
    );
    // Every check answered is recorded: ann's rounds and two more, ben's rounds, the newcomer's.
    let want = (before.0 + answered + 2, before.1 + answered, 1);
    let mut last = (0, 0, 0);
    for _ in 0..250 {
        last = (
            recorded(&http, p, url, "ann").await,
            recorded(&http, p, url, "ben").await,
            recorded(&http, p, url, newcomer).await,
        );
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, want, "attempts recorded");
}

#[tokio::test]
async fn a_server_whose_stderr_is_full_keeps_answering_and_recording() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        println!("skipped: no /dev/full on this system");
        return;
    };
    let p = prepare();
    let server = serve(&p, &[], &[], Stdio::from(full));
    serves_whatever_stderr_does(&p, &server, "cy").await;
}

#[tokio::test]
async fn a_server_whose_stderr_nobody_reads_keeps_answering_and_recording() {
    let p = prepare();
    // A pipe whose reader never reads: once its buffer is full, every write to it would block.
    let mut server = serve(&p, &[], &["--log-format", "json"], Stdio::piped());
    let stderr = server.child.stderr.take().unwrap();
    serves_whatever_stderr_does(&p, &server, "cy").await;
    drop(stderr);
    // Then the reader goes away: writes fail with EPIPE.
    serves_whatever_stderr_does(&p, &server, "dee").await;
}

/// What became of a connection of the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    Refused,
    Closed,
}

fn fate(s: &mut std::net::TcpStream) -> Fate {
    use std::io::Read;
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) if buf[..n].starts_with(b"HTTP/1.1 503") => Fate::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Fate::Open,
        _ => Fate::Closed,
    }
}

/// Thousands of connections from 127.0.0.1 that send nothing, half a request line or
/// unfinished headers, to a server with 1,024 descriptors: checks from 127.0.0.2 are answered
/// all along, the flood is held to its per-client cap and closed after the timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_client_does_not_stop_another() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        println!("skipped: no prlimit (util-linux) to lower the server's descriptor limit");
        return;
    }
    // As many connections as the test's own descriptors allow, up to 20,000.
    let own_fds = deadbolt::conn::raise_fd_limit().unwrap_or(1024);
    let flood = own_fds.saturating_sub(500).min(20_000) as usize;
    let p = prepare();
    let server = serve(
        &p,
        &["prlimit", "--nofile=1024:1024", "--"],
        &["--header-timeout", "2s", "--idle-timeout", "3s"],
        Stdio::null(),
    );
    let per_ip = server.started["max_connections_per_ip"].as_u64().unwrap() as usize;
    let cap = server.started["max_connections"].as_u64().unwrap() as usize;
    assert!(cap < 1024 && per_ip <= cap / 2, "{}", server.started);
    let addr: std::net::SocketAddr = server.started["listening"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let started = std::time::Instant::now();
    // Each connection binds its own port: the kernel's search for a free ephemeral port grows
    // slow once most of them are taken.
    let mut held = Vec::with_capacity(flood);
    let mut port = 10_000u16;
    while held.len() < flood && port < 65_000 {
        port += 1;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if socket.bind(([127, 0, 0, 1], port).into()).is_err() {
            continue;
        }
        let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr)).await
        else {
            continue;
        };
        let _ = match held.len() % 3 {
            0 => Ok(0),
            1 => s.try_write(b"POST /nl3/api/v1/accountProt"),
            _ => s.try_write(
                b"POST /nl3/api/v1/accountProtectionCheck HTTP/1.1\r\nhost: x\r\nx-nl3-auth",
            ),
        };
        held.push(s.into_std().unwrap());
    }
    let connected = held.len();
    let flood_secs = started.elapsed().as_secs_f64();

    // Another client, while the flood holds its connections.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let (sub, locked) = if i % 2 == 0 {
            ("ann", false)
        } else {
            ("ben", true)
        };
        let t = std::time::Instant::now();
        let got = check(&other, &p, &server.url, sub).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(got, (200, json!({"locked": locked})), "check {i}");
    }

    let fates: Vec<Fate> = held.iter_mut().map(fate).collect();
    let open = fates.iter().filter(|f| **f == Fate::Open).count();
    let refused = fates.iter().filter(|f| **f == Fate::Refused).count();
    println!(
        "flood: {connected} of {flood} connections made in {flood_secs:.1} s (test fd limit \
         {own_fds}, server 1024: cap {cap}, per client {per_ip}); {open} held open, {refused} \
         answered 503; 40 checks from 127.0.0.2, slowest {slowest:?}"
    );
    assert!(connected > per_ip, "the flood went past the per-client cap");
    assert!(open <= per_ip, "{open} open, more than the cap {per_ip}");
    assert!(refused > 0, "connections over the cap are answered 503");

    // The held ones are closed after the header (2 s) and idle (3 s) timeouts.
    let mut still_open = open;
    for _ in 0..100 {
        still_open = held
            .iter_mut()
            .map(fate)
            .filter(|f| *f == Fate::Open)
            .count();
        if still_open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(still_open, 0, "idle and half-sent connections are closed");
    println!(
        "every flood connection closed {:.1} s after the flood began",
        started.elapsed().as_secs_f64()
    );
    drop(held);

    // Both clients are served afterwards.
    assert_eq!(
        check(&other, &p, &server.url, "ben").await,
        (200, json!({"locked": true}))
    );
    let http = reqwest::Client::new();
    assert_eq!(
        check(&http, &p, &server.url, "ann").await,
        (200, json!({"locked": false}))
    );
}

/// A body that stops halfway is answered 400 after the body timeout, not waited on forever.
#[tokio::test]
async fn a_body_that_stops_halfway_is_refused_after_the_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = crate::helpers::TestApp::spawn_with(|c| {
        c.connections.body_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", t.port))
        .await
        .unwrap();
    s.write_all(
        b"POST /nl3/api/v1/accountProtectionCheck HTTP/1.1\r\nhost: x\r\n\
          content-length: 100\r\n\r\n{\"userIP\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server waited on the body past its timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
    t.stop().await;
}

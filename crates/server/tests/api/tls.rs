//! HTTPS on the public listener: checks over HTTP/2 and HTTP/1.1, the portal's `Secure` cookies,
//! certificates reloaded from their files, the handshake's timeout and cap, and start errors.

use crate::helpers::TestApp;
use crate::pki::Ca;
use crate::portal::Http;
use deadbolt::tls::TlsConfig;
use deadbolt::Config;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "app.example.com";

/// The server keeps a connection's times in whole milliseconds: it may close one a millisecond
/// before a timeout measured here from the outside.
const SLACK: Duration = Duration::from_millis(5);

/// A client that trusts `ca`'s root and nothing else, and reports the server's certificate.
fn trusting(ca: &Ca) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.root_pem.as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
}

/// The server's certificate (DER) on a new connection of a client trusting `ca`, if one is made.
async fn served_certificate(ca: &Ca, url: &str) -> Option<Vec<u8>> {
    let resp = trusting(ca)
        .build()
        .unwrap()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .ok()?;
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

/// A server on HTTPS with a certificate of a new authority; the files live in the returned dir.
async fn https(adjust: impl FnOnce(&mut Config)) -> (TestApp, Ca, tempfile::TempDir) {
    let ca = Ca::root("Deadbolt test root");
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server().write(files.path());
    let t = TestApp::spawn_with(|c| {
        c.tls = Some(TlsConfig {
            reload_every: Duration::from_millis(100),
            ..TlsConfig::new(cert, key)
        });
        adjust(c);
    })
    .await;
    assert!(t.url.starts_with("https://127.0.0.1:"), "{}", t.url);
    (t, ca, files)
}

/// Replaces `path` as ACME clients do: a new file renamed over the old one.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn check(client: &reqwest::Client, t: &TestApp, key: &str, sub: &str) -> reqwest::Response {
    client
        .post(format!("{}/nl3/api/v1/accountProtectionCheck", t.url))
        .header("x-nl3-authorization-token", t.token(ISSUER, key, sub))
        .body("{}")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn checks_are_answered_over_https_on_http2_and_http1() {
    let (mut t, ca, _files) = https(|_| {}).await;
    let key = t.locked_account(ISSUER, "alice").await;

    // A client that offers h2 gets it.
    let h2 = trusting(&ca).build().unwrap();
    let resp = check(&h2, &t, &key, "alice").await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        serde_json::json!({"locked": true})
    );

    // One that speaks HTTP/1.1 only is served too.
    let h1 = trusting(&ca).http1_only().build().unwrap();
    let resp = check(&h1, &t, &key, "alice").await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.json::<Value>().await.unwrap()["locked"], true);

    // The harness's own helpers over HTTPS; the metrics listener stays plain HTTP.
    t.http = h2;
    assert!(!t.locked(ISSUER, &key, "bob").await);
    assert!(t.metrics_url.as_deref().unwrap().starts_with("http://"));
    assert!(t.metrics_text().await.contains("deadbolt_"));
}

#[tokio::test]
async fn plain_http_and_clients_that_do_not_trust_the_certificate_are_refused() {
    let (t, ca, _files) = https(|_| {}).await;
    assert!(served_certificate(&ca, &t.url).await.is_some());

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let got = plain
        .get(format!("http://127.0.0.1:{}/healthz", t.port))
        .send()
        .await;
    assert!(got.is_err(), "plain HTTP on the TLS port: {got:?}");

    let other = Ca::root("Another root");
    assert!(served_certificate(&other, &t.url).await.is_none());
    // Nor does the public web's trust store know the test authority.
    let public = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(public
        .get(format!("{}/healthz", t.url))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn the_portal_over_https_sets_secure_cookies() {
    let (t, ca, _files) = https(|_| {}).await;
    let (email, password) = ("tls@example.test", "a long enough password");
    t.service
        .create_person(email, Some(password), None)
        .await
        .unwrap();
    let client = trusting(&ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut http = Http::with_client(&t.url, client);
    let page = http.login(email, password).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let set: Vec<String> = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("deadbolt_session="))
        .unwrap_or_else(|| panic!("a session cookie in {set:?}"));
    assert!(session.contains("; Secure"), "{session}");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_refused() {
    let (t, first, files) = https(|_| {}).await;
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    let before = served_certificate(&first, &t.url).await.expect("served");

    // Another authority, with an intermediate: the file holds the chain.
    let second = Ca::root("Deadbolt renewed root").intermediate("Deadbolt renewed intermediate");
    let renewed = second.server();
    replace(&key, &renewed.key_pem);
    replace(&cert, &renewed.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if served_certificate(&second, &t.url).await.as_deref() == Some(&renewed.der[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_certificate(&first, &t.url).await.is_none());
    assert_ne!(before, renewed.der);

    // A certificate with a key that is not its own, then a key that is not PEM: both refused,
    // the renewed pair keeps serving.
    let stranger = first.server();
    replace(&cert, &stranger.cert_pem);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_certificate(&second, &t.url).await.as_deref(),
        Some(&renewed.der[..])
    );
    replace(&key, "not a key\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_certificate(&second, &t.url).await.as_deref(),
        Some(&renewed.der[..])
    );

    // Its key arrives: the pair loads.
    replace(&key, &stranger.key_pem);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_certificate(&first, &t.url).await.as_deref() != Some(&stranger.der[..]) {
        assert!(Instant::now() < deadline, "the repaired pair is not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_connection_that_never_completes_its_handshake_is_closed_and_frees_its_slot() {
    let header_timeout = Duration::from_millis(800);
    let (t, ca, _files) = https(|c| {
        c.connections.header_timeout = header_timeout;
        c.connections.max_connections = 2;
        c.connections.max_per_ip = 0;
    })
    .await;
    let addr = format!("127.0.0.1:{}", t.port);
    let opened = Instant::now();
    let mut silent = vec![
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both slots are held: a real client is turned away meanwhile.
    assert!(served_certificate(&ca, &t.url).await.is_none());

    for s in &mut silent {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the server closes a silent connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    assert!(
        opened.elapsed() >= header_timeout,
        "not before the header timeout"
    );
    // The slots came back.
    assert!(served_certificate(&ca, &t.url).await.is_some());
}

/// A TLS client made by hand, offering `alpn` to the server, trusting `ca`.
async fn tls_connect(
    ca: &Ca,
    port: u16,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca.root_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes; what it sent, and when it closed.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (String, Instant) {
    let mut got = Vec::new();
    // A close without close_notify is an error to rustls: the connection ended all the same.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection");
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

#[tokio::test]
async fn over_tls_a_slow_head_and_an_idle_connection_are_closed_in_time() {
    let (header, idle) = (Duration::from_millis(600), Duration::from_millis(1500));
    let (t, ca, _files) = https(|c| {
        c.connections.header_timeout = header;
        c.connections.idle_timeout = idle;
    })
    .await;

    // Half a request head, then nothing: closed at the header timeout, unanswered.
    let mut slow = tls_connect(&ca, t.port, b"http/1.1").await;
    let began = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let (got, closed) = until_closed(&mut slow).await;
    assert_eq!(got, "", "no answer to half a head");
    assert!(
        closed - began + SLACK >= header,
        "not before the header timeout"
    );

    // One whole request on a kept-alive connection, then silence: closed at the idle timeout.
    let mut kept = tls_connect(&ca, t.port, b"http/1.1").await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let (got, closed) = until_closed(&mut kept).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        closed - answered + SLACK >= idle,
        "not before the idle timeout"
    );
}

/// On HTTP/2 the client's own frames between requests do not start the header timeout: a
/// connection with no request in progress lasts the idle timeout.
#[tokio::test]
async fn an_idle_http2_connection_lasts_the_idle_timeout() {
    let (header, idle) = (Duration::from_millis(300), Duration::from_millis(2000));
    let (t, ca, _files) = https(|c| {
        c.connections.header_timeout = header;
        c.connections.idle_timeout = idle;
    })
    .await;
    let tls = tls_connect(&ca, t.port, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let get = || {
        hyper::Request::get(format!("https://localhost:{}/healthz", t.port))
            .body(String::new())
            .unwrap()
    };
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);
    let answered = Instant::now();
    // Past several header timeouts, well within the idle one: the same connection answers.
    tokio::time::sleep(header * 3).await;
    // Noted before asking: the server's idle time starts after this.
    let asked_again = Instant::now();
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);
    let answered_again = Instant::now();
    // Then silence: the server closes it once idle.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("closed at the idle timeout")
        .unwrap()
        .ok();
    assert!(answered_again - answered < idle);
    assert!(
        asked_again.elapsed() + SLACK >= idle,
        "closed {:?} after the last request, before the idle timeout",
        asked_again.elapsed()
    );
}

/// `deadbolt serve` with TLS flags: each mistake is a clear error at start; a good pair serves
/// HTTPS and says so.
#[tokio::test]
async fn tls_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
    let ca = Ca::root("Deadbolt test root");
    let (cert, key) = ca.server().write(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        crate::cli::deadbolt_fails(&db, &args)
    };

    let err = serve(&["--tls-cert", cert]);
    assert!(
        err.contains("--tls-cert") && err.contains("--tls-key"),
        "{err}"
    );
    let err = serve(&["--tls-key", key]);
    assert!(
        err.contains("--tls-key") && err.contains("--tls-cert"),
        "{err}"
    );

    let missing = dir.path().join("missing.pem");
    let err = serve(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", key]);
    assert!(
        err.contains("cannot read the TLS certificate") && err.contains("missing.pem"),
        "{err}"
    );
    let err = serve(&["--tls-cert", cert, "--tls-key", missing.to_str().unwrap()]);
    assert!(
        err.contains("cannot read the TLS key") && err.contains("missing.pem"),
        "{err}"
    );

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_key) = ca.server().write(&other);
    let err = serve(&["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()]);
    assert!(err.contains("does not match the certificate"), "{err}");
    assert!(
        err.contains(other_key.to_str().unwrap()) && err.contains(cert),
        "{err}"
    );

    // From the environment, as a service manager would set them.
    let mut child = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
        .env("DEADBOLT_TLS_CERT", cert)
        .env("DEADBOLT_TLS_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let started: Value = serde_json::from_str(&line).unwrap();
    assert!(
        started["url"].as_str().unwrap().starts_with("https://"),
        "{line}"
    );
}

//! `deadbolt backup` while the server serves and takes locks, `deadbolt restore` into a new
//! store: every lock acknowledged before the backup began is in it, and its master key with it.

use reqwest::Method;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use crate::cli::{deadbolt, deadbolt_fails};
use crate::helpers::TestApp;
use deadbolt::MasterKeySource;

const ISSUER: &str = "backup.example.com";
const ACCOUNTS: usize = 300;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_lock() {
    let t = TestApp::spawn().await;
    let app = t.app(ISSUER).await;
    let key = t.key(&app).await;
    let (_, sdk) = t.service.create_sdk_key(&app.company_id).await.unwrap();
    for i in 0..ACCOUNTS {
        t.service
            .enroll(&deadbolt::service::By::CLI, &app.id, &format!("u{i}"), None)
            .await
            .unwrap();
    }
    // Locks go on one after the other while the backup is taken; each acknowledged one is
    // noted with whether the backup had begun.
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let began: Arc<Mutex<Option<usize>>> = Arc::default();
    let locker = {
        let (t_url, sdk, acked) = (t.url.clone(), sdk.clone(), acked.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..ACCOUNTS {
                let resp = http
                    .request(Method::POST, format!("{t_url}/nl3/api/v1/sdk/lock"))
                    .header("x-nl3-server-api-token", &sdk)
                    .body(json!({"domain": ISSUER, "userAccountId": format!("u{i}")}).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                acked.lock().unwrap().push(i);
            }
        })
    };
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let out = t.dir.path().join("backup.db");
    let backup = {
        let (db, out, acked, began) = (t.db_url.clone(), out.clone(), acked.clone(), began.clone());
        tokio::task::spawn_blocking(move || {
            *began.lock().unwrap() = Some(acked.lock().unwrap().len());
            deadbolt(&db, &["backup", "--to", out.to_str().unwrap()])
        })
    };
    let printed = backup.await.unwrap();
    locker.await.unwrap();
    let before = began.lock().unwrap().unwrap();
    assert!(before >= 60);
    assert_eq!(printed["backup"], out.to_str().unwrap());
    assert!(printed["bytes"].as_u64().unwrap() > 0);
    let key_copy = t.dir.path().join("backup.db.key");
    assert_eq!(printed["key"], key_copy.to_str().unwrap());
    assert_eq!(mode(&out), 0o600, "the backup holds personal data");
    assert_eq!(mode(&key_copy), 0o600, "the key copy is a secret");

    // Restored into a new store, served by a new server.
    let dir = tempfile::tempdir().unwrap();
    let restored = format!("sqlite://{}", dir.path().join("deadbolt.db").display());
    let printed = deadbolt(&restored, &["restore", "--from", out.to_str().unwrap()]);
    assert_eq!(printed["applications"], 1);
    assert_eq!(printed["signing_keys"], 1);
    let t2 = TestApp::spawn_on(restored, dir, MasterKeySource::default(), |_| {}).await;
    let acked = acked.lock().unwrap().clone();
    for &i in &acked[..before] {
        assert!(
            t2.locked(ISSUER, &key, &format!("u{i}")).await,
            "u{i} was locked before the backup began"
        );
    }
    t2.stop().await;
    t.stop().await;
}

#[tokio::test]
async fn backups_and_restores_refuse_what_would_lose_or_mix_data() {
    let t = TestApp::spawn().await;
    let app = t.app(ISSUER).await;
    t.key(&app).await;
    let out = t.dir.path().join("backup.db");
    std::fs::write(&out, b"an older backup").unwrap();
    let err = deadbolt_fails(&t.db_url, &["backup", "--to", out.to_str().unwrap()]);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"an older backup",
        "left as it was"
    );

    let fresh = t.dir.path().join("fresh.db");
    deadbolt(&t.db_url, &["backup", "--to", fresh.to_str().unwrap()]);
    // Into the store a server runs on: refused, nothing changed.
    let err = deadbolt_fails(&t.db_url, &["restore", "--from", fresh.to_str().unwrap()]);
    assert!(err.contains("exists"), "{err}");
    // Without the key it was made with: refused before anything is written.
    let bare = t.dir.path().join("bare.db");
    std::fs::copy(&fresh, &bare).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("deadbolt.db");
    let err = deadbolt_fails(
        &format!("sqlite://{}", target.display()),
        &["restore", "--from", bare.to_str().unwrap()],
    );
    assert!(err.contains("no master key"), "{err}");
    assert!(!target.exists(), "nothing restored");
    // With another key than its own: the signing keys do not open, and it says so.
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, "b3RoZXIga2V5IG9mIDMyIGJ5dGVzLCBub3QgdGhpcyE=").unwrap();
    let err = deadbolt_fails(
        &format!("sqlite://{}", target.display()),
        &[
            "--master-key-file",
            other_key.to_str().unwrap(),
            "restore",
            "--from",
            bare.to_str().unwrap(),
        ],
    );
    assert!(err.contains("master key"), "{err}");
    // PostgreSQL is backed up with its own tools.
    let err = deadbolt_fails(
        "postgres://nobody@127.0.0.1:1/none",
        &[
            "backup",
            "--to",
            t.dir.path().join("pg.db").to_str().unwrap(),
        ],
    );
    assert!(err.contains("pg_dump"), "{err}");
    t.stop().await;
}

//! `deadbolt.toml`: every flag's setting can be written in a file; flags beat the environment,
//! which beats the file, which beats the defaults; a key that names no setting is refused.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `deadbolt args…` with `env` set (and the store variables cleared unless given).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deadbolt"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("DEADBOLT_DB")
        .env_remove("DEADBOLT_CONFIG")
        .env_remove("DEADBOLT_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A store holding one company named `name`; its URL.
fn store(dir: &Path, name: &str) -> String {
    let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let (ok, _, err) = run(
        dir,
        &["--db", &url, "company", "create", "--name", name],
        &[],
    );
    assert!(ok, "{err}");
    url
}

fn company(out: &Value) -> &str {
    out["companies"][0]["name"].as_str().unwrap_or("none")
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (file, env, flag) = (store(d, "file"), store(d, "env"), store(d, "flag"));
    let conf = d.join("deadbolt.toml");
    std::fs::write(&conf, format!("# the store\ndb = \"{file}\"\n")).unwrap();
    let conf = conf.to_str().unwrap();
    let list = |args: &[&str], env: &[(&str, &str)]| {
        let (ok, out, err) = run(d, args, env);
        assert!(ok, "{args:?}: {err}");
        company(&out).to_string()
    };
    assert_eq!(list(&["--config", conf, "company", "list"], &[]), "file");
    assert_eq!(
        list(&["company", "list"], &[("DEADBOLT_CONFIG", conf)]),
        "file"
    );
    assert_eq!(
        list(
            &["--config", conf, "company", "list"],
            &[("DEADBOLT_DB", &env)]
        ),
        "env"
    );
    assert_eq!(
        list(
            &["--config", conf, "--db", &flag, "company", "list"],
            &[("DEADBOLT_DB", &env)]
        ),
        "flag"
    );
    // Without the file: the default store, in the working directory (empty).
    assert_eq!(list(&["company", "list"], &[]), "none");
}

#[test]
fn serve_takes_its_settings_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("d.db").display());
    let conf = d.join("deadbolt.toml");
    std::fs::write(
        &conf,
        format!(
            "db = \"{db}\"\nlisten = \"127.0.0.1:0\"\npublic-url = \"https://file.example.com\"\n\
             rate_limit = 50\nattempts_retention = \"30d\"\nmax_connections = 64\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deadbolt"))
        .current_dir(d)
        .args(["--config", conf.to_str().unwrap(), "serve"])
        .env_remove("DEADBOLT_DB")
        .env_remove("DEADBOLT_MASTER_KEY")
        .env_remove("DEADBOLT_PUBLIC_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?}"));
    assert_eq!(started["audiences"][0], "https://file.example.com");
    assert!(started["max_connections"].as_u64().unwrap() <= 64);
    assert!(started["listening"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[test]
fn a_file_with_an_unknown_key_or_a_bad_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refused = |text: &str| {
        let conf = d.join("bad.toml");
        std::fs::write(&conf, text).unwrap();
        let (ok, _, err) = run(
            d,
            &["--config", conf.to_str().unwrap(), "company", "list"],
            &[],
        );
        assert!(!ok, "{text:?} accepted");
        err
    };
    let err = refused("db = \"sqlite://x.db\"\npublic_ulr = \"https://typo.example.com\"\n");
    assert!(err.contains("unknown setting \"public_ulr\""), "{err}");
    assert!(err.contains("public_url"), "the settings are listed: {err}");
    let err = refused("db = [\"a\", \"b\"]\n");
    assert!(err.contains("db is a array"), "{err}");
    let err = refused("db = \n");
    assert!(err.contains("bad.toml"), "{err}");
    let err = refused("attempts_retention = \"5m\"\n[x]\n");
    assert!(err.contains("x"), "{err}");
    // A value the flag refuses is refused as the flag would.
    let conf = d.join("retention.toml");
    std::fs::write(
        &conf,
        "attempts_retention = \"5m\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(d, &["--config", conf.to_str().unwrap(), "serve"], &[]);
    assert!(!ok);
    assert!(err.contains("under an hour"), "{err}");
    let (ok, _, err) = run(d, &["--config", "missing.toml", "company", "list"], &[]);
    assert!(!ok);
    assert!(err.contains("missing.toml"), "{err}");
}

//! `deadbolt-bench`: seeds a store through `importUsers`, then loads the check path of
//! `deadbolt serve` and of a do-nothing axum baseline with wrk, alternating A B A B, and prints
//! throughput, latency percentiles, the ratio to the baseline and the server's peak memory.

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Parser;
use deadbolt::{MasterKeySource, Service};
use deadbolt_core::{AccountState, Clock, SystemClock, UnenrolledPolicy};
use rand::Rng;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Deadbolt's check path against a do-nothing HTTP baseline, side by side")]
struct Args {
    /// Enrolled accounts (comma-separated for a sweep: 10000,100000,1000000).
    #[arg(long, default_value = "1000000")]
    accounts: String,
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// wrk connections (comma-separated for a sweep).
    #[arg(long, default_value = "16")]
    connections: String,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// A-B pairs per setting.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Distinct tokens (accounts) the load cycles through.
    #[arg(long, default_value_t = 20_000)]
    tokens: usize,
    /// Where `deadbolt` and `baseline` are (built with --release).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Changes per second made during Deadbolt's runs (comma-separated: each value is a run of
    /// its own, side by side): SDK lock/unlock of random enrolled accounts the load does not
    /// ask about. 0: no changes.
    #[arg(long, default_value = "0")]
    churn: String,
    /// Also append the results, as Markdown, to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
}

fn list(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse::<usize>()
                .context("a number")
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    which("wrk").context("wrk is needed (Debian: apt-get install wrk)")?;
    for bin in ["deadbolt", "baseline"] {
        if !args.bin_dir.join(bin).exists() {
            bail!(
                "{} missing: cargo build --release -p deadbolt -p deadbolt-bench",
                args.bin_dir.join(bin).display()
            );
        }
    }
    let mut report = String::new();
    report.push_str(&format!(
        "\n### Run of {} ({} cores, {})\n\n",
        SystemClock.now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model()
    ));
    report.push_str("| accounts | connections | changes/s | baseline req/s | deadbolt req/s | ratio | deadbolt p50 | deadbolt p99 | baseline p99 | non-2xx | attempts recorded | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for accounts in list(&args.accounts)? {
        let rows = bench_size(&args, accounts).await?;
        for r in rows {
            println!("{r}");
            report.push_str(&r);
            report.push('\n');
        }
    }
    if let Some(path) = &args.markdown {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(report.as_bytes())?;
        eprintln!("appended to {}", path.display());
    }
    Ok(())
}

struct Seeded {
    dir: tempfile_dir::Dir,
    db_url: String,
    master_key: String,
    sdk: String,
    /// (issuer, key base64) per application.
    apps: Vec<(String, String)>,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn seed_setup(args: &Args) -> Result<Seeded> {
    let dir = std::env::temp_dir().join(format!("deadbolt-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}", dir.join("bench.db").display());
    let master_key =
        base64::engine::general_purpose::STANDARD.encode(rand::thread_rng().gen::<[u8; 32]>());
    let key_source = MasterKeySource {
        value: Some(master_key.clone()),
        file: None,
    };
    let service = Service::open(&db_url, &key_source, Arc::new(SystemClock)).await?;
    let company = service.create_company("Bench company").await?;
    let mut apps = Vec::new();
    for i in 0..args.apps {
        let issuer = format!("app{i}.bench.example");
        // Half the applications enrol accounts locked: the load sees both answers.
        let state = if i % 2 == 0 {
            AccountState::Locked
        } else {
            AccountState::Unlocked
        };
        let app = service
            .create_application(&company.id, &issuer, None, UnenrolledPolicy::Allow, state)
            .await?;
        let (_, key) = service.create_signing_key(&app.id).await?;
        apps.push((issuer, key));
    }
    let (_, sdk) = service.create_sdk_key(&company.id).await?;
    Ok(Seeded {
        dir: tempfile_dir::Dir(dir),
        db_url,
        master_key,
        sdk,
        apps,
    })
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(cmd: &mut Command) -> Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("server said {line:?}"))?;
        let addr = v["listening"].as_str().context("listening")?;
        Ok(Self {
            child,
            url: format!("http://{addr}"),
        })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn terminate(mut self) -> Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

async fn bench_size(args: &Args, accounts: usize) -> Result<Vec<String>> {
    let seeded = seed_setup(args).await?;
    let deadbolt = Server::start(
        Command::new(args.bin_dir.join("deadbolt"))
            .args([
                "--db",
                &seeded.db_url,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--public-url",
                "https://api.bench.example",
                "--rate-limit",
                "0",
            ])
            .env("DEADBOLT_MASTER_KEY", &seeded.master_key)
            .env("RUST_LOG", "warn"),
    )?;
    let http = reqwest::Client::new();

    // Seed through the SDK API, 10,000 rows a request, two requests in flight (the server
    // parses one while SQLite writes the other), as a company back end would.
    let per_app = accounts.div_ceil(seeded.apps.len());
    let started = Instant::now();
    let mut batches: Vec<Vec<Value>> = vec![Vec::with_capacity(10_000)];
    let mut sent = 0usize;
    'outer: for (a, (issuer, _)) in seeded.apps.iter().enumerate() {
        for i in 0..per_app {
            if sent == accounts {
                break 'outer;
            }
            let batch = batches.last_mut().context("a batch")?;
            batch.push(json!({"first_name": "Bench", "last_name": format!("User {i}"), "email": format!("u{i}.a{a}@bench.example"),
                              "domain": issuer, "phone": "+1 555 0100", "userAccountId": format!("user{i}")}));
            sent += 1;
            if batch.len() == 10_000 {
                batches.push(Vec::with_capacity(10_000));
            }
        }
    }
    let mut in_flight = tokio::task::JoinSet::new();
    for mut batch in batches.into_iter().filter(|b| !b.is_empty()) {
        if in_flight.len() == 2 {
            in_flight.join_next().await.context("import task")???;
        }
        let (http, url, sdk) = (http.clone(), deadbolt.url.clone(), seeded.sdk.clone());
        in_flight.spawn(async move { import(&http, &url, &sdk, &mut batch).await });
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {sent} accounts through importUsers in {seed_secs:.1} s ({:.0} rows/s)",
        sent as f64 / seed_secs
    );

    let (script, asked) = write_script(&seeded, args.tokens, per_app.min(accounts))?;
    // The changes go to accounts the load never asks about: what they cost is the cost to
    // other accounts' checks.
    let quiet: Vec<(String, String)> = seeded
        .apps
        .iter()
        .flat_map(|(issuer, _)| {
            (0..per_app.min(accounts)).map(move |i| (issuer.clone(), format!("user{i}")))
        })
        .filter(|t| !asked.contains(t))
        .collect();
    let baseline = Server::start(Command::new(args.bin_dir.join("baseline")).arg("127.0.0.1:0"))?;

    let mut rows = Vec::new();
    // Warm up both servers (Deadbolt's cache fills with the accounts the load asks about; the
    // first seconds would otherwise measure store reads, not the steady state). Not reported.
    let warm = wrk(&deadbolt.url, &script, 16, 3)?;
    wrk(&baseline.url, &script, 16, 1)?;
    let mut total_requests = warm.requests;
    let mut per_conn = Vec::new();
    let churns = list(&args.churn)?;
    for conns in list(&args.connections)? {
        let mut a = Vec::new();
        let mut b: Vec<Vec<Run>> = vec![Vec::new(); churns.len()];
        for round in 0..args.rounds {
            let ra = wrk(&baseline.url, &script, conns, args.duration)?;
            eprintln!(
                "  c={conns} round {round}: baseline {:.0} req/s p99 {:.2} ms",
                ra.rps, ra.p99_ms
            );
            a.push(ra);
            for (c, &rate) in churns.iter().enumerate() {
                let changes = Churn::start(&http, &deadbolt.url, &seeded.sdk, &quiet, rate);
                let rb = wrk(&deadbolt.url, &script, conns, args.duration)?;
                let made = changes.stop().await?;
                eprintln!("  c={conns} round {round}: deadbolt with {rate} changes/s ({made} made) {:.0} req/s p99 {:.2} ms, non-2xx {}",
                    rb.rps, rb.p99_ms, rb.non_2xx);
                total_requests += rb.requests;
                b[c].push(rb);
            }
        }
        for (c, runs) in b.into_iter().enumerate() {
            per_conn.push((conns, churns[c], a.clone(), runs));
        }
    }
    let rss = deadbolt.peak_rss_kib();
    deadbolt.terminate()?;
    baseline.terminate()?;
    // Graceful stop drained the attempt queue: every answered check is a row.
    let store = deadbolt_store::Store::open(&seeded.db_url).await?;
    let recorded = store.attempt_count().await?;
    drop(store);
    for (conns, churn, a, b) in per_conn {
        let mean = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
        let worst = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).fold(0.0, f64::max);
        let non_2xx: u64 = b.iter().map(|r| r.non_2xx + r.socket_errors).sum();
        rows.push(format!(
            "| {accounts} | {conns} | {churn} | {:.0} | {:.0} | **{:.2}** | {:.2} ms | {:.2} ms | {:.2} ms | {non_2xx} | {} | {} |",
            mean(&a, |r| r.rps),
            mean(&b, |r| r.rps),
            mean(&b, |r| r.rps) / mean(&a, |r| r.rps),
            mean(&b, |r| r.p50_ms),
            worst(&b, |r| r.p99_ms),
            worst(&a, |r| r.p99_ms),
            // wrk does not count requests still in flight when it stops; the server answered those too.
            if recorded as u64 >= total_requests { format!("{recorded} (all {total_requests} counted by wrk)") } else { format!("{recorded} of {total_requests}") },
            rss.map_or("?".into(), |k| format!("{} MiB", k / 1024)),
        ));
    }
    rows.push(format!(
        "| {accounts} | import | | seeded in {seed_secs:.1} s | | | | | | | | |"
    ));
    drop(seeded.dir);
    Ok(rows)
}

async fn import(
    http: &reqwest::Client,
    url: &str,
    sdk: &str,
    batch: &mut Vec<Value>,
) -> Result<()> {
    let resp = http
        .post(format!("{url}/nl3/api/v1/sdk/importUsers"))
        .header("x-nl3-server-api-token", sdk)
        .json(&*batch)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "importUsers answered {}: {}",
            resp.status(),
            resp.text().await?
        );
    }
    batch.clear();
    Ok(())
}

/// A wrk script cycling through `n` valid tokens spread over the applications and accounts;
/// and the (issuer, account) pairs it asks about.
fn write_script(
    s: &Seeded,
    n: usize,
    per_app: usize,
) -> Result<(PathBuf, std::collections::HashSet<(String, String)>)> {
    let mut asked = std::collections::HashSet::new();
    let now = SystemClock.now().timestamp();
    let mut rng = rand::thread_rng();
    let mut lua = String::from("local tokens = {\n");
    for _ in 0..n {
        let (issuer, key) = &s.apps[rng.gen_range(0..s.apps.len())];
        let account = format!("user{}", rng.gen_range(0..per_app.max(1)));
        asked.insert((issuer.clone(), account.clone()));
        let claims = json!({"iss": issuer, "aud": "https://api.bench.example", "sub": account,
                            "iat": now - 60, "exp": now + 14 * 60});
        let key = base64::engine::general_purpose::STANDARD.decode(key)?;
        lua.push_str(&format!(
            "  \"{}\",\n",
            deadbolt_core::token::sign_hs256(&claims, &key)
        ));
    }
    lua.push_str("}\n");
    let body = r#"{"userIP":"203.0.113.7","userDevice":"Mozilla/5.0 (X11; Linux x86_64)","userLocation":"48.85,2.35","integrationType":"cognito","integrationData":{"loc":"48.85,2.35"}}"#;
    lua.push_str(&format!(
        "local body = '{body}'\nlocal i = math.random(1, #tokens)\nrequest = function()\n  i = i % #tokens + 1\n  return wrk.format(\"POST\", \"/nl3/api/v1/accountProtectionCheck\", {{[\"x-nl3-authorization-token\"] = tokens[i], [\"content-type\"] = \"application/json\", [\"x-forwarded-for\"] = \"203.0.113.7\"}}, body)\nend\n"
    ));
    let path = s.dir.0.join("check.lua");
    std::fs::write(&path, lua)?;
    Ok((path, asked))
}

/// Changes made at a steady rate through the SDK API while a run loads the check path.
struct Churn {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl Churn {
    fn start(
        http: &reqwest::Client,
        url: &str,
        sdk: &str,
        targets: &[(String, String)],
        per_sec: usize,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (http, url, sdk, targets) = (
            http.clone(),
            url.to_string(),
            sdk.to_string(),
            targets.to_vec(),
        );
        let task = tokio::spawn(async move {
            if per_sec == 0 || targets.is_empty() {
                return Ok(0);
            }
            let mut tick =
                tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / per_sec as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut made = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.changed() => return Ok(made),
                    _ = tick.tick() => {}
                }
                let (issuer, account) = &targets[rand::thread_rng().gen_range(0..targets.len())];
                // Lock, unlock for a while, lock, unlock: what people do all day.
                let (path, body) = match made % 4 {
                    0 | 2 => ("lock", json!({"domain": issuer, "userAccountId": account})),
                    1 => (
                        "unlock",
                        json!({"domain": issuer, "userAccountId": account, "minutes": 15}),
                    ),
                    _ => (
                        "unlock",
                        json!({"domain": issuer, "userAccountId": account}),
                    ),
                };
                let resp = http
                    .post(format!("{url}/nl3/api/v1/sdk/{path}"))
                    .header("x-nl3-server-api-token", &sdk)
                    .json(&body)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("sdk/{path} answered {}", resp.status());
                }
                made += 1;
            }
        });
        Self { stop, task }
    }

    /// Stops the changes; how many were made.
    async fn stop(self) -> Result<u64> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

fn wrk(url: &str, script: &Path, conns: usize, secs: u64) -> Result<Run> {
    let threads = conns.clamp(1, 2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse_wrk(&text).with_context(|| format!("wrk output: {text}"))
}

fn parse_wrk(text: &str) -> Result<Run> {
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse()?,
            ["50%", v] => run.p50_ms = millis(v)?,
            ["99%", v] => run.p99_ms = millis(v)?,
            [n, "requests", "in", ..] => run.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => run.non_2xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                run.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if run.rps == 0.0 {
        bail!("no throughput in wrk's output");
    }
    Ok(run)
}

fn millis(v: &str) -> Result<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => bail!("unknown unit in {v}"),
    })
}

fn which(cmd: &str) -> Result<()> {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("{cmd} not found");
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n  Latency Distribution\n     50%  150.00us\n     75%  200.00us\n     90%  300.00us\n     99%    1.20ms\n  123456 requests in 10.00s, 12.34MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 12\nRequests/sec:  12345.67\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests, 123456);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.socket_errors, 3);
        assert!((r.p50_ms - 0.15).abs() < 1e-9 && (r.p99_ms - 1.2).abs() < 1e-9);
        assert!((r.rps - 12345.67).abs() < 1e-6);
        assert!(parse_wrk("garbage").is_err());
    }
}

//! `deadbolt-bench`: seeds a store (SQLite, or a fresh PostgreSQL database) through
//! `importUsers`, then loads the check path of `deadbolt serve` (one process, or several on the
//! one store with the load split between them) and of a do-nothing axum baseline with wrk,
//! alternating A B A B, and prints throughput, latency percentiles, the ratio to the baseline
//! and the servers' peak memory.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use deadbolt::{MasterKeySource, Service};
use deadbolt_core::{AccountState, Clock, SystemClock, UnenrolledPolicy};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
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
    /// Stores to run on, one after the other (comma-separated): sqlite, postgres.
    #[arg(long, default_value = "sqlite")]
    engine: String,
    /// For postgres: the URL of a database on the cluster to use (its admin's, such as
    /// postgres://postgres@127.0.0.1:54329/postgres); each run creates a fresh database there
    /// and drops it afterwards.
    #[arg(long, env = "DEADBOLT_BENCH_PG")]
    pg_url: Option<String>,
    /// `deadbolt serve` processes on the one store (comma-separated for several runs: 1,2).
    /// With two, each wrk run is two wrk processes, half the connections each, one per server
    /// (the baseline's runs too, against its one process), and their figures are summed.
    #[arg(long, default_value = "1")]
    replicas: String,
    /// Import the accounts without an email, so without a person: no blocked sign-in is
    /// emailed. With people (the default) half the load is blocked sign-ins on accounts whose
    /// person has alerts on, a flood of alert emails the servers queue while they answer.
    #[arg(long)]
    without_people: bool,
    /// Append each server's log (at info) to a file in this directory; dropped without it.
    #[arg(long)]
    server_logs: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

fn engines(s: &str) -> Result<Vec<Store>> {
    s.split(',')
        .map(|e| match e.trim() {
            "sqlite" => Ok(Store::Sqlite),
            "postgres" | "postgresql" => Ok(Store::Postgres),
            other => bail!("unknown engine {other:?}: sqlite or postgres"),
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    /// Changes made during the run, a second.
    changes_per_sec: f64,
    /// CPU time the server processes spent during the run, seconds (user and system).
    server_cpu_secs: f64,
}

impl Run {
    /// The servers' CPU time per answered request, microseconds: what a request costs them,
    /// which moves less than the throughput when other programs share the cores.
    fn cpu_us_per_request(&self) -> f64 {
        self.server_cpu_secs * 1e6 / self.requests.max(1) as f64
    }
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
    report.push_str("| store | servers | accounts | connections | changes/s (made) | baseline req/s | deadbolt req/s | ratio | deadbolt p50 | deadbolt p99 | baseline p99 | non-2xx | server CPU a request | attempts recorded | peak RSS per server |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for engine in engines(&args.engine)? {
        if engine == Store::Postgres && args.pg_url.is_none() {
            bail!("--engine postgres needs --pg-url or DEADBOLT_BENCH_PG");
        }
        for replicas in list(&args.replicas)? {
            if replicas == 0 {
                bail!("--replicas: at least one server");
            }
            for accounts in list(&args.accounts)? {
                let rows = bench_size(&args, engine, replicas, accounts).await?;
                for r in rows {
                    println!("{r}");
                    report.push_str(&r);
                    report.push('\n');
                }
            }
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
    /// PostgreSQL: the cluster URL it was created through, and the database's name (dropped
    /// at the end).
    pg: Option<(String, String)>,
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

async fn seed_setup(args: &Args, engine: Store) -> Result<Seeded> {
    let dir = std::env::temp_dir().join(format!("deadbolt-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (db_url, pg) = match engine {
        Store::Sqlite => (format!("sqlite://{}", dir.join("bench.db").display()), None),
        Store::Postgres => {
            let admin = args.pg_url.clone().context("a PostgreSQL URL")?;
            let name = format!(
                "deadbolt_bench_{}_{}",
                std::process::id(),
                rand::thread_rng().gen::<u32>()
            );
            pg_admin(&admin, &format!("CREATE DATABASE {name}")).await?;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            (format!("{base}/{name}"), Some((admin.clone(), name)))
        }
    };
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
        pg,
        master_key,
        sdk,
        apps,
    })
}

struct Server {
    child: Child,
    url: String,
    /// Its `/metrics`, where it serves them.
    metrics: Option<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Result<Self> {
        Self::start_logging(cmd, None)
    }

    /// Starts it with its stderr appended to `log` (dropped without one).
    fn start_logging(cmd: &mut Command, log: Option<&Path>) -> Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("server said {line:?}"))?;
        let addr = v["listening"].as_str().context("listening")?;
        Ok(Self {
            child,
            url: format!("http://{addr}"),
            metrics: v["metrics"].as_str().map(str::to_string),
        })
    }

    /// [`Server::scrape`] of each server, in order.
    async fn scrape_all(servers: &[Server], http: &reqwest::Client) -> Vec<HashMap<String, f64>> {
        let mut all = Vec::with_capacity(servers.len());
        for s in servers {
            all.push(s.scrape(http).await);
        }
        all
    }

    /// The counters and gauges of its `/metrics` (empty where it serves none or cannot answer).
    async fn scrape(&self, http: &reqwest::Client) -> HashMap<String, f64> {
        let Some(url) = &self.metrics else {
            return HashMap::new();
        };
        let Ok(resp) = http.get(url).send().await else {
            return HashMap::new();
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// CPU time used so far (user and system), seconds.
    fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(&self.child.id().to_string())
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

/// Runs one statement on the PostgreSQL cluster at `admin`.
async fn pg_admin(admin: &str, sql: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .with_context(|| "cannot connect to the PostgreSQL given with --pg-url".to_string())?;
    tokio::spawn(conn);
    client.batch_execute(sql).await.context(sql.to_string())?;
    Ok(())
}

async fn bench_size(
    args: &Args,
    engine: Store,
    replicas: usize,
    accounts: usize,
) -> Result<Vec<String>> {
    let seeded = seed_setup(args, engine).await?;
    if let Some(dir) = &args.server_logs {
        std::fs::create_dir_all(dir)?;
    }
    let servers = (0..replicas)
        .map(|n| {
            let log = args.server_logs.as_ref().map(|dir| {
                dir.join(format!(
                    "{}-{accounts}-server{n}.log",
                    engine.name().to_lowercase()
                ))
            });
            Server::start_logging(
                Command::new(args.bin_dir.join("deadbolt"))
                    .args([
                        "--db",
                        &seeded.db_url,
                        "serve",
                        "--listen",
                        "127.0.0.1:0",
                        "--metrics-listen",
                        "127.0.0.1:0",
                        "--public-url",
                        "https://api.bench.example",
                        "--rate-limit",
                        "0",
                    ])
                    .env("DEADBOLT_MASTER_KEY", &seeded.master_key)
                    .env("RUST_LOG", if log.is_some() { "info" } else { "warn" }),
                log.as_deref(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let deadbolt = &servers[0];
    let http = reqwest::Client::new();

    // Seed through the SDK API, two requests in flight (the server parses one while the store
    // writes the other), as a company back end would: 10,000 rows a request on SQLite; 2,000 on
    // PostgreSQL, where a row costs several round trips and its triggers and the two requests
    // take turns, so that a request stays well inside the store deadline on a busy machine.
    let rows_per_request = match engine {
        Store::Sqlite => 10_000,
        Store::Postgres => 2_000,
    };
    let per_app = accounts.div_ceil(seeded.apps.len());
    let started = Instant::now();
    let mut batches: Vec<Vec<Value>> = vec![Vec::with_capacity(rows_per_request)];
    let mut sent = 0usize;
    'outer: for (a, (issuer, _)) in seeded.apps.iter().enumerate() {
        for i in 0..per_app {
            if sent == accounts {
                break 'outer;
            }
            let batch = batches.last_mut().context("a batch")?;
            let mut row = json!({"first_name": "Bench", "last_name": format!("User {i}"),
                                 "domain": issuer, "phone": "+1 555 0100", "userAccountId": format!("user{i}")});
            if !args.without_people {
                row["email"] = json!(format!("u{i}.a{a}@bench.example"));
            }
            batch.push(row);
            sent += 1;
            if batch.len() == rows_per_request {
                batches.push(Vec::with_capacity(rows_per_request));
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
    // The baseline is loaded as the servers are: by as many wrk processes.
    let baseline_urls = vec![baseline.url.clone(); replicas];

    let mut rows = Vec::new();
    // Warm up both servers (Deadbolt's cache fills with the accounts the load asks about; the
    // first seconds would otherwise measure store reads, not the steady state). Not reported.
    // Until a warm-up run is no faster than the one before: on PostgreSQL each first load is a
    // network round trip or two, and 3 s filled only part of the cache (the measured run then
    // spent its first seconds loading the rest).
    // And until a warm-up run found every answer in the servers' caches (where they say, in
    // their metrics): on PostgreSQL just after the import, a run that still had thousands of
    // misses to make was the slowest of the table (p99 of a second, in the first round only).
    let misses = |before: &[HashMap<String, f64>], after: &[HashMap<String, f64>]| {
        let key = "deadbolt_cache_lookups_total{result=\"miss\"}";
        before
            .iter()
            .zip(after)
            .map(|(b, a)| a.get(key).unwrap_or(&0.0) - b.get(key).unwrap_or(&0.0))
            .sum::<f64>()
    };
    let mut counters = Server::scrape_all(&servers, &http).await;
    let mut warm = wrk(&urls, &script, 16, 3)?;
    let mut total_requests = warm.requests;
    for _ in 0..8 {
        let before = std::mem::replace(&mut counters, Server::scrape_all(&servers, &http).await);
        let missed = misses(&before, &counters);
        let again = wrk(&urls, &script, 16, 3)?;
        total_requests += again.requests;
        let settled = again.rps < warm.rps * 1.05 && missed == 0.0;
        warm = again;
        if settled {
            break;
        }
    }
    wrk(&baseline_urls, &script, 16, 1)?;
    let mut per_conn = Vec::new();
    let churns = list(&args.churn)?;
    for conns in list(&args.connections)? {
        let mut a = Vec::new();
        let mut b: Vec<Vec<Run>> = vec![Vec::new(); churns.len()];
        for round in 0..args.rounds {
            let cpu = baseline.cpu_secs();
            let mut ra = wrk(&baseline_urls, &script, conns, args.duration)?;
            ra.server_cpu_secs = baseline.cpu_secs() - cpu;
            eprintln!(
                "  c={conns} round {round}: baseline {:.0} req/s p99 {:.2} ms, {:.1} µs CPU a request",
                ra.rps, ra.p99_ms, ra.cpu_us_per_request()
            );
            a.push(ra);
            // Every other round runs the change rates in the opposite order: the store grows by
            // every attempt recorded, so a rate always run last would also be measured on the
            // larger store.
            let mut order: Vec<(usize, usize)> = churns.iter().copied().enumerate().collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for (c, rate) in order {
                let cpu: f64 = servers.iter().map(Server::cpu_secs).sum();
                let own = own_cpu_secs();
                let before = Server::scrape_all(&servers, &http).await;
                let changes = Churn::start(&http, &urls, &seeded.sdk, &quiet, rate);
                let mut rb = wrk(&urls, &script, conns, args.duration)?;
                let made = changes.stop().await?;
                let after = Server::scrape_all(&servers, &http).await;
                for (n, (before, after)) in before.iter().zip(&after).enumerate() {
                    eprintln!("    server {n}: {}", metric_changes(before, after));
                }
                rb.server_cpu_secs = servers.iter().map(Server::cpu_secs).sum::<f64>() - cpu;
                rb.changes_per_sec = made as f64 / args.duration as f64;
                let own = own_cpu_secs() - own;
                eprintln!("  c={conns} round {round}: deadbolt ({} on {replicas} servers) with {rate} changes/s ({made} made) {:.0} req/s p99 {:.2} ms, non-2xx {}, {:.1} µs CPU a request; this program {:.2} s CPU",
                    engine.name(), rb.rps, rb.p99_ms, rb.non_2xx, rb.cpu_us_per_request(), own);
                total_requests += rb.requests;
                b[c].push(rb);
            }
        }
        for (c, runs) in b.into_iter().enumerate() {
            per_conn.push((conns, churns[c], a.clone(), runs));
        }
    }
    let rss = servers.iter().filter_map(Server::peak_rss_kib).max();
    for s in servers {
        s.terminate()?;
    }
    baseline.terminate()?;
    // Graceful stop drained the attempt queue: every answered check is a row.
    let store = deadbolt_store::Store::open(&seeded.db_url).await?;
    let recorded = store.attempt_count().await?;
    drop(store);
    if seeded.pg.is_none() {
        // `deadbolt backup` of the store as the run left it (its accounts and every attempt).
        let to = seeded.dir.0.join("backup.db");
        let started = std::time::Instant::now();
        let out = Command::new(args.bin_dir.join("deadbolt"))
            .args(["--db", &seeded.db_url, "backup", "--to"])
            .arg(&to)
            .env("DEADBOLT_MASTER_KEY", &seeded.master_key)
            .output()?;
        if !out.status.success() {
            bail!("backup failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let took = started.elapsed();
        let bytes = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "backup of the store ({accounts} accounts, {recorded} attempts): {:.1} s, {:.0} MiB",
            took.as_secs_f64(),
            bytes as f64 / 1048576.0
        );
        let _ = std::fs::remove_file(&to);
    }
    if let Some((admin, name)) = &seeded.pg {
        pg_admin(admin, &format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    }
    // What a change costs the servers: their CPU time in runs with changes beyond what the
    // checks answered would have cost at the rate of the runs without (same connections).
    let quiet_cost: HashMap<usize, f64> = per_conn
        .iter()
        .filter(|(_, churn, _, _)| *churn == 0)
        .map(|(conns, _, _, b)| {
            let (cpu, reqs) = b.iter().fold((0.0, 0u64), |(c, r), run| {
                (c + run.server_cpu_secs, r + run.requests)
            });
            (*conns, cpu / reqs.max(1) as f64)
        })
        .collect();
    for (conns, churn, a, b) in per_conn {
        let per_change = quiet_cost
            .get(&conns)
            .filter(|_| churn > 0)
            .map(|per_check| {
                let (extra, made) = b.iter().fold((0.0, 0.0), |(e, m), run| {
                    (
                        e + run.server_cpu_secs - per_check * run.requests as f64,
                        m + run.changes_per_sec * args.duration as f64,
                    )
                });
                extra * 1e6 / made.max(1.0)
            });
        let mean = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
        let worst = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).fold(0.0, f64::max);
        let non_2xx: u64 = b.iter().map(|r| r.non_2xx + r.socket_errors).sum();
        rows.push(format!(
            "| {} | {replicas} | {accounts} | {conns} | {churn} ({:.0}) | {:.0} | {:.0} | **{:.2}** | {:.2} ms | {:.2} ms | {:.2} ms | {non_2xx} | {:.1} µs (baseline {:.1}){} | {} | {} |",
            engine.name(),
            mean(&b, |r| r.changes_per_sec),
            mean(&a, |r| r.rps),
            mean(&b, |r| r.rps),
            mean(&b, |r| r.rps) / mean(&a, |r| r.rps),
            mean(&b, |r| r.p50_ms),
            worst(&b, |r| r.p99_ms),
            worst(&a, |r| r.p99_ms),
            mean(&b, Run::cpu_us_per_request),
            mean(&a, Run::cpu_us_per_request),
            per_change.map_or(String::new(), |c| format!("; {c:.0} µs a change")),
            // wrk does not count requests still in flight when it stops; the server answered those too.
            if recorded as u64 >= total_requests { format!("{recorded} (all {total_requests} counted by wrk)") } else { format!("{recorded} of {total_requests}") },
            rss.map_or("?".into(), |k| format!("{} MiB", k / 1024)),
        ));
    }
    rows.push(format!(
        "| {} | {replicas} | {accounts} | import | | seeded in {seed_secs:.1} s | | | | | | | | | |",
        engine.name()
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
    /// Changes at `per_sec` a second, sent through each of `urls` in turn, each without waiting
    /// for the one before (up to 64 in flight: one change waits for its commit, and on
    /// PostgreSQL for every server to apply it, so one at a time would fall behind the rate).
    fn start(
        http: &reqwest::Client,
        urls: &[String],
        sdk: &str,
        targets: &[(String, String)],
        per_sec: usize,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (http, urls, sdk, targets) = (
            http.clone(),
            urls.to_vec(),
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
            let mut in_flight = tokio::task::JoinSet::new();
            let mut made = 0u64;
            for n in 0u64.. {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                while in_flight.len() >= 64 {
                    made += in_flight.join_next().await.context("a change")???;
                }
                while let Some(done) = in_flight.try_join_next() {
                    made += done??;
                }
                let (issuer, account) = &targets[rand::thread_rng().gen_range(0..targets.len())];
                // Lock, unlock for a while, lock, unlock: what people do all day.
                let (path, body) = match n % 4 {
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
                let url = format!("{}/nl3/api/v1/sdk/{path}", urls[n as usize % urls.len()]);
                let (http, sdk) = (http.clone(), sdk.clone());
                in_flight.spawn(async move {
                    let resp = http
                        .post(url)
                        .header("x-nl3-server-api-token", &sdk)
                        .json(&body)
                        .send()
                        .await?;
                    // A change the server could not commit in time (503) is not made: counted
                    // out, as its client would retry; anything else is a failure of the run.
                    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        eprintln!("  a change was refused with 503 (not counted as made)");
                        return Ok(0);
                    }
                    if !resp.status().is_success() {
                        bail!("sdk/{path} answered {}", resp.status());
                    }
                    Ok::<_, anyhow::Error>(1u64)
                });
            }
            // Changes sent before the stop count once answered.
            while let Some(done) = in_flight.join_next().await {
                made += done??;
            }
            Ok(made)
        });
        Self { stop, task }
    }

    /// Stops the changes; how many were made.
    async fn stop(self) -> Result<u64> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// What a server's counters say about a run: how its checks were answered (from the cache, or
/// reading the store), how late its runtime got to ready tasks, and on PostgreSQL its change
/// listener's state.
fn metric_changes(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> String {
    if after.is_empty() {
        return "no metrics".into();
    }
    let d = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
    let mut out = format!(
        "cache misses {:.0}, position reads {:.0}, log reads {:.0}, runtime lag {:.2} s, stalls {:.0}, attempts dropped {:.0}, blocked attempts alerted from the writer {:.0} and read back {:.0}",
        d("deadbolt_cache_lookups_total{result=\"miss\"}"),
        d("deadbolt_store_position_reads_total"),
        d("deadbolt_check_log_reads_total"),
        d("deadbolt_runtime_lag_seconds_total"),
        d("deadbolt_runtime_stalls_total"),
        d("deadbolt_attempts_dropped_total"),
        d("deadbolt_alert_attempts_read_total{from=\"writer\"}"),
        d("deadbolt_alert_attempts_read_total{from=\"store\"}"),
    );
    if let Some(up) = after.get("deadbolt_store_listener_up") {
        out.push_str(&format!(
            ", listener up {up:.0}, unconfirmed writes {:.0}, listener table reads {:.0}",
            d("deadbolt_store_writes_unconfirmed_total"),
            d("deadbolt_store_listener_table_reads_total"),
        ));
    }
    out
}

/// This program's CPU time so far (the changes it sends cost the machine too), seconds.
fn own_cpu_secs() -> f64 {
    proc_cpu_secs("self")
}

/// CPU time of process `pid` (`self` for this one) so far, user and system, seconds; 0 where
/// `/proc` cannot tell.
fn proc_cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces, and ends at the last ')'):
    // utime and stime are the 14th and 15th of the line, in clock ticks (100 a second on
    // Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// One wrk run per URL at once, the connections split between them, their figures summed
/// (latency percentiles: the median's mean weighted by requests, the worst p99).
fn wrk(urls: &[String], script: &Path, conns: usize, secs: u64) -> Result<Run> {
    let each = (conns / urls.len()).max(1);
    let threads = each.clamp(1, 2);
    let children = urls
        .iter()
        .map(|url| {
            Command::new("wrk")
                .args([
                    "-t",
                    &threads.to_string(),
                    "-c",
                    &each.to_string(),
                    "-d",
                    &format!("{secs}s"),
                    "--latency",
                    "-s",
                ])
                .arg(script)
                .arg(url)
                .stdout(Stdio::piped())
                .spawn()
                .context("wrk")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut runs = Vec::new();
    for (child, url) in children.into_iter().zip(urls) {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let run = parse_wrk(&text).with_context(|| format!("wrk output: {text}"))?;
        // With several servers the sum hides one that stalls while the other carries the load:
        // each one's figures are shown.
        if urls.len() > 1 {
            eprintln!(
                "    {url}: {:.0} checks/s, p50 {:.2} ms, p99 {:.2} ms",
                run.rps, run.p50_ms, run.p99_ms
            );
        }
        runs.push(run);
    }
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    Ok(Run {
        rps: runs.iter().map(|r| r.rps).sum(),
        p50_ms: runs
            .iter()
            .map(|r| r.p50_ms * r.requests as f64)
            .sum::<f64>()
            / requests.max(1) as f64,
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        requests,
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
        socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
        changes_per_sec: 0.0,
        server_cpu_secs: 0.0,
    })
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

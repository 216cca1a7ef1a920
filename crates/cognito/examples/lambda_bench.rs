//! Benchmark (not a test): the Rust `bootstrap` against the vendor's Python sample, each run as
//! a Lambda function under the same Runtime API emulator, against the same Deadbolt server.
//!
//! Run it through `bench/lambda/run.sh`, which builds the release binaries and the Python
//! environment. Measures cold start (process start to the first answered invocation), warm
//! invocation latency (p50/p99), and peak resident memory (VmHWM).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: stop at the first failure

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::events::{pre_authentication, CLIENT_ID};
use support::function::{lambda_environment, Function};
use support::runtime_api::{Answer, RuntimeApi};
use support::server::{Server, ISSUER};

const LOCKED_MESSAGE: &str = "This account is locked.";
const API_PATH: &str = "/nl3/api/v1/accountProtectionCheck";

/// How to start one of the two functions.
struct Contender {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: Option<PathBuf>,
    env: BTreeMap<String, String>,
}

impl Contender {
    fn start(&self, api: &RuntimeApi) -> Function {
        let mut env = lambda_environment(&api.address());
        env.extend(self.env.clone());
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Function::start(&self.program, &args, self.dir.as_deref(), &env)
    }
}

#[derive(Default)]
struct Figures {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    peak_rss_kib: u64,
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

const WAIT: Duration = Duration::from_secs(30);

/// One cold start: the invocation is waiting before the process starts, as in Lambda.
async fn cold_start_ms(c: &Contender, event: &[u8]) -> f64 {
    let api = RuntimeApi::start().await;
    let submitted = api.submit(event, Duration::from_secs(5));
    let function = c.start(&api);
    let answered = api
        .answer(submitted, WAIT)
        .await
        .unwrap_or_else(|| panic!("{}: no answer; output:\n{}", c.name, function.output()));
    assert!(
        matches!(answered.answer, Answer::Response(_)),
        "{}: {:?}",
        c.name,
        answered.answer
    );
    (answered.answered - function.started).as_secs_f64() * 1e3
}

/// A warm instance, checked to give the right answers before it is measured.
async fn warm_instance(c: &Contender, event: &[u8], locked: &[u8]) -> (RuntimeApi, Function) {
    let api = RuntimeApi::start().await;
    let function = c.start(&api);
    let first = api.invoke_raw(locked, Duration::from_secs(5), WAIT).await;
    match first.map(|a| a.answer) {
        Some(Answer::Error { message, .. }) if message == LOCKED_MESSAGE => {}
        other => panic!(
            "{}: a locked account must be refused, got {other:?}; output:\n{}",
            c.name,
            function.output()
        ),
    }
    for _ in 0..20 {
        let answered = api.invoke_raw(event, Duration::from_secs(5), WAIT).await;
        assert!(matches!(
            answered.map(|a| a.answer),
            Some(Answer::Response(_))
        ));
    }
    (api, function)
}

/// `n` invocations on a warm instance: each from queued to answered, in ms.
async fn warm_block(api: &RuntimeApi, event: &[u8], n: usize, into: &mut Vec<f64>) {
    for _ in 0..n {
        let submitted = api.submit(event, Duration::from_secs(5));
        let queued = submitted.queued;
        let answered = api.answer(submitted, WAIT).await.expect("an answer");
        assert!(matches!(answered.answer, Answer::Response(_)));
        into.push((answered.answered - queued).as_secs_f64() * 1e3);
    }
}

/// Measures both contenders in alternation, so that load from elsewhere on the machine falls
/// on both alike.
async fn measure(contenders: [&Contender; 2], cold_runs: usize, warm: usize) -> [Figures; 2] {
    let event = serde_json::to_vec(&pre_authentication("alice")).unwrap();
    let locked = serde_json::to_vec(&pre_authentication("mallory")).unwrap();
    let mut figures = [Figures::default(), Figures::default()];

    for _ in 0..cold_runs {
        for (c, f) in contenders.iter().zip(figures.iter_mut()) {
            f.cold_ms.push(cold_start_ms(c, &event).await);
        }
    }

    let mut instances = Vec::new();
    for c in contenders {
        instances.push(warm_instance(c, &event, &locked).await);
    }
    let block = 100.min(warm.max(1));
    let mut done = 0;
    while done < warm {
        let n = block.min(warm - done);
        for ((api, _), f) in instances.iter().zip(figures.iter_mut()) {
            warm_block(api, &event, n, &mut f.warm_ms).await;
        }
        done += n;
    }
    for ((_, function), f) in instances.iter().zip(figures.iter_mut()) {
        f.peak_rss_kib = function.peak_rss_kib().unwrap_or(0);
        f.warm_ms.sort_by(f64::total_cmp);
    }
    figures
}

#[tokio::main]
async fn main() {
    let cold_runs = arg("--cold", 10);
    let warm = arg("--warm", 1000);
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bootstrap = std::env::var_os("DEADBOLT_BOOTSTRAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("bootstrap")
        });
    let python = std::env::var_os("DEADBOLT_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../../bench/lambda/.venv/bin/python"));
    let python_dir = here.join("../../bench/lambda/python");

    let server = Server::start().await;
    server.enrol("alice", false).await;
    server.enrol("mallory", true).await;

    let common: BTreeMap<String, String> = [
        ("SIGNING_KEY", server.signing_key.as_str()),
        ("CLIENT_ID", CLIENT_ID),
        ("API_URI", server.api_uri.as_str()),
        ("API_PATH", API_PATH),
        ("LOCKED_MESSAGE", LOCKED_MESSAGE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut rust_env = common.clone();
    rust_env.insert("APP_FQDN".into(), ISSUER.into());
    let mut python_env = common;
    python_env.insert("APP_URI".into(), ISSUER.into());
    python_env.insert("LAMBDA_TASK_ROOT".into(), python_dir.display().to_string());
    python_env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());

    let rust = Contender {
        name: "Rust bootstrap",
        program: bootstrap,
        args: vec![],
        dir: None,
        env: rust_env,
    };
    let py = Contender {
        name: "Python sample",
        program: python,
        args: vec![
            "-m".into(),
            "awslambdaric".into(),
            "lambda_function.lambda_handler".into(),
        ],
        dir: Some(python_dir),
        env: python_env,
    };

    eprintln!(
        "measuring {} and {} in turn: {cold_runs} cold starts, {warm} warm invocations each",
        rust.name, py.name
    );
    let [r, p] = measure([&rust, &py], cold_runs, warm).await;

    let rows = [
        (
            "cold start, median (ms)",
            median(&r.cold_ms),
            median(&p.cold_ms),
            "≥ 10×",
            10.0,
        ),
        (
            "warm invocation p50 (ms)",
            percentile(&r.warm_ms, 0.5),
            percentile(&p.warm_ms, 0.5),
            "≥ 3×",
            3.0,
        ),
        (
            "warm invocation p99 (ms)",
            percentile(&r.warm_ms, 0.99),
            percentile(&p.warm_ms, 0.99),
            "",
            0.0,
        ),
        (
            "peak memory, VmHWM (MiB)",
            r.peak_rss_kib as f64 / 1024.0,
            p.peak_rss_kib as f64 / 1024.0,
            "≥ 3× (≤ 1/3)",
            3.0,
        ),
    ];
    println!("| measure | Rust bootstrap | Python sample | Python ÷ Rust | target | met |");
    println!("|---|---:|---:|---:|---|---|");
    for (name, rust, python, target, needed) in rows {
        let ratio = python / rust;
        let met = if needed == 0.0 {
            "".to_string()
        } else if ratio >= needed {
            "yes".to_string()
        } else {
            "NO".to_string()
        };
        println!("| {name} | {rust:.2} | {python:.2} | {ratio:.1}× | {target} | {met} |");
    }
    println!(
        "\n{cold_runs} cold starts and {warm} warm invocations each (after 20 warm-up), taken \
         in turn, against the same Deadbolt server (SQLite) through the same Runtime API \
         emulator on loopback."
    );
}

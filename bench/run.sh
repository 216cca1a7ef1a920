#!/usr/bin/env bash
# Deadbolt's benchmarks, side by side in one run:
#   1. the check path of `deadbolt serve` against a do-nothing axum endpoint, with wrk, A B A B,
#      after seeding the store through importUsers: on SQLite by default; with
#      `--engine sqlite,postgres --pg-url URL` (or DEADBOLT_BENCH_PG) also on a fresh PostgreSQL
#      database, and with `--replicas 1,2` on two servers sharing the store, the load split;
#   2. the Cognito trigger against the vendor's Python sample (bench/lambda/run.sh).
# Usage: bench/run.sh [deadbolt-bench options, e.g. --accounts 10000,100000,1000000 --connections 16,64]
# Needs wrk (Debian: apt-get install wrk) and, for the second part, python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/run.sh: wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p deadbolt -p deadbolt-bench
target="${CARGO_TARGET_DIR:-target}"
"$target/release/deadbolt-bench" --bin-dir "$target/release" "$@"
if [ "${DEADBOLT_BENCH_SKIP_LAMBDA:-0}" != 1 ]; then
  bench/lambda/run.sh
fi

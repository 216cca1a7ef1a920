#!/usr/bin/env bash
# Benchmarks the Rust Cognito trigger against the vendor's Python sample, both as Lambda
# functions under the same Runtime API emulator and against the same Deadbolt server.
# Usage: bench/lambda/run.sh [--cold N] [--warm N]
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=bench/lambda/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r bench/lambda/python/requirements.txt

cargo build --release -p deadbolt-cognito --bin bootstrap --example lambda_bench
target="${CARGO_TARGET_DIR:-target}"
DEADBOLT_BENCH_PYTHON="$PWD/$venv/bin/python" "$target/release/examples/lambda_bench" "$@"

#!/usr/bin/env bash
# Soak test (not in CI): a release `deadbolt serve` on a fresh SQLite store under mixed load for
# a given time: checks of seeded accounts (every answer verified against the changes made),
# SDK lock/unlock, and importUsers requests of new accounts one after another. Prints the
# server's RSS and the counts over time, then the errors (there must be none).
# Usage: bench/soak.sh [SECONDS=600] [soak.py options, e.g. --checkers 4 --import-rows 20000]
# Needs curl, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
target="${CARGO_TARGET_DIR:-target}"
bin="${DEADBOLT_BIN:-$target/release/deadbolt}"
[ -x "$bin" ] || cargo build --release -p deadbolt
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
db="sqlite://$dir/soak.db"
export DEADBOLT_MASTER_KEY_FILE="$dir/key"
issuer=soak.example.com
accounts=10000
company=$("$bin" --db "$db" company create --name Soak 2>/dev/null | jq -r .id)
app=$("$bin" --db "$db" app create --company "$company" --issuer "$issuer" 2>/dev/null | jq -r .id)
key=$("$bin" --db "$db" key create --app "$app" | jq -r .secret)
sdk=$("$bin" --db "$db" sdk-key create --company "$company" | jq -r .secret)
"$bin" --db "$db" serve --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/out" ] && break; sleep 0.1; done
port=$(head -1 "$dir/out" | jq -r .listening | sed 's/.*://')
python3 -c "import json; print(json.dumps([{'domain': '$issuer', 'userAccountId': 'acct%d' % i} for i in range($accounts)]))" \
  | curl -sf -o /dev/null -H "x-nl3-server-api-token: $sdk" --data-binary @- \
    "http://127.0.0.1:$port/nl3/api/v1/sdk/importUsers"
echo "deadbolt $(git rev-parse --short HEAD) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); $accounts seeded accounts; ${seconds} s"
status=0
python3 bench/soak.py --host 127.0.0.1 --port "$port" --pid "$pid" --key "$key" --sdk "$sdk" \
  --issuer "$issuer" --accounts "$accounts" --seconds "$seconds" "$@" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "the server died:"; tail -20 "$dir/log"; exit 1
fi
echo "server log: $(grep -c ' ERROR ' "$dir/log" || true) error lines, $(grep -c ' WARN ' "$dir/log" || true) warnings"
exit "$status"

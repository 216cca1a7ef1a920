#!/usr/bin/env bash
# The memory of `deadbolt serve` (SQLite, release build) around large imports: RSS at rest, at
# its peak while N concurrent importUsers requests of R rows each run, right after them, and
# after 10 s and 30 s of rest.
# Usage: bench/import-memory.sh [N=4] [R=100000]     (needs curl, jq, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
imports=${1:-4}
rows=${2:-100000}
target="${CARGO_TARGET_DIR:-target}"
bin="${DEADBOLT_BIN:-$target/release/deadbolt}"
[ -x "$bin" ] || cargo build --release -p deadbolt
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
db="sqlite://$dir/d.db"
export DEADBOLT_MASTER_KEY_FILE="$dir/key"
company=$("$bin" --db "$db" company create --name Memory 2>/dev/null | jq -r .id)
"$bin" --db "$db" app create --company "$company" --issuer memory.example.com >/dev/null 2>&1
sdk=$("$bin" --db "$db" sdk-key create --company "$company" 2>/dev/null | jq -r .secret)
for i in $(seq 1 "$imports"); do
  python3 - "$i" "$rows" >"$dir/import-$i.json" <<'EOF'
import json, sys
i, n = int(sys.argv[1]), int(sys.argv[2])
json.dump([{"first_name": "First%d" % j, "last_name": "Last%d" % j,
            "email": "user%d.%d@example.com" % (i, j), "domain": "memory.example.com",
            "phone": "+3361234%04d" % (j % 10000), "userAccountId": "user%d.%d" % (i, j)}
           for j in range(n)], sys.stdout)
EOF
done
"$bin" --db "$db" serve --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/out" ] && break; sleep 0.1; done
url=$(head -1 "$dir/out" | jq -r .url)
rss() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
peak() { awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
# A few requests first, so that "at rest" is a server that has served.
curl -s -o /dev/null "$url/healthz"
echo "rss at rest:          $(rss) MB"
start=$(date +%s.%N)
for i in $(seq 1 "$imports"); do
  curl -s -o /dev/null -w "import $i: %{http_code} in %{time_total}s\n" \
    -H "x-nl3-server-api-token: $sdk" --data-binary "@$dir/import-$i.json" \
    "$url/nl3/api/v1/sdk/importUsers" &
done
wait $(jobs -p | grep -v "^$pid$")
end=$(date +%s.%N)
echo "$imports x $rows rows in $(awk "BEGIN {printf \"%.1f\", $end - $start}") s"
echo "rss peak:             $(peak) MB"
echo "rss after imports:    $(rss) MB"
sleep 10
echo "rss after 10 s idle:  $(rss) MB"
sleep 20
echo "rss after 30 s idle:  $(rss) MB"

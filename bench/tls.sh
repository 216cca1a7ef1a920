#!/usr/bin/env bash
# What TLS costs on the public port: /healthz over plain HTTP/1.1 and over HTTPS (TLS 1.3,
# ECDSA P-256), on kept-alive connections and with a new connection per request, with wrk; and
# full TLS handshakes with `openssl s_time -new`. Needs a release build, wrk and openssl.
#   cargo build --release -p deadbolt && bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/deadbolt}
D=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$D"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$D/key.pem" \
  -out "$D/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null

run() { # name port scheme [serve flags…]
  local name=$1 port=$2 scheme=$3 url="$3://127.0.0.1:$2/healthz"
  shift 3
  "$BIN" --db "sqlite://$D/$name.db" serve --listen "127.0.0.1:$port" --rate-limit 0 "$@" \
    >/dev/null 2>&1 &
  pid=$!
  sleep 2
  wrk -t1 -c16 -d2s "$url" >/dev/null # warm-up, not reported
  echo "== $name, kept-alive"
  wrk -t1 -c16 -d8s --latency "$url" | grep -E "^Requests/sec|50%|99%"
  echo "== $name, a new connection per request"
  wrk -t1 -c16 -d8s --latency -H "Connection: close" "$url" | grep -E "^Requests/sec|50%|99%"
  if [ "$scheme" = https ]; then
    echo "== full TLS handshakes (openssl s_time -new, one client)"
    openssl s_time -connect "127.0.0.1:$port" -new -time 8 2>/dev/null | grep "real seconds"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

run plain 18080 http
run tls 18443 https --tls-cert "$D/cert.pem" --tls-key "$D/key.pem"

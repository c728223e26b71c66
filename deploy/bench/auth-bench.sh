#!/usr/bin/env bash
# CPU per request of a JWT-protected route against an open route, in the same run (issue #5:
# within 1.1x thanks to the verified-token cache). Same pinning as deploy/bench/run.sh:
# gateway alone on core 0, load generator and origin (nginx answering 200 on every path) on core 1.
# Loopback only.
#
#   cargo build --release -p penghubung && deploy/bench/auth-bench.sh
#
# Knobs: DURATION (s per measurement, 8), ROUNDS (alternating rounds, 3), CONNS (64),
# EVIDENCE=1 to run both routes with durable evidence on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${BENCH_WORK:-/tmp/penghubung-auth-bench}
bin=${PENGHUBUNG_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/penghubung}
DURATION=${DURATION:-8}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-64}; EVIDENCE=${EVIDENCE:-0}
listen=127.0.0.1:18186; admin=127.0.0.1:19186; origin=127.0.0.1:18086
mkdir -p "$work"
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x "$bin" ] || { echo "no gateway binary at $bin (cargo build --release -p penghubung)"; exit 1; }
rm -rf "$work/origin"; mkdir -p "$work/origin"
cat >"$work/origin/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/origin/tmp-body;
    proxy_temp_path $work/origin/tmp-proxy;
    fastcgi_temp_path $work/origin/tmp-fastcgi;
    uwsgi_temp_path $work/origin/tmp-uwsgi;
    scgi_temp_path $work/origin/tmp-scgi;
    keepalive_requests 1000000;
    server { listen $origin; location / { return 200 ""; } }
}
NGINX

secret=bench-secret-$$
hash=$(printf '%s\n' "$secret" | "$bin" secret client-secret)
evidence_table='enabled = false'
[ "$EVIDENCE" = 1 ] && evidence_table="dir = \"$work/evidence\""
rm -rf "$work/evidence"
cat >"$work/gateway.toml" <<TOML
node_id = "auth-bench"
[runtime]
threads = 1
[[listener]]
name = "bench"
address = "$listen"
[admin]
address = "$admin"
[evidence]
$evidence_table
[auth.token_endpoint]
enabled = true
lifetime_secs = 3600
[[upstream]]
name = "origin"
targets = ["$origin"]
retries = 0
pool_max_idle = 1024
[[service]]
id = "open"
hosts = ["*"]
upstream = "origin"
[service.auth]
anonymous = true
[[service.route]]
path = "/open/*"
[[service]]
id = "protected"
hosts = ["*"]
upstream = "origin"
[service.auth]
credentials = ["gateway_token"]
[[service.route]]
path = "/protected/*"
[[opd]]
id = "bench"
name = "Bench OPD"
[[application]]
id = "bench-app"
opd = "bench"
name = "Bench"
[application.credentials]
client_id = "bench-client"
client_secret_hash = "$hash"
[[grant]]
id = "bench-grant"
application = "bench-app"
service = "protected"
tujuan = "Pengukuran kinerja"
cakupan = [{ methods = ["GET"], paths = ["/protected/*"] }]
consent = { by = "bench", at = "2026-01-01T00:00:00Z" }
TOML

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c 1 nginx -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" >"$work/origin.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://$origin/" && break; sleep 0.1; done
taskset -c 0 "$bin" run -c "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gw=$!; pids+=($gw)
for _ in $(seq 100); do curl -sf "http://$admin/ready" >/dev/null && break; sleep 0.1; done
token=$(curl -sf -u "bench-client:$secret" -d grant_type=client_credentials "http://$listen/oauth2/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://$listen/protected/x" || { echo "protected route refused the token"; exit 1; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$gw/stat"; }
measure() { # name, extra wrk args... -> prints "name cpu_us_per_request requests_per_s"
  local name=$1; shift
  local before after out
  before=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" 2>&1)
  after=$(cpu_ticks)
  python3 - "$name" "$before" "$after" "$out" <<'PY'
import re, sys, os
name, before, after, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
hz = os.sysconf("SC_CLK_TCK")
print(f"{name} {(after - before) / hz * 1e6 / reqs:.2f} {rps:.0f} {non2xx.group(1) if non2xx else 0}")
PY
}
echo "route cpu_us_per_request requests_per_s non_2xx" | tee "$work/results.txt"
for _ in $(seq "$ROUNDS"); do
  measure open "http://$listen/open/x" | tee -a "$work/results.txt"
  measure jwt -H "Authorization: Bearer $token" "http://$listen/protected/x" | tee -a "$work/results.txt"
done
python3 - "$work/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
med = {n: statistics.median(float(r[1]) for r in rows if r[0] == n) for n in ("open", "jwt")}
print(f"median CPU per request: open {med['open']:.2f} us, jwt {med['jwt']:.2f} us, ratio {med['jwt'] / med['open']:.3f}")
PY

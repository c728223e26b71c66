#!/usr/bin/env bash
# Penghubung beside nginx, from a clone: CPU time per request of the proxy process and its peak
# RSS, for the same fast origin, the same load and the same pinning. See deploy/bench/README.md.
#
#   deploy/bench/run.sh                         # 5 rows x 3 runs x 8 s per target: ~6 min + build
#   deploy/bench/run.sh --runs 5 --duration 10 --rows h1-0,h1-0-evidence
#   deploy/bench/run.sh --smoke                 # a few seconds per row, one run, debug build (CI)
#
# Layout on a 2-core machine: the proxy under test (nginx with one worker, or the gateway with one
# runtime thread) alone on core 0; the load generator (wrk, h2load) and the origin (nginx serving
# fixed bodies) on core 1. Everything listens on 127.0.0.1, on free ports picked at start. Scratch
# files live in a mktemp folder removed on exit; every process started here is stopped by PID on
# exit (TERM, then KILL of what is left of its process tree).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

runs=3
duration=8
warmup=2
rows_arg=""
smoke=0
bin=""
conns=64
h2_conns=16
h2_streams=8
all_rows=(h1-0 h1-16k h2c-0 h2c-16k h1-0-evidence)

usage() {
  cat <<EOF
usage: deploy/bench/run.sh [--runs N] [--duration S] [--rows LIST] [--smoke] [--bin PATH]

  --runs N        measurements per row and proxy, alternating nginx and gateway (default 3)
  --duration S    seconds of measured load per measurement (default 8; 2 s of warm-up come first)
  --rows LIST     comma-separated subset of: ${all_rows[*]} (default: all)
  --smoke         3 s of load per row, one run, the debug build, no thresholds: checks that the
                  runner works (fails only when a proxy does not start or no request succeeds)
  --bin PATH      gateway binary to measure instead of building target/release/penghubung
EOF
}

die() { echo "bench: $*" >&2; exit 1; }
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
positive_int() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
  case $1 in
    --runs) [ $# -ge 2 ] || die "--runs needs a value"; positive_int --runs "$2"; runs=$2; shift 2 ;;
    --duration) [ $# -ge 2 ] || die "--duration needs a value"; positive_int --duration "$2"; duration=$2; shift 2 ;;
    --rows) [ $# -ge 2 ] || die "--rows needs a value"; rows_arg=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a value"; bin=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
if [ "$smoke" = 1 ]; then
  runs=1
  duration=3
  warmup=1
fi
rows=()
if [ -n "$rows_arg" ]; then
  IFS=',' read -ra rows <<<"$rows_arg"
  for r in "${rows[@]}"; do
    [[ " ${all_rows[*]} " == *" $r "* ]] || die "unknown row '$r' (rows: ${all_rows[*]})"
  done
else
  rows=("${all_rows[@]}")
fi

# ------------------------------------------------------------------ tools
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  # The Debian package may start a system nginx on port 80; it is not ours and is left alone.
fi

ncpu=$(nproc)
proxy_cpu=0
load_cpu=1
if [ "$ncpu" -lt 2 ]; then
  log "only $ncpu CPU: proxy and load share core 0, the figures mean little"
  load_cpu=0
fi
hz=$(getconf CLK_TCK)

# ------------------------------------------------------------------ the gateway binary
if [ -z "$bin" ]; then
  target_dir=${CARGO_TARGET_DIR:-$repo/target}
  if [ "$smoke" = 1 ]; then
    # The debug binary CI has just built (tests/run.sh), as it is; built only when absent.
    bin=$target_dir/debug/penghubung
    if [ ! -x "$bin" ]; then
      log "building the gateway (debug)"
      (cd "$repo" && cargo build --quiet --locked -p penghubung)
    fi
  else
    log "building the gateway (release)"
    (cd "$repo" && cargo build --quiet --release --locked -p penghubung)
    bin=$target_dir/release/penghubung
  fi
fi
[ -x "$bin" ] || die "no gateway binary at $bin"

# ------------------------------------------------------------------ scratch and process handling
work=$(mktemp -d "${TMPDIR:-/tmp}/penghubung-bench.XXXXXX")
# nginx workers drop to an unprivileged user when started as root: they must read the origin's files.
chmod 755 "$work"
pids=()

descendants() { # pid -> the pid and every descendant, found by parent pid in /proc (never by name)
  local all=("$1") i=0 f rest ppid pid
  local -A parent=()
  for f in /proc/[0-9]*/stat; do
    { read -r rest <"$f"; } 2>/dev/null || continue # the process may have gone meanwhile
    pid=${f#/proc/}; pid=${pid%/stat}
    rest=${rest##*) }
    read -r _ ppid _ <<<"$rest"
    parent[$pid]=$ppid
  done
  while [ $i -lt ${#all[@]} ]; do
    for pid in "${!parent[@]}"; do
      [ "${parent[$pid]}" = "${all[$i]}" ] && all+=("$pid")
    done
    i=$((i + 1))
  done
  echo "${all[@]}"
}

stop_pid() { # pid: TERM, up to 5 s to exit, then KILL what is left of its tree
  local pid=$1 tree p
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  tree=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # drop a stopped pid from the cleanup list
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

used_ports=" "
# Below the kernel's ephemeral range, so that no outgoing connection (of this run's load
# generators or anything else on the machine) holds the port as its local end.
port_lo=10000
port_hi=$(( $(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768) - 1 ))
[ "$port_hi" -gt $((port_lo + 1000)) ] || { port_lo=20000; port_hi=60000; }
free_port() { # a loopback port nothing accepts on and this run has not handed out
  local p
  for _ in $(seq 200); do
    p=$((port_lo + (RANDOM * 32768 + RANDOM) % (port_hi - port_lo + 1)))
    [[ $used_ports == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free loopback port found"
}

http_status() { # url [curl args...]
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 2 "$@" "$url" || true
}

wait_ready() { # pid addr [h2c addr] -> 0 once GET /bytes/0 answers 200 (15 s at most)
  local pid=$1 addr=$2 h2=${3:-}
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ $(http_status "http://$addr/bytes/0") == "200 0" ]]; then
      [ -z "$h2" ] && return 0
      [[ $(http_status "http://$h2/bytes/0" --http2-prior-knowledge) == "200 0" ]] && return 0
    fi
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ the origin: nginx, fixed bodies
mkdir -p "$work/www/bytes" "$work/origin"
: >"$work/www/bytes/0"
head -c 16384 /dev/zero | tr '\0' x >"$work/www/bytes/16384"
chmod -R a+rX "$work/www"

nginx_temp_paths() { # dir
  cat <<EOF
    client_body_temp_path $1/tmp-body;
    proxy_temp_path       $1/tmp-proxy;
    fastcgi_temp_path     $1/tmp-fastcgi;
    uwsgi_temp_path       $1/tmp-uwsgi;
    scgi_temp_path        $1/tmp-scgi;
EOF
}

start_origin() { # -> origin, origin_pid
  origin=127.0.0.1:$(free_port)
  cat >"$work/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$work/origin")
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    default_type application/octet-stream;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    sendfile on;
    server {
        listen $origin;
        root $work/www;
        location = /bytes/0 { return 200 ""; }
        location /bytes/ { }
    }
}
EOF
  taskset -c "$load_cpu" nginx -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" \
    >"$work/origin/stderr.log" 2>&1 &
  origin_pid=$!
  pids+=("$origin_pid")
}
for attempt in 1 2 3; do
  start_origin
  if wait_ready "$origin_pid" "$origin" && [[ $(http_status "http://$origin/bytes/16384") == "200 16384" ]]; then
    break
  fi
  # A port taken between the check and the bind is worth another try; anything else is not.
  if ! kill -0 "$origin_pid" 2>/dev/null && grep -qi 'in use' "$work/origin/error.log" 2>/dev/null &&
    [ "$attempt" -lt 3 ]; then
    stop_pid "$origin_pid"; forget_pid "$origin_pid"
    continue
  fi
  cat "$work/origin/stderr.log" "$work/origin/error.log" >&2 2>/dev/null || true
  die "the origin (nginx on $origin) did not start"
done

# ------------------------------------------------------------------ the proxies under test
proxy_pid=""
proxy_h1=""
proxy_h2=""
proxy_log=""

start_nginx() { # dir
  local dir=$1 p1 p2
  p1=$(free_port)
  p2=$(free_port)
  proxy_h1=127.0.0.1:$p1
  proxy_h2=127.0.0.1:$p2
  proxy_log=$dir/stderr.log
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$dir")
    # nginx closes a client connection after 1000 requests by default; the gateway does not.
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream origin {
        server $origin;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen $proxy_h1;
        listen $proxy_h2 http2;   # cleartext HTTP/2, prior knowledge (h2c)
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  taskset -c "$proxy_cpu" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$proxy_log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
}

start_gateway() { # dir template
  local dir=$1 tmpl=$2 p1
  p1=$(free_port)
  proxy_h1=127.0.0.1:$p1
  proxy_h2=$proxy_h1 # HTTP/1.1 and h2c prior knowledge on one listener
  proxy_log=$dir/stderr.log
  sed -e "s#@LISTEN@#$proxy_h1#g; s#@UPSTREAM@#$origin#g; s#@THREADS@#1#g; s#@RUN_DIR@#$dir#g" \
    "$tmpl" >"$dir/gateway.toml"
  taskset -c "$proxy_cpu" "$bin" run -c "$dir/gateway.toml" >"$proxy_log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
}

start_proxy() { # target row dir -> proxy_pid, proxy_h1, proxy_h2 (dies when the proxy does not come up)
  local target=$1 row=$2 dir=$3 tmpl=$here/gateway.toml.tmpl h2="" attempt
  [ "$row" = h1-0-evidence ] && tmpl=$here/gateway-evidence.toml.tmpl
  for attempt in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    case $target in
      nginx) start_nginx "$dir" ;;
      gateway) start_gateway "$dir" "$tmpl" ;;
    esac
    h2=""
    [[ $row == h2c-* ]] && h2=$proxy_h2
    if wait_ready "$proxy_pid" "$proxy_h1" "$h2" &&
      [[ $(http_status "http://$proxy_h1/bytes/16384") == "200 16384" ]]; then
      return 0
    fi
    # A port taken between the check and the bind is worth another try; anything else is not.
    if ! kill -0 "$proxy_pid" 2>/dev/null && grep -qi 'in use' "$proxy_log" "$dir/error.log" 2>/dev/null &&
      [ "$attempt" -lt 3 ]; then
      stop_pid "$proxy_pid"; forget_pid "$proxy_pid"
      continue
    fi
    echo "--- $target log ($proxy_log):" >&2
    tail -n 30 "$proxy_log" >&2 2>/dev/null || true
    [ -f "$dir/error.log" ] && tail -n 30 "$dir/error.log" >&2
    die "$target did not answer GET /bytes/0 and /bytes/16384 through $proxy_h1${h2:+ (h2c)} within 15 s"
  done
}

# ------------------------------------------------------------------ measurement
tree_cpu_ticks() { # pid -> utime+stime of the process and its descendants (all threads), in ticks
  local total=0 p rest
  for p in $(descendants "$1"); do
    { read -r rest <"/proc/$p/stat"; } 2>/dev/null || continue
    rest=${rest##*) }
    # after "pid (comm) ": field 3 is the state; utime and stime are fields 14 and 15.
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

tree_hwm_kib() { # pid -> sum of VmHWM (peak RSS) over the process tree, in KiB
  local total=0 p v
  for p in $(descendants "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

softirqd_ticks() { # cpu -> CPU ticks of that core's ksoftirqd kernel thread (0 when not found)
  local f rest
  for f in /proc/[0-9]*/stat; do
    { read -r rest <"$f"; } 2>/dev/null || continue
    if [[ $rest == *"(ksoftirqd/$1) "* ]]; then
      rest=${rest##*) }
      set -- $rest
      echo $((${12} + ${13}))
      return 0
    fi
  done
  echo 0
}

core_ticks() { # cpu -> "busy total" ticks of that core from /proc/stat
  # busy = user + nice + system + steal, less the core's ksoftirqd thread; irq and softirq are
  # left out too: on loopback most of them is the proxy's own traffic, which the kernel does not
  # charge to the process.
  local softirqd
  softirqd=$(softirqd_ticks "$1")
  awk -v c="cpu$1" -v k="$softirqd" '$1 == c {
    busy = $2 + $3 + $4 + $9; print busy - k, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

results=$work/results.tsv
: >"$results"

measure() { # row run target -> one line in $results
  local row=$1 run=$2 target=$3 dir=$work/run/$1.$2.$3 size path url out
  local before after c0 c1 ok=0 errors=0 secs rss
  case $row in h1-0 | h2c-0 | h1-0-evidence) size=0 ;; *) size=16384 ;; esac
  path=/bytes/$size
  start_proxy "$target" "$row" "$dir"
  timeout $((warmup + 20)) taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${warmup}s" \
    "http://$proxy_h1$path" >/dev/null 2>&1 || true
  before=$(tree_cpu_ticks "$proxy_pid")
  c0=$(core_ticks "$proxy_cpu")
  case $row in
    h2c-*)
      url=http://$proxy_h2$path
      out=$(timeout $((duration + 30)) taskset -c "$load_cpu" h2load -t1 -c"$h2_conns" -m"$h2_streams" \
        -D "$duration" "$url" 2>&1 || true)
      ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
      secs=$(sed -n 's/^finished in \([0-9.]*\)s.*/\1/p' <<<"$out")
      # failed + errored + timeout streams, and 3xx/4xx/5xx answers
      errors=$(sed -n -e 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' \
        -e 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 \2 \3/p' <<<"$out" |
        awk '{ for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }')
      ;;
    *)
      url=http://$proxy_h1$path
      out=$(timeout $((duration + 30)) taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${duration}s" \
        "$url" 2>&1 || true)
      local total non2xx sock
      total=$(sed -n 's/^ *\([0-9]*\) requests in \([0-9.]*\)s.*/\1/p' <<<"$out")
      secs=$(sed -n 's/^ *[0-9]* requests in \([0-9.]*\)s.*/\1/p' <<<"$out")
      non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' <<<"$out")
      sock=$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' <<<"$out")
      ok=$(( ${total:-0} - ${non2xx:-0} ))
      errors=${non2xx:-0}
      for n in $sock; do errors=$((errors + n)); done
      ;;
  esac
  after=$(tree_cpu_ticks "$proxy_pid")
  c1=$(core_ticks "$proxy_cpu")
  rss=$(tree_hwm_kib "$proxy_pid")
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    tail -n 30 "$proxy_log" >&2 || true
    die "$target exited during the $row measurement"
  fi
  stop_pid "$proxy_pid"
  forget_pid "$proxy_pid"
  rm -rf "$dir" # the evidence log of the row can be large
  ok=${ok:-0}
  if [ "$ok" -le 0 ]; then
    echo "--- load generator output:" >&2
    echo "$out" >&2
    die "no request succeeded through $target on row $row (run $run)"
  fi
  # CPU per request of the proxy; 'other' = the share of the proxy core used by anything else.
  awk -v row="$row" -v run="$run" -v t="$target" -v ok="$ok" -v err="$errors" -v secs="${secs:-$duration}" \
    -v b="$before" -v a="$after" -v hz="$hz" -v rss="$rss" -v c0="$c0" -v c1="$c1" 'BEGIN {
      split(c0, x, " "); split(c1, y, " ")
      dt = y[2] - x[2]; other = dt > 0 ? 100 * ((y[1] - x[1]) - (a - b)) / dt : 0
      if (other < 0) other = 0
      printf "%s\t%s\t%s\t%d\t%d\t%.0f\t%.2f\t%d\t%.0f\n", row, run, t, ok, err, ok / secs, (a - b) / hz * 1e6 / ok, rss, other
    }' >>"$results"
  tail -n 1 "$results" | awk -F'\t' '{ printf "    %-14s run %s  %-7s  %8s req/s  %7s us/req  err %s  peak RSS %.1f MiB  other load on proxy core %s%%\n", $1, $2, $3, $6, $7, $5, $8 / 1024, $9 }' >&2
}

log "gateway: $bin"
log "proxy on cpu $proxy_cpu, load generator and origin on cpu $load_cpu; rows: ${rows[*]}; runs: $runs; ${duration} s per measurement"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$runs"); do
  for row in "${rows[@]}"; do
    # Alternate which proxy goes first, so a drift in the machine's load does not favour one.
    if [ $((run % 2)) = 1 ]; then order="nginx gateway"; else order="gateway nginx"; fi
    for target in $order; do measure "$row" "$run" "$target"; done
  done
done
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------ table
awk -F'\t' -v runs="$runs" -v rowlist="${rows[*]}" '
function median(s,    v, n, i, j, t) {
  n = split(s, v, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
  lo = v[1]; hi = v[n]
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function cell(s, fmt,    m) {
  if (s ~ /^ *$/) return "n/a"
  m = median(s)
  if (runs == 1) return sprintf(fmt, m)
  return sprintf(fmt " (" fmt "–" fmt ")", m, lo, hi)
}
{
  key = $1 SUBSEP $3
  cpu[key] = cpu[key] " " $7
  rss[key] = ($8 > rss[key] ? $8 : rss[key])
  err[key] += $5
  other[$1] = ($9 > other[$1] ? $9 : other[$1])
  per[$1, $2, $3] = $7
}
END {
  label["h1-0"] = "h1 0 B"; label["h1-16k"] = "h1 16 KiB"; label["h2c-0"] = "h2c 0 B"
  label["h2c-16k"] = "h2c 16 KiB"; label["h1-0-evidence"] = "h1 0 B, evidence on"
  printf "| row | gateway µs/req | nginx µs/req | gateway ÷ nginx | peak RSS gateway / nginx | errors | other load on proxy core |\n"
  printf "|---|---|---|---|---|---|---|\n"
  n = split(rowlist, rl, " ")
  for (i = 1; i <= n; i++) {
    r = rl[i]; ratios = ""
    for (k = 1; k <= runs; k++) if (per[r, k, "nginx"] > 0) ratios = ratios " " per[r, k, "gateway"] / per[r, k, "nginx"]
    printf "| %s | %s | %s | %s | %.1f / %.1f MiB | %d / %d | ≤ %.0f %% |\n", label[r],
      cell(cpu[r SUBSEP "gateway"], "%.1f"), cell(cpu[r SUBSEP "nginx"], "%.1f"), cell(ratios, "%.2f"),
      rss[r SUBSEP "gateway"] / 1024, rss[r SUBSEP "nginx"] / 1024,
      err[r SUBSEP "gateway"], err[r SUBSEP "nginx"], other[r]
  }
  if (runs > 1) printf "\nmedian of %d runs (min–max); the ratio is taken per run, nginx and gateway measured back to back.\n", runs
}' "$results"
if [ "$smoke" = 1 ]; then
  log "smoke run: the runner works; the figures of a debug build and 3 s runs mean nothing"
fi

#!/usr/bin/env bash
# Load comparison: Gatehouse against nginx, HAProxy and Caddy doing the
# same job on this machine.
#
#   benches/compare/run.sh            # 3 rounds of 10 s per measurement
#   ROUNDS=5 DURATION=20 benches/compare/run.sh
#   PINNED=1 benches/compare/run.sh   # one proxy core: see below
#   METRICS="keepalive resumed" NO_FIXED=1 benches/compare/run.sh   # some only
#   PINNED=1 BASELINE=main PEERS=none METRICS="keepalive h2" NO_FIXED=1 \
#     benches/compare/run.sh          # this tree against main, CPU per request
#
# PINNED=1 measures the proxy alone: each proxy gets one worker pinned to
# core 1 (`taskset -c 1`: Gatehouse --workers 1, nginx worker_processes 1,
# HAProxy nbthread 1, Caddy GOMAXPROCS=1) while the backend and the load
# generator share core 0, so every proxy saturates its core and two
# figures are clean: requests per second per proxy core, and the proxy's
# own CPU time per request (utime + stime of all its threads and
# processes, from /proc, before and after each measurement, divided by the
# requests done). Without PINNED, each proxy gets 2 workers (Caddy
# GOMAXPROCS=2) and everything shares both cores. GOMAXPROCS bounds the
# threads that run Go code at once; the Go runtime keeps a few more
# threads (the monitor, threads parked in system calls), all of them on
# the same core under taskset and all counted, since the CPU time is read
# from every thread in /proc/<pid>/task.
#
# Every proxy terminates TLS on 127.0.0.1 for 101 SNI hosts, each with
# its own ECDSA P-256 certificate, and routes host + /app (Prefix) to one
# fast backend over pooled HTTP/1.1 keep-alive connections, adding
# X-Forwarded-For and X-Forwarded-Proto, with no access log, no limit on
# requests per client connection, and ALPN h2 and http/1.1. HAProxy
# reuses upstream connections (`http-reuse always`). Caddy is configured
# by a Caddyfile with one site block per host (`tls <cert> <key>`: the
# same generated files, no ACME), `auto_https off` (no certificate
# management, no HTTP->HTTPS redirect), the admin endpoint off, HTTP/3
# off (`servers { protocols h1 h2 }`, so no UDP listener and no Alt-Svc),
# and `keepalive_idle_conns_per_host 320` as nginx's `keepalive 320`
# (with Caddy's default idle pool, 64 client connections made it open a
# new upstream connection for about every fifth request). What differs
# in Caddy's job, by its defaults: its reverse_proxy also sends
# X-Forwarded-Host (as Gatehouse does), Go's HTTP client asks the backend
# for `Accept-Encoding: gzip` when the client did not (the backend
# answers uncompressed, so nothing is decoded), and it adds `Server:
# Caddy` to the response beside the backend's; a few dozen bytes, no extra
# work. Its routes and TLS policies are lists matched in order (the
# measured host is the 43rd), as a Caddyfile with 101 sites gives them.
# Measurements alternate between the servers (A B C D A B C D ...) for
# every metric in every round:
#
#   keep-alive  wrk, 64 connections, HTTPS HTTP/1.1: req/s, p50, p99
#   h2          h2load, 64 connections x 10 streams: req/s
#   handshakes  wrk, 64 connections, `Connection: close`: a new connection
#               and a full TLS handshake per request (wrk does not resume)
#   full        examples/loadgen.rs, 16 connections at a time: the same
#               with a client that spends 0.55-0.75 x wrk's CPU per
#               handshake (no signature check, X25519 only), so that one
#               client core keeps one proxy core busy: handshakes/s, p99
#   resumed     examples/loadgen.rs, 16 connections at a time: a new TLS 1.3
#               connection per request, resuming with the server's session
#               tickets (as browsers do): handshakes/s, p99
#
# then, after the rounds, a fixed-rate measurement: HTTPS HTTP/1.1
# keep-alive at 70% of nginx's median keep-alive rate, open loop over 64
# connections (examples/loadgen.rs: latency counted from when each request
# was due, so a stall is not hidden): p50 and p99 per server, interleaved,
# one per round;
#
# and peak RSS (VmHWM; for nginx, master plus workers; for Caddy, the one
# process with all its threads). It prints every
# round, then medians with Gatehouse's ratio to each peer, the
# direct-to-backend figure (wrk over plain HTTP) as the ceiling, and how
# steady the machine was: the ceiling's range and each ratio's range over
# the rounds.
#
# BASELINE=<git revision> adds Gatehouse built at that revision (in a
# temporary git worktree, see benches/common/setup.sh) as one more server:
# the same flags, certificates, backend and load, on the same core when
# PINNED, taking turns with the current build (in even rounds the baseline
# goes first). The table gets a "Gatehouse (baseline)" column and the
# ratio current/baseline, and a line of the current/baseline CPU per
# request on keep-alive and HTTP/2 with its range over the rounds.
# BASELINE=current makes the baseline this tree's own build, and
# BASELINE_CONFIGMAP="key=value ..." gives the baseline those controller
# ConfigMap keys instead of CONFIGMAP's: one binary under two
# configurations, e.g. the cost of traces
#   PINNED=1 BASELINE=current PEERS=none METRICS="keepalive h2" NO_FIXED=1 \
#     CONFIGMAP="enable-opentelemetry=true ..." BASELINE_CONFIGMAP= \
#     benches/compare/run.sh
# PEERS lists the other proxies to run ("nginx haproxy caddy" by default;
# PEERS=none for Gatehouse alone, with or without its baseline). Without
# nginx the fixed rate is 70% of the baseline's median, or Gatehouse's.
#
# Needs root for apt-get (nginx-light, haproxy, caddy, wrk, nghttp2-client,
# when missing)
# and to map the benchmark host name to 127.0.0.1 in /etc/hosts for the
# run (wrk takes the TLS server name from the URL); the line is removed
# on exit.
set -euo pipefail

rounds=${ROUNDS:-3}
duration=${DURATION:-10}
hosts=101
target_host=h42.compare.gatehouse.test
backend_port=${BACKEND_PORT:-19090}
gatehouse_port=${GATEHOUSE_PORT:-19443}
nginx_port=${NGINX_PORT:-19444}
haproxy_port=${HAPROXY_PORT:-19445}
caddy_port=${CADDY_PORT:-19447}
baseline_port=${BASELINE_PORT:-19446}
baseline=${BASELINE:-}
peers=${PEERS:-nginx haproxy caddy}
[ "$peers" = none ] && peers=
pinned=${PINNED:-}
if [ -n "$pinned" ]; then
  workers=1
  on_proxy_core=(taskset -c 1)
  on_load_core=(taskset -c 0)
  load_threads=1
else
  workers=2
  on_proxy_core=()
  on_load_core=()
  load_threads=2
fi
servers=(gatehouse)
[ -n "$baseline" ] && servers+=(baseline)
for peer in $peers; do
  case $peer in
    nginx | haproxy | caddy) servers+=("$peer") ;;
    *) echo "PEERS: unknown proxy $peer (nginx, haproxy, caddy or none)" >&2; exit 1 ;;
  esac
done
has() { # server: whether it takes part
  local s
  for s in "${servers[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common/setup.sh
. "$root/benches/common/setup.sh"
work=$(mktemp -d -t gatehouse-compare.XXXXXX)
pids=()
# This run's own line in /etc/hosts, so that a concurrent run keeps its own.
hosts_marker="# gatehouse load comparison $$"

cleanup() {
  bench_stop "$root"
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools ------------------------------------------------------------------
missing=()
if has nginx; then command -v nginx >/dev/null || missing+=(nginx-light); fi
if has haproxy; then command -v haproxy >/dev/null || missing+=(haproxy); fi
if has caddy; then command -v caddy >/dev/null || missing+=(caddy); fi
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || true)
haproxy_bin=$(command -v haproxy || true)
caddy_bin=$(command -v caddy || true)

say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend --example loadgen)
loadgen="$root/target/release/examples/loadgen"
if [ "$baseline" = current ]; then
  cp "$root/target/release/gatehouse" "$work/gatehouse-baseline"
elif [ -n "$baseline" ]; then
  say "building the baseline, $baseline ($(git -C "$root" rev-parse --short "$baseline^{commit}")) (release)"
  bench_baseline_build "$root" "$baseline" "$work/gatehouse-baseline"
fi

# --- certificates, manifests, nginx.conf and Caddyfile for 101 hosts -------
say "generating $hosts certificates (ECDSA P-256)"
mkdir -p "$work/nginx" "$work/haproxy/certs" "$work/caddy"
bench_tls_hosts "$work" "$hosts" "$backend_port"
baseline_manifests="$work/manifests"
if [ -n "$baseline" ] && [ -n "${BASELINE_CONFIGMAP+set}" ]; then
  CONFIGMAP=$BASELINE_CONFIGMAP bench_tls_hosts "$work/baseline" "$hosts" "$backend_port"
  baseline_manifests="$work/baseline/manifests"
fi

nginx_servers=""
caddy_sites=""
for i in $(seq 0 $((hosts - 1))); do
  host="h$i.compare.gatehouse.test"
  key="$work/certs/$host.key"
  crt="$work/certs/$host.crt"
  cat "$crt" "$key" >"$work/haproxy/certs/$host.pem"
  nginx_servers+="
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        server_name $host;
        ssl_certificate $crt;
        ssl_certificate_key $key;
        location /app {
            proxy_pass http://backend;
        }
    }"
  caddy_sites+="
https://$host:$caddy_port {
	tls $crt $key
	handle /app* {
		reverse_proxy 127.0.0.1:$backend_port {
			transport http {
				keepalive_idle_conns_per_host 320
			}
		}
	}
	handle {
		respond 404
	}
}"
done

# nginx as ingress-nginx runs it for this job, minus the Lua and the
# logging: TLS 1.2 and 1.3, a shared session cache, pooled upstream
# keep-alive. keepalive_requests is raised so that no proxy closes a
# benchmark connection (Gatehouse's ConfigMap, written by bench_tls_hosts,
# does the same).
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events {
    worker_connections 8192;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_buffering on;
    upstream backend {
        server 127.0.0.1:$backend_port;
        keepalive 320;
        keepalive_requests 1000000;
    }
$nginx_servers
}
EOF

# HAProxy for the same job: TLS 1.2 and 1.3 with a certificate per SNI
# host (the directory), h2 and http/1.1, pooled upstream connections.
cat >"$work/haproxy/haproxy.cfg" <<EOF
global
    nbthread $workers
    maxconn 8192
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend compare
    bind 127.0.0.1:$haproxy_port ssl crt $work/haproxy/certs/ alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    acl app path_beg /app
    use_backend app if app
backend app
    server backend 127.0.0.1:$backend_port
EOF

# Caddy for the same job, none of its automatic HTTPS: the certificates
# are the files above, no ACME, no redirect from HTTP; no admin endpoint
# (its configuration is this file), HTTP/1.1 and HTTP/2 only (no HTTP/3
# over UDP), no access log (Caddy logs none unless a site asks). Its state
# (the autosaved configuration) goes under the run's directory.
cat >"$work/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	default_bind 127.0.0.1
	servers {
		protocols h1 h2
	}
}
$caddy_sites
EOF

# --- start everything -------------------------------------------------------
for port in "$backend_port" "$gatehouse_port" "$nginx_port" "$haproxy_port" "$caddy_port" "$baseline_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "127.0.0.1:$port is taken (another run?); set BACKEND_PORT, GATEHOUSE_PORT, NGINX_PORT, HAPROXY_PORT, CADDY_PORT or BASELINE_PORT"
    exit 1
  fi
done

if ! getent hosts "$target_host" >/dev/null; then
  echo "127.0.0.1 $target_host $hosts_marker" | as_root tee -a /etc/hosts >/dev/null
fi

wait_for() { # port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  say "nothing is listening on 127.0.0.1:$1"
  return 1
}

pid_of() { # server
  case $1 in
    gatehouse) echo "$gatehouse_pid" ;;
    baseline) echo "$baseline_pid" ;;
    nginx) echo "$nginx_pid" ;;
    haproxy) echo "$haproxy_pid" ;;
    caddy) echo "$caddy_pid" ;;
    *) echo "" ;;
  esac
}
port_of() { # server
  case $1 in
    gatehouse) echo "$gatehouse_port" ;;
    baseline) echo "$baseline_port" ;;
    nginx) echo "$nginx_port" ;;
    haproxy) echo "$haproxy_port" ;;
    caddy) echo "$caddy_port" ;;
  esac
}

"${on_load_core[@]}" "$root/target/release/examples/bench-backend" "127.0.0.1:$backend_port" 2>/dev/null &
pids+=($!)
wait_for "$backend_port"

"${on_proxy_core[@]}" "$root/target/release/gatehouse" --manifests "$work/manifests" \
  --workers "$workers" --configmap compare/gatehouse \
  --https-addr "127.0.0.1:$gatehouse_port" --http-addr 127.0.0.1:0 \
  --metrics-addr 127.0.0.1:0 --access-log off >"$work/gatehouse.log" 2>&1 &
gatehouse_pid=$!
pids+=($gatehouse_pid)
wait_for "$gatehouse_port"

baseline_pid=
if has baseline; then
  "${on_proxy_core[@]}" "$work/gatehouse-baseline" --manifests "$baseline_manifests" \
    --workers "$workers" --configmap compare/gatehouse \
    --https-addr "127.0.0.1:$baseline_port" --http-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --access-log off >"$work/gatehouse-baseline.log" 2>&1 &
  baseline_pid=$!
  pids+=($baseline_pid)
  wait_for "$baseline_port"
fi

nginx_pid=
if has nginx; then
  "${on_proxy_core[@]}" "$nginx_bin" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" 2>"$work/nginx/start.log" &
  nginx_pid=$!
  pids+=($nginx_pid)
  wait_for "$nginx_port"
fi

haproxy_pid=
if has haproxy; then
  "${on_proxy_core[@]}" "$haproxy_bin" -db -f "$work/haproxy/haproxy.cfg" >"$work/haproxy/haproxy.log" 2>&1 &
  haproxy_pid=$!
  pids+=($haproxy_pid)
  wait_for "$haproxy_port"
fi

caddy_pid=
if has caddy; then
  # GOMAXPROCS as the others' worker count. taskset and env exec, so the
  # pid is Caddy's own.
  "${on_proxy_core[@]}" env GOMAXPROCS="$workers" \
    XDG_CONFIG_HOME="$work/caddy" XDG_DATA_HOME="$work/caddy" \
    "$caddy_bin" run --config "$work/caddy/Caddyfile" --adapter caddyfile >"$work/caddy/caddy.log" 2>&1 &
  caddy_pid=$!
  pids+=($caddy_pid)
  wait_for "$caddy_port"
fi

for server in "${servers[@]}"; do
  port=$(port_of "$server")
  status=$(curl -sk -o /dev/null -w '%{http_code}' "https://$target_host:$port/app/hello" || true)
  if [ "$status" != 200 ]; then
    say "https://$target_host:$port/app/hello answered $status, not 200"
    exit 1
  fi
done

if [ -n "${HOLD:-}" ]; then
  # For profiling: leave them all running until interrupted.
  for server in "${servers[@]}"; do
    say "holding: $server pid $(pid_of "$server") https://$target_host:$(port_of "$server")/app/"
  done
  say "         backend http://127.0.0.1:$backend_port/"
  sleep infinity &
  pids+=($!)
  wait $!
  exit 0
fi

# --- measurements -------------------------------------------------------------
results="$work/results"
: >"$results"

# Record one figure: metric server value.
record() { echo "$1 $2 $3" >>"$results"; }

to_ms() { # wrk latency such as 812.00us, 1.52ms, 1.01s
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

clock_ticks=$(getconf CLK_TCK)

cpu_ticks() { # pid: utime + stime of every thread of it and its children
  local pid=$1 total=0 p stat
  if [ -z "$pid" ]; then echo 0; return; fi
  for p in "$pid" $(pgrep -P "$pid" || true); do
    for stat in /proc/"$p"/task/*/stat; do
      # Fields 14 and 15, counted after the ")" that ends the command name.
      total=$((total + $(sed 's/.*) //' "$stat" 2>/dev/null | awk '{print $12 + $13}')))
    done
  done
  echo "$total"
}

# Records the server's CPU microseconds per request over a measurement.
record_cpu() { # metric server ticks-before requests
  local pid after us
  pid=$(pid_of "$2")
  if [ -z "$pid" ]; then return 0; fi
  after=$(cpu_ticks "$pid")
  us=$(awk -v d="$((after - $3))" -v hz="$clock_ticks" -v n="$4" \
    'BEGIN { if (n > 0) printf "%.2f", d * 1e6 / hz / n; else print "nan" }')
  record "$1-cpu" "$2" "$us"
  printf '  %-9s %-10s %10s us CPU per request\n' "$2" "$1" "$us" >&2
}

run_wrk() { # server url metric-prefix [extra wrk args...]
  local server=$1 url=$2 metric=$3
  shift 3
  local out before requests
  before=$(cpu_ticks "$(pid_of "$server")")
  out=$("${on_load_core[@]}" wrk -t"$load_threads" -c64 -d"${duration}s" --latency "$@" "$url")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  record_cpu "$metric" "$server" "$before" "$requests"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5} /Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out" | awk '{s += $1} END {print s + 0}')
  record "$metric-rps" "$server" "$rps"
  record "$metric-p50" "$server" "$(to_ms "$p50")"
  record "$metric-p99" "$server" "$(to_ms "$p99")"
  record "$metric-errors" "$server" "$errors"
  printf '  %-9s %-10s %10.0f req/s  p50 %8s  p99 %8s  errors %s\n' \
    "$server" "$metric" "$rps" "$p50" "$p99" "$errors" >&2
}

run_h2load() { # server url
  local out rps failed before succeeded
  before=$(cpu_ticks "$(pid_of "$1")")
  # No warm-up: its CPU would be counted and its requests not. The 64
  # connections' handshakes are counted instead, about 0.01 s of CPU.
  out=$("${on_load_core[@]}" h2load -c64 -m10 -t"$load_threads" -D "$duration" "$2" 2>&1)
  succeeded=$(awk '/^requests:/ {print $8 + 0}' <<<"$out")
  record_cpu h2 "$1" "$before" "$succeeded"
  rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out")
  failed=$(awk '/^requests:/ {print $9 + 0}' <<<"$out")
  non2xx=$(awk '/^status codes:/ {gsub(",", ""); print $5 + $7 + $9}' <<<"$out")
  record h2-rps "$1" "$rps"
  record h2-errors "$1" "$((failed + non2xx))"
  printf '  %-9s %-10s %10.0f req/s  errors %s\n' "$1" h2 "$rps" "$((failed + non2xx))" >&2
}

# New TLS 1.3 connections: resuming with session tickets (`resume`), or a
# full handshake each (`full`).
run_loadgen_handshakes() { # server port resume|full
  local out before done_ resumed
  before=$(cpu_ticks "$(pid_of "$1")")
  out=$("${on_load_core[@]}" "$loadgen" "$3" "127.0.0.1:$2" "$target_host" /app/hello 16 "$duration")
  done_=$(awk '{gsub(",", "", $6); print $6}' <<<"$out")
  resumed=$(awk '{print $4}' <<<"$out")
  record_cpu "$3" "$1" "$before" "$done_"
  record "$3-rps" "$1" "$(awk '{print $2}' <<<"$out" | sed 's|/s,||')"
  record "$3-p99" "$1" "$(awk '{print $14}' <<<"$out")"
  record "$3-errors" "$1" "$(awk '{print $17}' <<<"$out")"
  if [ "$3" = resume ]; then
    record resume-missed "$1" "$((done_ - resumed))"
  fi
  printf '  %-9s %-10s %s\n' "$1" "$3" "$out" >&2
}

# Keep-alive at a fixed rate, open loop.
run_rate() { # server port rate
  local out
  out=$("${on_load_core[@]}" "$loadgen" rate "127.0.0.1:$2" "$target_host" /app/hello "$3" 64 "$duration")
  record fixed-achieved "$1" "$(awk '{print $2}' <<<"$out")"
  record fixed-p50 "$1" "$(awk '{print $5}' <<<"$out")"
  record fixed-p99 "$1" "$(awk '{print $8}' <<<"$out")"
  record fixed-max "$1" "$(awk '{print $11}' <<<"$out")"
  record fixed-errors "$1" "$(awk '{print $14}' <<<"$out")"
  printf '  %-9s %-10s %s\n' "$1" fixed "$out" >&2
}

peak_rss_kib() { # pid and its children
  local total=0 pid kib
  for pid in "$1" $(pgrep -P "$1" || true); do
    kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + kib))
  done
  echo "$total"
}

url_for() { echo "https://$target_host:$1/app/hello"; }

say "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"

say "$rounds rounds, ${duration}s per measurement${pinned:+, each proxy pinned to core 1 with one worker}"
# The order of a round: in even rounds the baseline goes before the current
# build, so that neither always follows the same measurement.
round_order() { # round
  local s
  if [ $(($1 % 2)) = 0 ] && has baseline; then
    echo baseline gatehouse
    for s in "${servers[@]}"; do case $s in gatehouse | baseline) ;; *) echo "$s" ;; esac; done
  else
    echo "${servers[@]}"
  fi
}

for round in $(seq 1 "$rounds"); do
  say "round $round"
  run_wrk direct "http://127.0.0.1:$backend_port/app/hello" keepalive
  for metric in ${METRICS:-keepalive h2 handshakes full resumed}; do
    for server in $(round_order "$round"); do
      port=$(port_of "$server")
      case $metric in
        keepalive) run_wrk "$server" "$(url_for "$port")" keepalive ;;
        h2) run_h2load "$server" "$(url_for "$port")" ;;
        handshakes) run_wrk "$server" "$(url_for "$port")" handshakes -H "Connection: close" ;;
        full) run_loadgen_handshakes "$server" "$port" full ;;
        resumed) run_loadgen_handshakes "$server" "$port" resume ;;
      esac
    done
  done
done
# --- fixed rate: 70% of nginx's saturation --------------------------------------
# (of the baseline's, or else Gatehouse's, when nginx does not take part)
if has nginx; then rate_ref=nginx; elif has baseline; then rate_ref=baseline; else rate_ref=gatehouse; fi
ref_rate=$(awk -v s="$rate_ref" '$1 == "keepalive-rps" && $2 == s {print $3}' "$results" | sort -g |
  awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print 0}')
fixed_rate=$(awk -v r="$ref_rate" 'BEGIN {printf "%d", r * 0.7}')
if [ "$fixed_rate" -gt 0 ] && [ -z "${NO_FIXED:-}" ]; then
  say "fixed rate: $fixed_rate req/s (70% of $rate_ref's median keep-alive rate), $rounds rounds"
  for round in $(seq 1 "$rounds"); do
    for server in $(round_order "$round"); do
      run_rate "$server" "$(port_of "$server")" "$fixed_rate"
    done
  done
fi
for server in "${servers[@]}"; do
  record rss-mib "$server" "$(awk -v k="$(peak_rss_kib "$(pid_of "$server")")" 'BEGIN {printf "%.1f", k / 1024}')"
done

# --- the table ----------------------------------------------------------------
median() { # metric server
  awk -v m="$1" -v s="$2" '$1 == m && $2 == s {print $3}' "$results" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
total() { # metric server
  awk -v m="$1" -v s="$2" '$1 == m && $2 == s {t += $3} END {print t + 0}' "$results"
}

spread() { # metric peer: the lowest and highest Gatehouse/peer ratio of a round
  awk -v m="$1" -v peer="$2" '
    $1 == m && $2 == "gatehouse" { g[++i] = $3 }
    $1 == m && $2 == peer { n[++j] = $3 }
    END {
      lo = ""; hi = ""
      for (k = 1; k <= i && k <= j; k++) {
        if (n[k] <= 0) continue
        r = g[k] / n[k]
        if (lo == "" || r < lo) lo = r
        if (hi == "" || r > hi) hi = r
      }
      if (lo == "") print "n/a"; else printf "%.2f-%.2f", lo, hi
    }' "$results"
}
extent() { # metric server: lowest-highest value over the rounds
  awk -v m="$1" -v s="$2" '$1 == m && $2 == s {
      if (lo == "" || $3 < lo) lo = $3
      if (hi == "" || $3 > hi) hi = $3 }
    END { if (lo == "") print "n/a"; else printf "%.1f-%.1f", lo, hi }' "$results"
}

# Columns: every server that took part, then Gatehouse's ratio to each of
# the others ("G/baseline" is current/baseline).
column_name() {
  case $1 in
    gatehouse) echo Gatehouse ;;
    baseline) echo "Gatehouse (baseline)" ;;
    nginx) echo nginx ;;
    haproxy) echo HAProxy ;;
    caddy) echo Caddy ;;
  esac
}
others=()
for server in "${servers[@]}"; do [ "$server" = gatehouse ] || others+=("$server"); done
row() { # label metric (left out when it was not measured)
  local server g v
  g=$(median "$2" gatehouse)
  [ "$g" = nan ] && return 0
  printf '%-32s' "$1"
  for server in "${servers[@]}"; do
    v=$(median "$2" "$server")
    printf ' %*.2f' "$(column_name "$server" | awk '{print (length > 10) ? length : 10}')" "$v"
  done
  for server in "${others[@]}"; do
    awk -v g="$g" -v v="$(median "$2" "$server")" 'BEGIN {
      printf " %10.2f", (v > 0) ? g / v : 0 }'
  done
  echo
}
row_ratio() { # metric: current over baseline, of the medians
  awk -v g="$(median "$1" gatehouse)" -v b="$(median "$1" baseline)" 'BEGIN {
    if (b > 0) printf "%.3f", g / b; else print "n/a" }'
}
header() {
  local server
  printf '%-32s' metric
  for server in "${servers[@]}"; do printf ' %10s' "$(column_name "$server")"; done
  for server in "${others[@]}"; do printf ' %10s' "G/$server"; done
  echo
}

title=Gatehouse
if has baseline && [ "$baseline" = current ]; then
  title+=" (CONFIGMAP: ${CONFIGMAP:-none}) against itself (BASELINE_CONFIGMAP: ${BASELINE_CONFIGMAP:-none})"
elif has baseline; then
  title+=" against its baseline, $baseline ($(git -C "$root" rev-parse --short "$baseline^{commit}"))"
fi
if has nginx; then title+=", nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///')"; fi
if has haproxy; then title+=", HAProxy $("$haproxy_bin" -v | awk 'NR == 1 {print $3}')"; fi
if has caddy; then title+=", Caddy $("$caddy_bin" version | awk 'NR == 1 {sub(/^v/, "", $1); print $1}')"; fi
echo
echo "$title: medians of $rounds rounds x ${duration}s, $(nproc) cores${pinned:+, each proxy one worker pinned to core 1}"
header
row "HTTPS h1 keep-alive req/s" keepalive-rps
row "HTTPS h1 keep-alive CPU us/req" keepalive-cpu
row "HTTPS h1 keep-alive p50 ms" keepalive-p50
row "HTTPS h1 keep-alive p99 ms" keepalive-p99
row "HTTP/2 req/s (64 conns x 10)" h2-rps
row "HTTP/2 CPU us/req" h2-cpu
row "full TLS handshakes/s" handshakes-rps
row "full handshake CPU us/req" handshakes-cpu
row "handshake p99 ms" handshakes-p99
row "full handshakes/s (loadgen)" full-rps
row "full handshake CPU (loadgen)" full-cpu
row "full handshake p99 ms (loadgen)" full-p99
row "TLS 1.3 resumed handshakes/s" resume-rps
row "resumed handshake CPU us/req" resume-cpu
row "resumed handshake p99 ms" resume-p99
row "fixed-rate h1 p50 ms" fixed-p50
row "fixed-rate h1 p99 ms" fixed-p99
row "fixed-rate h1 achieved req/s" fixed-achieved
row "peak RSS MiB" rss-mib
printf '%-32s %10.2f   (wrk, plain HTTP, the ceiling)\n' "direct to backend req/s" "$(median keepalive-rps direct)"
# How steady the machine was: on a shared VM the ceiling itself drifts, and
# a wide spread of per-round ratios says a median is less certain.
echo "ceiling over the rounds: $(extent keepalive-rps direct) req/s"
for peer in "${others[@]}"; do
  echo "Gatehouse/$peer per round: keep-alive $(spread keepalive-rps "$peer"), HTTP/2 $(spread h2-rps "$peer"), handshakes $(spread handshakes-rps "$peer"), full (loadgen) $(spread full-rps "$peer"), resumed $(spread resume-rps "$peer"), fixed-rate p99 $(spread fixed-p99 "$peer")"
done
if has baseline; then
  # The figure a change to the request path has to show: CPU per request,
  # current build over baseline, from this run alone.
  echo "current/baseline CPU per request: keep-alive $(row_ratio keepalive-cpu) (per round $(spread keepalive-cpu baseline)), HTTP/2 $(row_ratio h2-cpu) (per round $(spread h2-cpu baseline))"
fi
echo "fixed rate: ${fixed_rate:-0} req/s"
for metric in keepalive h2 handshakes full resume; do
  line="CPU us/req over the rounds, $metric:"
  for server in "${servers[@]}"; do line+=" $server $(extent "$metric-cpu" "$server"),"; done
  echo "${line%,}"
done
# CPU per request times requests per second: how busy each proxy kept its
# workers. Near 100% per worker, req/s is the proxy's own limit; well
# below, the load generator's (full handshakes, where the client's side of
# each handshake costs about as much as the proxy's).
busy() { # metric server
  awk -v c="$(median "$1-cpu" "$2")" -v r="$(median "$1-rps" "$2")" 'BEGIN {printf "%.0f%%", c * r / 1e4}'
}
for metric in keepalive h2 handshakes full resume; do
  line="proxy busy, $metric:"
  for server in "${servers[@]}"; do line+=" $server $(busy "$metric" "$server"),"; done
  echo "${line%,} (of $workers core(s))"
done
for server in "${servers[@]}"; do
  echo "failed or non-2xx responses, $server: $(($(total keepalive-errors "$server") + $(total h2-errors "$server") + $(total handshakes-errors "$server") + $(total full-errors "$server") + $(total resume-errors "$server") + $(total fixed-errors "$server"))); handshakes not resumed: $(total resume-missed "$server")"
done

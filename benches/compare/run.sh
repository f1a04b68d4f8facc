#!/usr/bin/env bash
# Load comparison: Gatehouse against nginx doing the same job on this machine.
#
#   benches/compare/run.sh            # 3 rounds of 10 s per measurement
#   ROUNDS=5 DURATION=20 benches/compare/run.sh
#
# Both proxies terminate TLS on 127.0.0.1 for 101 SNI hosts, each with its
# own ECDSA P-256 certificate, and route host + /app (Prefix) to one fast
# backend over pooled HTTP/1.1 keep-alive connections, adding
# X-Forwarded-For and X-Forwarded-Proto. Each gets 2 workers (Tokio worker
# threads; nginx worker processes) and no access log. Measurements alternate
# between the two (A B A B ...) for every metric in every round:
#
#   keep-alive  wrk, 64 connections, HTTPS HTTP/1.1: req/s, p50, p99
#   h2          h2load, 64 connections x 10 streams: req/s
#   handshakes  wrk, 64 connections, `Connection: close`: a new connection
#               and a full TLS handshake per request (wrk does not resume)
#
# and peak RSS (VmHWM; for nginx, master plus workers). It prints every
# round, then medians with the Gatehouse/nginx ratio and the targets, the
# direct-to-backend figure (wrk over plain HTTP) as the ceiling, and how
# steady the machine was: the ceiling's range and each ratio's range over
# the rounds.
#
# Needs root for apt-get (nginx-light, wrk, nghttp2-client, when missing)
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

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d -t gatehouse-compare.XXXXXX)
pids=()
# This run's own line in /etc/hosts, so that a concurrent run keeps its own.
hosts_marker="# gatehouse load comparison $$"

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if grep -q "$hosts_marker" /etc/hosts 2>/dev/null; then
    sed -i "/$hosts_marker/d" /etc/hosts
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- tools ------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx)

say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend)

# --- certificates, manifests and nginx.conf for 101 hosts -------------------
say "generating $hosts certificates (ECDSA P-256)"
mkdir -p "$work/certs" "$work/manifests" "$work/nginx"
manifest="$work/manifests/compare.yaml"
cat >"$manifest" <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
spec:
  controller: gatehouse.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: compare
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: compare
  labels:
    kubernetes.io/service-name: backend
addressType: IPv4
ports:
- name: http
  port: $backend_port
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
EOF

nginx_servers=""
for i in $(seq 0 $((hosts - 1))); do
  host="h$i.compare.gatehouse.test"
  key="$work/certs/$host.key"
  crt="$work/certs/$host.crt"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host" -days 30 \
    -keyout "$key" -out "$crt" 2>/dev/null
  cat >>"$manifest" <<EOF
---
apiVersion: v1
kind: Secret
metadata:
  name: tls-h$i
  namespace: compare
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$crt")
  tls.key: $(base64 -w0 "$key")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: h$i
  namespace: compare
spec:
  ingressClassName: gatehouse
  tls:
  - hosts: [$host]
    secretName: tls-h$i
  rules:
  - host: $host
    http:
      paths:
      - path: /app
        pathType: Prefix
        backend:
          service:
            name: backend
            port:
              name: http
EOF
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
done

# nginx as ingress-nginx runs it for this job, minus the Lua and the
# logging: TLS 1.2 and 1.3, a shared session cache, pooled upstream
# keep-alive. keepalive_requests is raised so that neither side closes a
# benchmark connection (Gatehouse sets no per-connection request limit).
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
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

# --- start everything -------------------------------------------------------
for port in "$backend_port" "$gatehouse_port" "$nginx_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "127.0.0.1:$port is taken (another run?); set BACKEND_PORT, GATEHOUSE_PORT or NGINX_PORT"
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

"$root/target/release/examples/bench-backend" "127.0.0.1:$backend_port" 2>/dev/null &
pids+=($!)
wait_for "$backend_port"

"$root/target/release/gatehouse" --manifests "$work/manifests" --workers 2 \
  --https-addr "127.0.0.1:$gatehouse_port" --http-addr 127.0.0.1:0 \
  --metrics-addr 127.0.0.1:0 --access-log off >"$work/gatehouse.log" 2>&1 &
gatehouse_pid=$!
pids+=($gatehouse_pid)
wait_for "$gatehouse_port"

"$nginx_bin" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" 2>"$work/nginx/start.log" &
nginx_pid=$!
pids+=($nginx_pid)
wait_for "$nginx_port"

for port in "$gatehouse_port" "$nginx_port"; do
  status=$(curl -sk -o /dev/null -w '%{http_code}' "https://$target_host:$port/app/hello" || true)
  if [ "$status" != 200 ]; then
    say "https://$target_host:$port/app/hello answered $status, not 200"
    exit 1
  fi
done

if [ -n "${HOLD:-}" ]; then
  # For profiling: leave both running until interrupted.
  say "holding: gatehouse pid $gatehouse_pid https://$target_host:$gatehouse_port/app/"
  say "         nginx pid $nginx_pid https://$target_host:$nginx_port/app/"
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

run_wrk() { # server url metric-prefix [extra wrk args...]
  local server=$1 url=$2 metric=$3
  shift 3
  local out
  out=$(wrk -t2 -c64 -d"${duration}s" --latency "$@" "$url")
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
  local out rps failed
  out=$(h2load -c64 -m10 -t2 -D "$duration" --warm-up-time=1 "$2" 2>&1)
  rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out")
  failed=$(awk '/^requests:/ {print $9 + 0}' <<<"$out")
  non2xx=$(awk '/^status codes:/ {gsub(",", ""); print $5 + $7 + $9}' <<<"$out")
  record h2-rps "$1" "$rps"
  record h2-errors "$1" "$((failed + non2xx))"
  printf '  %-9s %-10s %10.0f req/s  errors %s\n' "$1" h2 "$rps" "$((failed + non2xx))" >&2
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
say "$rounds rounds, ${duration}s per measurement"
for round in $(seq 1 "$rounds"); do
  say "round $round"
  run_wrk direct "http://127.0.0.1:$backend_port/app/hello" keepalive
  for metric in keepalive h2 handshakes; do
    for server in gatehouse nginx; do
      port=$gatehouse_port
      [ "$server" = nginx ] && port=$nginx_port
      case $metric in
        keepalive) run_wrk "$server" "$(url_for "$port")" keepalive ;;
        h2) run_h2load "$server" "$(url_for "$port")" ;;
        handshakes) run_wrk "$server" "$(url_for "$port")" handshakes -H "Connection: close" ;;
      esac
    done
  done
done
record rss-mib gatehouse "$(awk -v k="$(peak_rss_kib "$gatehouse_pid")" 'BEGIN {printf "%.1f", k / 1024}')"
record rss-mib nginx "$(awk -v k="$(peak_rss_kib "$nginx_pid")" 'BEGIN {printf "%.1f", k / 1024}')"

# --- the table ----------------------------------------------------------------
median() { # metric server
  awk -v m="$1" -v s="$2" '$1 == m && $2 == s {print $3}' "$results" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
total() { # metric server
  awk -v m="$1" -v s="$2" '$1 == m && $2 == s {t += $3} END {print t + 0}' "$results"
}

spread() { # metric: the lowest and highest Gatehouse/nginx ratio of a round
  awk -v m="$1" '
    $1 == m && $2 == "gatehouse" { g[++i] = $3 }
    $1 == m && $2 == "nginx" { n[++j] = $3 }
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
    END { if (lo == "") print "n/a"; else printf "%.0f-%.0f", lo, hi }' "$results"
}

row() { # label metric target-description higher-is-better(1/0) target
  local g n
  g=$(median "$2" gatehouse)
  n=$(median "$2" nginx)
  awk -v label="$1" -v g="$g" -v n="$n" -v desc="$3" -v higher="$4" -v t="$5" 'BEGIN {
    ratio = (n > 0) ? g / n : 0
    verdict = ""
    if (t != "") verdict = (higher ? ratio >= t : ratio <= t) ? "met" : "NOT met"
    printf "%-34s %12.2f %12.2f %8.2f   %-8s %s\n", label, g, n, ratio, desc, verdict }'
}

echo
echo "Gatehouse vs nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///'), medians of $rounds rounds x ${duration}s, $(nproc) cores"
printf '%-34s %12s %12s %8s   %s\n' metric gatehouse nginx ratio target
row "HTTPS h1 keep-alive req/s" keepalive-rps ">= 1.25" 1 1.25
row "HTTPS h1 keep-alive p50 ms" keepalive-p50 "" 0 ""
row "HTTPS h1 keep-alive p99 ms" keepalive-p99 "<= 1.0" 0 1.0
row "HTTP/2 req/s (64 conns x 10)" h2-rps ">= 1.25" 1 1.25
row "full TLS handshakes/s" handshakes-rps ">= 1.0" 1 1.0
row "handshake p99 ms" handshakes-p99 "" 0 ""
row "peak RSS MiB" rss-mib "" 0 ""
printf '%-34s %12.2f   (wrk, plain HTTP, the ceiling)\n' "direct to backend req/s" "$(median keepalive-rps direct)"
# How steady the machine was: on a shared VM the ceiling itself drifts, and
# a wide spread of per-round ratios says a median is less certain.
echo "ceiling over the rounds: $(extent keepalive-rps direct) req/s"
echo "ratio per round: keep-alive $(spread keepalive-rps), HTTP/2 $(spread h2-rps), handshakes $(spread handshakes-rps)"
errors_g=$(($(total keepalive-errors gatehouse) + $(total h2-errors gatehouse) + $(total handshakes-errors gatehouse)))
errors_n=$(($(total keepalive-errors nginx) + $(total h2-errors nginx) + $(total handshakes-errors nginx)))
echo "failed or non-2xx responses: gatehouse $errors_g, nginx $errors_n"

#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: repeatable where
# time on a shared machine is not.
#
#   benches/callgrind/run.sh                    # current tree, HTTP/1.1 and HTTP/2
#   BASELINE=main benches/callgrind/run.sh      # and the revision main, same settings
#   REQUESTS=50000 PROTOCOLS=h2 benches/callgrind/run.sh
#   GATEHOUSE_ARGS="--metrics-compat ingress-nginx" benches/callgrind/run.sh
#                                               # extra flags (every build)
#   CONFIGMAP="enable-opentelemetry=true otel-sampler=TraceIdRatioBased" \
#     benches/callgrind/run.sh                  # extra controller ConfigMap keys
#
# One Gatehouse worker (`--workers 1`) runs under
# `valgrind --tool=callgrind --separate-threads=yes` with the load
# comparison's set-up (benches/compare/run.sh): TLS for 101 SNI hosts, each
# with its own ECDSA P-256 certificate, host + /app (Prefix) to
# examples/bench-backend.rs over pooled HTTP/1.1 keep-alive connections.
# For each protocol h2load first makes WARMUP requests (connections to the
# backend opened, code paths translated), then callgrind's counters are
# zeroed, h2load makes REQUESTS requests on new connections, and the
# counters are dumped:
#
#   h1  HTTPS HTTP/1.1 keep-alive: h2load --h1 -c 8 (one request at a time
#       per connection)
#   h2  HTTPS HTTP/2: h2load -c 8 -m 10 (8 connections x 10 streams)
#
# Counted: the worker thread only (the thread of the dump with the most
# instructions), TLS included (records, and the 8 handshakes of the
# measured connections). Reported per request: the worker thread's
# instructions, and the inclusive instructions of Gatehouse's handler,
# `gatehouse::proxy::handler::Proxy::handle` (the polls of its future,
# `Proxy::handle::{{closure}}`, with all it calls: routing, header
# rewriting, the upstream request), as callgrind_annotate --inclusive=yes
# shows it (the calls into it, read from the callgrind file: see
# inclusive() below).
#
# With BASELINE=<git revision>, that revision is built too (in a temporary
# git worktree, see benches/common/setup.sh) and measured after the current
# tree with identical settings; the table adds current/baseline ratios.
#
# The callgrind files are kept in a temporary directory when KEEP=1 (its
# path is printed), for callgrind_annotate by hand.
#
# Needs root for apt-get (valgrind, nghttp2-client, when missing) and to
# map the benchmark host name to 127.0.0.1 in /etc/hosts for the run
# (h2load takes the TLS server name from the URL); the line is removed on
# exit.
set -euo pipefail

requests=${REQUESTS:-20000}
warmup=${WARMUP:-2000}
protocols=${PROTOCOLS:-h1 h2}
baseline=${BASELINE:-}
hosts=101
target_host=h42.compare.gatehouse.test
backend_port=${BACKEND_PORT:-19190}
gatehouse_port=${GATEHOUSE_PORT:-19543}
handler_symbol='gatehouse::proxy::handler::Proxy::handle::{{closure}}'

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../common/setup.sh
. "$root/benches/common/setup.sh"
work=$(mktemp -d -t gatehouse-callgrind.XXXXXX)
pids=()
hosts_marker="# gatehouse callgrind $$"

cleanup() {
  bench_stop "$root"
  if [ -n "${KEEP:-}" ]; then
    echo "callgrind files kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- tools --------------------------------------------------------------------
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

start=$SECONDS
say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend)
builds=(current)
mkdir -p "$work/current"
cp "$root/target/release/gatehouse" "$work/current/gatehouse"
if [ -n "$baseline" ]; then
  say "building the baseline, $baseline ($(git -C "$root" rev-parse --short "$baseline^{commit}")) (release)"
  mkdir -p "$work/baseline"
  bench_baseline_build "$root" "$baseline" "$work/baseline/gatehouse"
  builds+=(baseline)
fi
say "built in $((SECONDS - start)) s"

say "generating $hosts certificates (ECDSA P-256)"
bench_tls_hosts "$work" "$hosts" "$backend_port"

# --- start the backend ----------------------------------------------------------
for port in "$backend_port" "$gatehouse_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "127.0.0.1:$port is taken (another run?); set BACKEND_PORT or GATEHOUSE_PORT"
    exit 1
  fi
done

if ! getent hosts "$target_host" >/dev/null; then
  echo "127.0.0.1 $target_host $hosts_marker" | as_root tee -a /etc/hosts >/dev/null
fi

wait_for() { # port seconds
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  say "nothing is listening on 127.0.0.1:$1"
  return 1
}

"$root/target/release/examples/bench-backend" "127.0.0.1:$backend_port" 2>/dev/null &
pids+=($!)
wait_for "$backend_port" 10

url="https://$target_host:$gatehouse_port/app/hello"
results="$work/results"
: >"$results"

load() { # protocol requests
  case $1 in
    h1) h2load --h1 -n "$2" -c 8 -t 1 "$url" ;;
    h2) h2load -n "$2" -c 8 -m 10 -t 1 "$url" ;;
    *) say "unknown protocol $1 (h1 or h2)"; return 1 ;;
  esac
}

# Succeeded 2xx requests from h2load's output, or nothing if any failed.
succeeded() {
  awk '/^requests:/ {ok = $8 + 0; failed = $9 + 0}
       /^status codes:/ {gsub(",", ""); bad = $5 + $7 + $9}
       END {if (failed == 0 && bad == 0) print ok}'
}

# The callgrind file of a dump with the most instructions: the worker's.
busiest() { # files...
  local f best= most=0 n
  for f in "$@"; do
    n=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    if [ "${n:-0}" -gt "$most" ]; then most=$n; best=$f; fi
  done
  echo "$best"
}

# Inclusive instructions of a function: the cost callgrind recorded for
# every call into it from another function (its own instructions and all
# it called). Read from the file itself: callgrind_annotate --inclusive=yes
# lists the same figure as the function's own entry when it runs outside
# the source tree, but from inside it (relative file names) it takes off
# the code inlined into the function from other source files.
inclusive() { # callgrind-file function-name
  awk -v sym="$2" '
    # "(id) name" defines a compressed name, "(id)" reuses it.
    function id_of(s,   id) {
      if (match(s, /^\([0-9]+\)/)) {
        id = substr(s, 1, RLENGTH)
        if (substr(s, RLENGTH + 2) == sym) target[id] = 1
        return id
      }
      if (s == sym) target[s] = 1
      return s
    }
    /^fn=/ { caller = id_of(substr($0, 4)) }
    /^cfn=/ { callee = id_of(substr($0, 5)) }
    /^calls=/ {
      getline
      if ((callee in target) && !(caller in target)) { split($0, a, " "); s += a[2] }
    }
    END { print s + 0 }' "$1"
}

measure() { # build
  local build=$1 dir="$work/$1" pid proto out ok before files file total handler
  say "$build: starting gatehouse --workers 1 under callgrind"
  valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no \
    --callgrind-out-file="$dir/callgrind.out" \
    "$dir/gatehouse" --manifests "$work/manifests" \
    --workers 1 --configmap compare/gatehouse \
    --https-addr "127.0.0.1:$gatehouse_port" --http-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --access-log off ${GATEHOUSE_ARGS:-} >"$dir/gatehouse.log" 2>&1 &
  pid=$!
  pids+=($pid)
  wait_for "$gatehouse_port" 300
  status=$(curl -sk -o /dev/null -w '%{http_code}' "$url" || true)
  if [ "$status" != 200 ]; then
    say "$url answered $status, not 200"
    exit 1
  fi
  callgrind_control --instr=on "$pid" >/dev/null 2>&1
  for proto in $protocols; do
    load "$proto" "$warmup" >"$dir/warmup-$proto.txt"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    before=$(ls "$dir")
    out=$(load "$proto" "$requests")
    echo "$out" >"$dir/load-$proto.txt"
    callgrind_control --dump="$proto" "$pid" >/dev/null 2>&1
    ok=$(succeeded <<<"$out")
    if [ "$ok" != "$requests" ]; then
      say "$build $proto: not every request succeeded:"
      say "$out"
      exit 1
    fi
    files=()
    for file in $(ls "$dir"); do
      if ! grep -qxF "$file" <<<"$before" && [[ $file == callgrind.out* ]]; then
        files+=("$dir/$file")
      fi
    done
    file=$(busiest "${files[@]}")
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    handler=$(inclusive "$file" "$handler_symbol")
    echo "$build $proto $requests $total $handler" >>"$results"
    printf '  %-8s %-3s %6d requests: worker %12d instructions, handler %12d\n' \
      "$build" "$proto" "$requests" "$total" "$handler" >&2
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for build in "${builds[@]}"; do
  measure "$build"
done

# --- the table ------------------------------------------------------------------
echo
echo "Instructions per proxied request, one worker under callgrind (worker thread," \
  "TLS included), $requests requests after $warmup of warm-up, h2load 8 connections${baseline:+; baseline $baseline}"
printf '%-9s %-22s %14s %14s %8s\n' build protocol "worker thread" "Proxy::handle" share
label() { case $1 in h1) echo "HTTP/1.1 keep-alive" ;; h2) echo "HTTP/2 (8 x 10 streams)" ;; *) echo "$1" ;; esac; }
while read -r build proto n total handler; do
  awk -v b="$build" -v p="$(label "$proto")" -v n="$n" -v t="$total" -v h="$handler" 'BEGIN {
    printf "%-9s %-22s %14.0f %14.0f %7.1f%%\n", b, p, t / n, h / n, (t > 0) ? 100 * h / t : 0 }'
done <"$results"
if [ -n "$baseline" ]; then
  for proto in $protocols; do
    awk -v p="$(label "$proto")" -v proto="$proto" '
      $2 == proto && $1 == "current" {ct = $4 / $3; ch = $5 / $3}
      $2 == proto && $1 == "baseline" {bt = $4 / $3; bh = $5 / $3}
      END {printf "%-9s %-22s %14.3f %14.3f\n", "cur/base", p, (bt > 0) ? ct / bt : 0, (bh > 0) ? ch / bh : 0}' "$results"
  done
fi
echo "took $((SECONDS - start)) s"

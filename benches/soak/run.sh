#!/usr/bin/env bash
# Soak: constant load over HTTP/1.1, HTTP/2 and WebSockets while an
# Ingress, an EndpointSlice and a TLS Secret change every 100 ms.
#
#   benches/soak/run.sh                  # 10 minutes of churn
#   DURATION=180 BASELINE=60 benches/soak/run.sh
#
# Starts Gatehouse on a manifests folder in front of two bench backends,
# and runs, at once: wrk (HTTPS, HTTP/1.1 keep-alive, 16 connections),
# h2load (HTTPS, HTTP/2, 8 connections x 8 streams) and 20 WebSocket
# connections each echoing a message every 50 ms (Python asyncio). First
# BASELINE seconds without churn, then DURATION seconds with it. Reports
# failed requests and echoes (the target is 0), Gatehouse's resident
# memory and open files every 10 s (no growth after warm-up is the
# target), and the HTTP/1.1 p99 without and with churn. Needs wrk, h2load
# (nghttp2-client), openssl and python3.
set -euo pipefail

duration=${DURATION:-600}
baseline=${BASELINE:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d -t gatehouse-soak.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }
for tool in wrk h2load openssl python3; do
  command -v "$tool" >/dev/null || { say "soak: $tool is needed"; exit 1; }
done

say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend)
bin="$root/target/release"

for n in 1 2; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=soak.test" -addext "subjectAltName=DNS:soak.test" -days 2 \
    -keyout "$work/key$n.pem" -out "$work/cert$n.pem" 2>/dev/null
done
secret() {
  cat <<YAML
apiVersion: v1
kind: Secret
metadata: {name: soak-tls, namespace: soak}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(sed 's/^/    /' "$work/cert$1.pem")
  tls.key: |
$(sed 's/^/    /' "$work/key$1.pem")
YAML
}
slice() {
  cat <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: soak, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: $1}]
endpoints: [{addresses: ["127.0.0.1"]}]
YAML
}
extra() {
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: churn, namespace: soak}
spec:
  ingressClassName: gatehouse
  rules:
  - host: churn.test
    http:
      paths:
      - {path: /v$1, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
}
put() { # file, content: written whole, then renamed, as a watcher expects
  printf '%s\n' "$2" >"$work/manifests/.$1.tmp" && mv "$work/manifests/.$1.tmp" "$work/manifests/$1"
}

mkdir -p "$work/manifests"
cat >"$work/manifests/base.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gatehouse, namespace: soak}
data: {keep-alive-requests: "1000000", ssl-redirect: "false"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: soak}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: soak, namespace: soak}
spec:
  ingressClassName: gatehouse
  tls: [{hosts: [soak.test], secretName: soak-tls}]
  rules:
  - host: soak.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
put secret.yaml "$(secret 1)"
put slice.yaml "$(slice 19391)"
put churn.yaml "$(extra 0)"

"$bin/examples/bench-backend" 127.0.0.1:19391 2>/dev/null & pids+=($!)
"$bin/examples/bench-backend" 127.0.0.1:19392 2>/dev/null & pids+=($!)
"$bin/gatehouse" --manifests "$work/manifests" --configmap soak/gatehouse \
  --http-addr 127.0.0.1:19380 --https-addr 127.0.0.1:19443 \
  --metrics-addr 127.0.0.1:19354 --access-log off 2>"$work/gatehouse.log" &
gatehouse=$!
pids+=($gatehouse)
for _ in $(seq 100); do
  curl -sk -o /dev/null --resolve soak.test:19443:127.0.0.1 https://soak.test:19443/ && break
  sleep 0.1
done

url=https://soak.test:19443/
resolve() { # wrk and h2load have no --resolve: the Host header (wrk's
  # own unless spelled `Host`) or `:authority`, and no server name
  printf 'https://127.0.0.1:19443/'
}

# WebSockets: 20 connections, a message every 50 ms each, echo checked.
cat >"$work/ws.py" <<'PY'
import asyncio, ssl, sys, time
until = time.monotonic() + float(sys.argv[1])
counts = {"echoes": 0, "failed": 0, "reconnects": 0}
async def one(i):
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    while time.monotonic() < until:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", 19443, ssl=ctx, server_hostname="soak.test")
            w.write(b"GET /ws HTTP/1.1\r\nhost: soak.test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head[:40])
            n = 0
            while time.monotonic() < until:
                message = f"{i}:{n}\n".encode(); n += 1
                w.write(message)
                echo = await asyncio.wait_for(r.readexactly(len(message)), 5)
                if echo != message:
                    raise RuntimeError("wrong echo")
                counts["echoes"] += 1
                await asyncio.sleep(0.05)
            w.close()
        except Exception as e:
            counts["failed"] += 1
            counts["reconnects"] += 1
            await asyncio.sleep(0.1)
async def main():
    await asyncio.gather(*(one(i) for i in range(20)))
    print(f"websocket echoes {counts['echoes']} failed {counts['failed']}")
asyncio.run(main())
PY

sample() { # seconds since start, RSS KiB, open files
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$gatehouse/status")
  fds=$(ls "/proc/$gatehouse/fd" | wc -l)
  printf '%6ss  rss %7s KiB  fds %5s\n' "$1" "$rss" "$fds"
}

run_load() { # seconds, label
  local secs=$1 label=$2
  wrk -t2 -c16 -d"${secs}s" --latency -H 'Host: soak.test' "$(resolve)" >"$work/wrk-$label.txt" 2>&1 &
  local wrk=$!
  h2load -D "$secs" -c8 -m8 -H ':authority: soak.test' "$(resolve)" >"$work/h2-$label.txt" 2>&1 &
  local h2=$!
  python3 "$work/ws.py" "$secs" >"$work/ws-$label.txt" 2>&1 &
  local ws=$!
  local start=$SECONDS
  while kill -0 $wrk 2>/dev/null; do
    sample $((SECONDS - start))
    sleep 10
  done
  wait $wrk $h2 $ws || true
}

report() { # label
  local label=$1
  say "-- $label"
  grep -E "Latency Distribution|99%|requests in|Non-2xx|Socket errors" "$work/wrk-$label.txt" | sed 's/^/  wrk: /' >&2 || true
  grep -E "^requests:|^status codes:" "$work/h2-$label.txt" | sed 's/^/  h2load: /' >&2 || true
  sed 's/^/  /' "$work/ws-$label.txt" >&2
}

say "baseline: ${baseline}s of load, no churn"
run_load "$baseline" baseline >&2
report baseline

rebuilds() {
  curl -s http://127.0.0.1:19354/metrics | awk '/^gatehouse_table_rebuilds_total/ {print $2}'
}
before=$(rebuilds)
say "soak: ${duration}s of load, an Ingress, an EndpointSlice and a Secret changed every 100 ms"
(
  i=0
  while true; do
    i=$((i + 1))
    case $((i % 3)) in
      0) put churn.yaml "$(extra $i)" ;;
      1) put slice.yaml "$(slice $((19391 + i % 2)))" ;;
      2) put secret.yaml "$(secret $((1 + i % 2)))" ;;
    esac
    sleep 0.1
  done
) &
churn=$!
pids+=($churn)
run_load "$duration" churn >&2
kill $churn 2>/dev/null || true
report churn
say "tables built during the churn: $(( $(rebuilds) - before ))"
say "gatehouse log: $(wc -l <"$work/gatehouse.log") lines, $(grep -c ERROR "$work/gatehouse.log" || true) errors"

#!/usr/bin/env bash
# Memory per idle keep-alive connection.
#
#   benches/idle/run.sh            # 15,000 connections, plain and TLS
#   CONNECTIONS=5000 MODES=tls benches/idle/run.sh
#
# Starts Gatehouse (one worker, no access log, keep-alive and head
# timeouts raised so that nothing is closed during the run) in front of the
# bench backend, opens CONNECTIONS client connections that each send one
# request, read the answer and then stay open and idle, and reads
# Gatehouse's resident memory (VmRSS) before and after. Done once over
# plain HTTP and once over TLS (HTTP/1.1, a full handshake each), each on
# a fresh Gatehouse. The client is Python's asyncio; the process file
# limit (`ulimit -n`) bounds CONNECTIONS on both sides.
set -euo pipefail

connections=${CONNECTIONS:-15000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d -t gatehouse-idle.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend)
bin="$root/target/release"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=idle.test" -addext "subjectAltName=DNS:idle.test" -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir -p "$work/manifests"
cat >"$work/manifests/all.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gatehouse, namespace: idle}
data: {keep-alive: "3600", keep-alive-requests: "1000000"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: idle}
spec: {ports: [{port: 80, targetPort: 19190}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: idle, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 19190}]
endpoints: [{addresses: ["127.0.0.1"]}]
---
apiVersion: v1
kind: Secret
metadata: {name: idle-tls, namespace: idle}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$work/cert.pem")
  tls.key: $(base64 -w0 "$work/key.pem")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: idle
  namespace: idle
  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}
spec:
  ingressClassName: gatehouse
  tls: [{hosts: [idle.test], secretName: idle-tls}]
  rules:
  - host: idle.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML

cat >"$work/client.py" <<'PY'
import asyncio, ssl, sys

host, port, count, use_tls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "tls"
request = b"GET / HTTP/1.1\r\nhost: idle.test\r\n\r\n"

async def one(context, held):
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="idle.test" if context else None)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    await reader.readexactly(length)
    held.append(writer)

async def main():
    context = None
    if use_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
    held = []
    batch = 100
    for start in range(0, count, batch):
        await asyncio.gather(*(one(context, held) for _ in range(min(batch, count - start))))
    print(len(held), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
PY

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

taskset -c 0 "$bin/examples/bench-backend" 127.0.0.1:19190 2>/dev/null & pids+=($!)

measure() { # plain|tls
  local mode=$1 port
  "$bin/gatehouse" --manifests "$work/manifests" --configmap idle/gatehouse --workers 1 \
    --max-connections 40000 --header-read-timeout 3600s --access-log off \
    --http-addr 127.0.0.1:19180 --https-addr 127.0.0.1:19443 --metrics-addr 127.0.0.1:0 \
    2>"$work/gatehouse-$mode.log" &
  local gatehouse=$!
  pids+=($gatehouse)
  for _ in $(seq 100); do
    curl -s -o /dev/null -H 'Host: idle.test' http://127.0.0.1:19180/ && break
    sleep 0.1
  done
  curl -sk -o /dev/null --resolve idle.test:19443:127.0.0.1 https://idle.test:19443/
  sleep 1
  local before after opened
  before=$(rss_kib "$gatehouse")
  port=19180
  [ "$mode" = tls ] && port=19443
  python3 "$work/client.py" 127.0.0.1 "$port" "$connections" "$mode" >"$work/client-$mode.out" &
  local client=$!
  pids+=($client)
  for _ in $(seq 600); do
    [ -s "$work/client-$mode.out" ] && break
    sleep 0.5
  done
  sleep 2
  opened=$(cat "$work/client-$mode.out")
  after=$(rss_kib "$gatehouse")
  awk -v m="$mode" -v n="$opened" -v b="$before" -v a="$after" 'BEGIN {
    printf "%-5s %6d idle connections: RSS %.1f -> %.1f MiB, %.1f KiB per connection\n",
      m, n, b / 1024, a / 1024, (a - b) / n }'
  kill "$client" "$gatehouse" 2>/dev/null || true
  wait "$client" "$gatehouse" 2>/dev/null || true
}

for mode in ${MODES:-plain tls}; do
  measure "$mode"
done

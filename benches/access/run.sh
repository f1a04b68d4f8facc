#!/usr/bin/env bash
# What access control costs per request: the same route served open, behind
# basic authentication (a bcrypt cost-10 htpasswd entry) and behind an
# external auth service, through one Gatehouse worker.
#
#   benches/access/run.sh                  # 3 rounds of 10 s per case
#   ROUNDS=5 DURATION=20 benches/access/run.sh
#
# Method (as the per-core comparison): Gatehouse gets one worker pinned to
# core 1 (`taskset -c 1`, `--workers 1`, no access log); wrk, the backend
# and the stand-in auth service (a second backend that says 200 to
# everything) run on core 0. Plain HTTP/1.1 keep-alive, wrk with 16
# connections, so TLS does not blur what authentication adds. For each case
# it reports requests/s and Gatehouse's CPU time per request (utime + stime
# of all its threads from /proc/<pid>/stat, before and after), the cases
# interleaved in every round, then the medians and each case's ratio to the
# open route.
#
# Cases:
#   open       no access control
#   basic      valid credentials on every request (verified once, then
#              remembered: the keep-alive case)
#   basic-bad  a wrong password on every request: bcrypt every time, 401
#   external   auth-url to the stand-in service: one subrequest per request
#
# Needs wrk and htpasswd (apt-get install wrk apache2-utils; done when
# missing and running as root).
set -euo pipefail

rounds=${ROUNDS:-3}
duration=${DURATION:-10}
backend_port=${BACKEND_PORT:-19190}
auth_port=${AUTH_PORT:-19191}
http_port=${HTTP_PORT:-19180}

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d -t gatehouse-access.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for port in "$backend_port" "$auth_port" "$http_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is taken; set BACKEND_PORT, AUTH_PORT or HTTP_PORT"; exit 1
  fi
done

say "building gatehouse and the bench backend (release)"
(cd "$root" && cargo build --release --quiet --bin gatehouse --example bench-backend)
bin="$root/target/release"

password=bench-secret
htpasswd -nbB -C 10 bench "$password" | grep -v '^$' > "$work/auth"
mkdir -p "$work/manifests"
{
  cat <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: bench}
spec: {ports: [{port: 80, targetPort: $backend_port}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: bench, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: $backend_port}]
endpoints: [{addresses: ["127.0.0.1"]}]
---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: bench}
type: Opaque
stringData:
  auth: '$(cat "$work/auth")'
---
# As the load comparison: no per-connection request limit, so that wrk's
# connections stay open for the whole run.
apiVersion: v1
kind: ConfigMap
metadata: {name: gatehouse, namespace: bench}
data: {keep-alive-requests: "1000000"}
YAML
  for case in open basic external; do
    annotations='{}'
    case $case in
      basic) annotations='{nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: users}' ;;
      external) annotations="{nginx.ingress.kubernetes.io/auth-url: \"http://127.0.0.1:$auth_port/auth\"}" ;;
    esac
    cat <<YAML
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: $case, namespace: bench, annotations: $annotations}
spec:
  ingressClassName: gatehouse
  rules:
  - host: $case.bench.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
  done
} > "$work/manifests/all.yaml"

taskset -c 0 "$bin/examples/bench-backend" "127.0.0.1:$backend_port" 2>/dev/null & pids+=($!)
taskset -c 0 "$bin/examples/bench-backend" "127.0.0.1:$auth_port" 2>/dev/null & pids+=($!)
taskset -c 1 "$bin/gatehouse" --manifests "$work/manifests" --workers 1 --access-log off \
  --configmap bench/gatehouse \
  --http-addr "127.0.0.1:$http_port" --https-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
  2>"$work/gatehouse.log" & gatehouse=$!; pids+=($gatehouse)
for _ in $(seq 100); do
  curl -s -o /dev/null -H 'Host: open.bench.test' "http://127.0.0.1:$http_port/" && break
  sleep 0.1
done

good=$(printf 'bench:%s' "$password" | base64)
bad=$(printf 'bench:%s' "wrong" | base64)
# host, extra header
declare -A host=([open]=open [basic]=basic [basic-bad]=basic [external]=external)
declare -A header=([open]="X-Case: open" [basic]="Authorization: Basic $good" \
  [basic-bad]="Authorization: Basic $bad" [external]="X-Case: external")
cases=(open basic basic-bad external)

for c in "${cases[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: ${host[$c]}.bench.test" \
    -H "${header[$c]}" "http://127.0.0.1:$http_port/")
  say "check $c: HTTP $code"
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$gatehouse/stat"; }

declare -A rps cpu_us
for round in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    before=$(cpu)
    out=$(taskset -c 0 wrk -t1 -c16 -d"${duration}s" -H "Host: ${host[$c]}.bench.test" \
      -H "${header[$c]}" "http://127.0.0.1:$http_port/" 2>&1)
    after=$(cpu)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    us=$(awk -v t="$((after - before))" -v n="$requests" -v hz="$ticks" \
      'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf 'round %s  %-10s %10s req/s  %6s us CPU/request  non-2xx %s\n' \
      "$round" "$c" "$r" "$us" "${non2xx:-0}"
    rps[$c]+="$r "; cpu_us[$c]+="$us "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-10s %12s %10s %14s %10s\n' case "req/s" "vs open" "CPU us/req" "vs open"
open_rps=$(median <<<"${rps[open]}"); open_cpu=$(median <<<"${cpu_us[open]}")
for c in "${cases[@]}"; do
  r=$(median <<<"${rps[$c]}"); u=$(median <<<"${cpu_us[$c]}")
  printf '%-10s %12s %10s %14s %10s\n' "$c" "$r" \
    "$(awk -v a="$r" -v b="$open_rps" 'BEGIN {printf "%.2f", a / b}')" "$u" \
    "$(awk -v a="$u" -v b="$open_cpu" 'BEGIN {printf "%.2f", a / b}')"
done

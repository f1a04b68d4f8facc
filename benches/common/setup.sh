# Set-up pieces shared by the shell benchmarks (benches/compare/run.sh,
# benches/callgrind/run.sh). Sourced, not run.

# bench_tls_hosts WORK HOSTS BACKEND_PORT
#
# Writes one ECDSA P-256 certificate per host, hI.compare.gatehouse.test
# for I in 0..HOSTS-1 (WORK/certs/<host>.key and .crt), and Gatehouse's
# manifests for them in WORK/manifests/compare.yaml: the IngressClass, a
# ConfigMap lifting the per-connection request limit, the Service
# `backend` with one endpoint 127.0.0.1:BACKEND_PORT, and per host a TLS
# Secret and an Ingress routing host + /app (Prefix) to the backend.
bench_tls_hosts() {
  local work=$1 hosts=$2 backend_port=$3 i host key crt manifest kv extra=""
  # CONFIGMAP="key=value ...": more keys for the controller ConfigMap.
  for kv in ${CONFIGMAP:-}; do
    extra+="  ${kv%%=*}: \"${kv#*=}\""$'\n'
  done
  mkdir -p "$work/certs" "$work/manifests"
  manifest="$work/manifests/compare.yaml"
  cat >"$manifest" <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
spec:
  controller: gatehouse.dev/ingress-controller
---
# No per-connection request limit, as nginx's and HAProxy's in the load
# comparison.
apiVersion: v1
kind: ConfigMap
metadata:
  name: gatehouse
  namespace: compare
data:
  keep-alive-requests: "1000000"
${extra}---
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
  done
}

# bench_baseline_build ROOT REV OUT
#
# Builds Gatehouse (release, the same profile as the current tree) at the
# git revision REV of the repository at ROOT and copies the binary to OUT.
# The source is checked out in a temporary `git worktree` that is removed
# again before this returns (and by bench_baseline_cleanup if the build is
# interrupted). Its build directory, ROOT/target/baseline (seeded from
# ROOT/target/release), is kept, so that dependencies are compiled once,
# and so is each binary built, under
# ROOT/target/baseline/bin/<commit>-<toolchain>, so that a second script
# measuring the same revision does not build it again.
bench_baseline_build() {
  local root=$1 rev=$2 out=$3 commit toolchain cached
  commit=$(git -C "$root" rev-parse --verify "$rev^{commit}")
  toolchain=$(cd "$root" && rustc -V | cksum | cut -d' ' -f1)
  cached="$root/target/baseline/bin/$commit-$toolchain/gatehouse"
  if [ ! -x "$cached" ]; then
    bench_baseline_src=$(mktemp -d -t gatehouse-baseline.XXXXXX)
    rmdir "$bench_baseline_src"
    git -C "$root" worktree add --quiet --detach "$bench_baseline_src" "$commit"
    # The first time, start from a copy of the current tree's build
    # directory: the dependencies are the same unless Cargo.lock differs,
    # and the freshly checked-out sources are newer than every artifact of
    # Gatehouse's own, which is therefore built again.
    if [ ! -d "$root/target/baseline/release" ] && [ -d "$root/target/release" ]; then
      mkdir -p "$root/target/baseline"
      cp -a "$root/target/release" "$root/target/baseline/release"
    fi
    (cd "$bench_baseline_src" &&
      CARGO_TARGET_DIR="$root/target/baseline" cargo build --release --quiet --bin gatehouse)
    mkdir -p "$(dirname "$cached")"
    cp "$root/target/baseline/release/gatehouse" "$cached.tmp"
    mv "$cached.tmp" "$cached"
    bench_baseline_cleanup "$root"
  fi
  cp "$cached" "$out"
}

# bench_baseline_cleanup ROOT: removes the worktree of an interrupted
# bench_baseline_build, if any.
bench_baseline_cleanup() {
  if [ -n "${bench_baseline_src:-}" ]; then
    git -C "$1" worktree remove --force "$bench_baseline_src" 2>/dev/null || rm -rf "$bench_baseline_src"
    git -C "$1" worktree prune 2>/dev/null || true
    bench_baseline_src=
  fi
}

# Stops what a run started: the processes in the caller's `pids` array,
# its own line in /etc/hosts (`hosts_marker`) and a baseline worktree.
bench_stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if grep -q "$hosts_marker" /etc/hosts 2>/dev/null; then
    sed -i "/$hosts_marker/d" /etc/hosts
  fi
  bench_baseline_cleanup "$1"
}

say() { printf '%s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

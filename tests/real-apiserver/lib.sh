# What the checks against a real API server share. Sourced, not run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   check_start NAME TOOL...   # skip without an API server, need TOOLs,
#                              # make WORK; then define cleanup_objects
# Each check sets `cleanup_objects` (a function, may do nothing) for what it
# created in the cluster; it runs on exit unless KEEP=1.

# A line on standard error, named after the check and timed.
say() { echo "[$CHECK $(date +%H:%M:%S.%3N)] $*" >&2; }
pass() { say "PASS: $*"; }
die() { say "FAIL: $*"; exit 1; }

# A TCP (or, with -u, UDP) port on 127.0.0.1 that nothing listens on now.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    ss -Hln "${1:--t}" "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}

# check_start NAME TOOL...: exits 0 (skipped) when no API server answers
# as KUBECONFIG says, fails when a tool is missing, and makes the work
# directory WORK and the list PIDS of processes stopped on exit.
check_start() {
  CHECK=$1
  shift
  if ! kubectl get --raw /readyz >/dev/null 2>&1; then
    say "skipped: no API server reachable (set KUBECONFIG to an administrator's kubeconfig)"
    exit 0
  fi
  local tool
  for tool in ss "$@"; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-${CHECK%.sh}-check.XXXXXX")
  PIDS=()
  trap check_cleanup EXIT
}

# The gatehouse binary: GATEHOUSE, else this tree's debug build, built
# when absent.
gatehouse_binary() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  GATEHOUSE=${GATEHOUSE:-$repo/target/debug/gatehouse}
  [[ -x "$GATEHOUSE" ]] || (cd "$repo" && cargo build --quiet --bin gatehouse)
}

# serviceaccount_kubeconfig NAMESPACE NAME FILE: a kubeconfig at FILE for
# the API server of KUBECONFIG with a token of ServiceAccount
# NAMESPACE/NAME and nothing more, checked to authenticate as it.
serviceaccount_kubeconfig() {
  local ns=$1 name=$2 file=$3 server ca_data token whoami
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca_data=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kubectl -n "$ns" create token "$name" --duration=1h)
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: check
  cluster: {server: "$server", certificate-authority-data: "$ca_data"}
users:
- name: gatehouse
  user: {token: "$token"}
contexts:
- name: gatehouse
  context: {cluster: check, user: gatehouse}
current-context: gatehouse
EOF
  whoami=$(KUBECONFIG="$file" kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
  [[ "$whoami" == "system:serviceaccount:$ns:$name" ]] \
    || die "the token authenticates as '$whoami', not system:serviceaccount:$ns:$name"
}

# class_and_service CLASS CONTROLLER NAMESPACE: the IngressClass CLASS of
# controller CONTROLLER, and the Service web (port 80, no endpoints) in
# NAMESPACE, for the Ingresses a check sends for review.
class_and_service() {
  kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: $1}
spec: {controller: $2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $3}
spec:
  ports: [{port: 80}]
EOF
}

# ingress_of NAMESPACE NAME CLASS [ANNOTATIONS]: an Ingress of CLASS for
# host NAME.test to the Service web (port 80); ANNOTATIONS are the entries
# of a flow-style map.
ingress_of() {
  cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $2
  namespace: $1
  annotations: {${4:-}}
spec:
  ingressClassName: $3
  rules:
  - host: $2.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
EOF
}

# refused_by_webhook NAMESPACE NAME CLASS: whether the API server refuses
# an Ingress with a bad proxy-body-size with Gatehouse's reason
# (kubectl's output in $WORK/NAME.txt).
refused_by_webhook() {
  ingress_of "$1" "$2" "$3" '"nginx.ingress.kubernetes.io/proxy-body-size": "lots"' \
    | kubectl apply -f - >"$WORK/$2.txt" 2>&1 && return 1
  grep -q "proxy-body-size" "$WORK/$2.txt"
}

# until_refusing NAMESPACE CLASS: up to 10 s for the API server to call
# the webhook (it reads a changed configuration in its own time).
until_refusing() {
  for _ in $(seq 50); do
    refused_by_webhook "$1" probe "$2" && return 0
    sleep 0.2
  done
  return 1
}

# bundle_is_secret_ca SECRET_NAMESPACE SECRET CONFIGURATION: whether the
# Secret's ca.crt is every webhook's caBundle in the configuration.
bundle_is_secret_ca() {
  local want
  want=$(kubectl -n "$1" get secret "$2" -o json 2>/dev/null | jq -r '.data["ca.crt"] // empty')
  [[ -n "$want" ]] && kubectl get validatingwebhookconfiguration "$3" -o json \
    | jq -e --arg ca "$want" '[.webhooks[].clientConfig.caBundle] | all(. == $ca)' >/dev/null
}

# wait_for_bundle SECRET_NAMESPACE SECRET CONFIGURATION: up to 30 s for
# bundle_is_secret_ca; its status.
wait_for_bundle() {
  for _ in $(seq 150); do
    bundle_is_secret_ca "$@" && return 0
    sleep 0.2
  done
  bundle_is_secret_ca "$@"
}

cleanup_objects() { :; }

check_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP:-0}" == 1 ]]; then
    say "work directory and objects kept: $WORK"
  else
    cleanup_objects
    rm -rf "$WORK"
  fi
}

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

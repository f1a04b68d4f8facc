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

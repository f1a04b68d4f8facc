#!/usr/bin/env bash
# The validating admission webhook behind a real kube-apiserver.
#
# What the HTTPS tests of the suite cannot show: that the API server
# accepts deploy/admission's ValidatingWebhookConfiguration (its CEL
# matchConditions included), sends Gatehouse the reviews of our class and
# not the others, and that kubectl shows Gatehouse's refusal and warnings;
# and that with Gatehouse stopped, failurePolicy Fail holds for our class
# while other classes are untouched.
#
# Usage:  KUBECONFIG=ADMIN_KUBECONFIG tests/real-apiserver/admission.sh
#
# Needs: an API server that KUBECONFIG reaches as an administrator, on the
# same host (it calls the webhook at https://127.0.0.1), kubectl, jq, curl,
# openssl and ss. Skipped, with exit status 0, when no API server answers.
#
# It registers deploy/admission's webhook configuration by URL (renamed
# gatehouse-admission-check, class gatehouse-admission-check) with a CA
# made here, runs Gatehouse (GATEHOUSE, default target/debug/gatehouse,
# built when absent) with the webhook on a loopback port, and applies
# Ingresses in namespace gatehouse-admission-check. Exits non-zero on the
# first check that fails; removes what it created.
#
# Environment (optional):
#   GATEHOUSE   the gatehouse binary
#   KEEP=1      leave the work directory (logs) and the objects in place
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=gatehouse-admission-check
CLASS=gatehouse-admission-check
CONFIG=gatehouse-admission-check

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check_start admission.sh jq curl openssl
cleanup_objects() {
  kubectl delete validatingwebhookconfiguration "$CONFIG" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete ingress --all -n "$NS" >/dev/null 2>&1 || true
  kubectl delete ingressclass "$CLASS" --ignore-not-found >/dev/null 2>&1 || true
}

# A CA and the webhook's serving certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=gatehouse admission check CA" -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 1 -extfile "$WORK/san.ext" -out "$WORK/tls.crt" 2>/dev/null

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
class_and_service "$CLASS" gatehouse.dev/admission-check "$NS"

gatehouse_binary
WEBHOOK=$(free_port)
start_gatehouse() {
  METRICS=$(free_port)
  POD_NAME=gatehouse-admission-check POD_NAMESPACE=$NS RUST_LOG=info \
    "$GATEHOUSE" --kubeconfig "$KUBECONFIG" --watch-namespace "$NS" \
    --ingress-class "$CLASS" --controller-class gatehouse.dev/admission-check \
    --election-id gatehouse-admission-check \
    --http-addr "127.0.0.1:$(free_port)" --https-addr "127.0.0.1:$(free_port)" \
    --metrics-addr "127.0.0.1:$METRICS" --access-log off \
    --validating-webhook "127.0.0.1:$WEBHOOK" \
    --validating-webhook-certificate "$WORK/tls.crt" --validating-webhook-key "$WORK/tls.key" \
    >"$WORK/gatehouse.log" 2>&1 &
  GATEHOUSE_PID=$!
  PIDS+=("$GATEHOUSE_PID")
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null && return
    sleep 0.1
  done
  die "Gatehouse is not ready: $(tail -20 "$WORK/gatehouse.log")"
}
start_gatehouse

# deploy/admission's configuration, by URL with our CA, for our class.
CA_BUNDLE=$(base64 -w0 <"$WORK/ca.crt")
kubectl create --dry-run=client -o json -f "$REPO/deploy/admission/webhook.yaml" >"$WORK/webhook.json"
jq --arg name "$CONFIG" --arg url "https://127.0.0.1:$WEBHOOK" --arg ca "$CA_BUNDLE" --arg class "$CLASS" '
  .metadata = {name: $name}
  | .webhooks |= map(
      .clientConfig = {url: ($url + .clientConfig.service.path), caBundle: $ca}
      | if .matchConditions then .matchConditions |= map(.expression |= gsub("'"'"'gatehouse'"'"'"; "'"'"'" + $class + "'"'"'")) else . end
      | .namespaceSelector = {matchLabels: {"kubernetes.io/metadata.name": "'"$NS"'"}})
' "$WORK/webhook.json" >"$WORK/webhook-check.json"
kubectl apply -f "$WORK/webhook-check.json" >/dev/null || die "the API server refused the webhook configuration"
pass "the API server accepts deploy/admission's ValidatingWebhookConfiguration, matchConditions included"

# How many reviews Gatehouse has judged.
reviews() {
  curl -sf "http://127.0.0.1:$METRICS/metrics" \
    | awk '/^gatehouse_admission_reviews_total/ { n += $NF } END { print n + 0 }'
}

ingress() { # name class [annotation-line] [service]
  cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $1
  namespace: $NS
  annotations: {${3:-}}
spec:
  ingressClassName: $2
  rules:
  - host: $1.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ${4:-web}, port: {number: 80}}}}
EOF
}

# The API server may take a moment to use a new configuration.
for _ in $(seq 50); do
  if ! ingress probe "$CLASS" '"nginx.ingress.kubernetes.io/proxy-body-size": "lots"' \
      | kubectl apply --dry-run=server -f - >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done

ingress good "$CLASS" | kubectl apply -f - >"$WORK/good.txt" 2>&1 \
  || die "a good Ingress was refused: $(cat "$WORK/good.txt")"
pass "a good Ingress is stored"

if ingress bad "$CLASS" '"nginx.ingress.kubernetes.io/proxy-body-size": "lots"' \
    | kubectl apply -f - >"$WORK/bad.txt" 2>&1; then
  die "an Ingress with an unparsable value was stored"
fi
grep -q "proxy-body-size" "$WORK/bad.txt" || die "kubectl did not show Gatehouse's reason: $(cat "$WORK/bad.txt")"
grep -q "$NS/bad" "$WORK/bad.txt" || die "the refusal does not name the Ingress: $(cat "$WORK/bad.txt")"
pass "kubectl apply of a bad Ingress fails with Gatehouse's message: $(tr '\n' ' ' <"$WORK/bad.txt")"

if ingress evil "$CLASS" '"nginx.ingress.kubernetes.io/configuration-snippet": "load_module /tmp/evil.so;"' \
    | kubectl apply -f - >"$WORK/evil.txt" 2>&1; then
  die "an Ingress with an IngressNightmare snippet was stored"
fi
grep -q "configuration-snippet" "$WORK/evil.txt" || die "no reason: $(cat "$WORK/evil.txt")"
pass "an IngressNightmare snippet is refused"

ingress later "$CLASS" "" not-yet | kubectl apply -f - >"$WORK/warned.txt" 2>&1 \
  || die "an Ingress to a missing Service was refused: $(cat "$WORK/warned.txt")"
grep -q "^Warning:.*not-yet" "$WORK/warned.txt" || die "no warning reached kubectl: $(cat "$WORK/warned.txt")"
pass "a warning reaches kubectl: $(grep '^Warning' "$WORK/warned.txt" | head -1)"

before=$(reviews)
ingress theirs other-class '"nginx.ingress.kubernetes.io/proxy-body-size": "lots"' \
  | kubectl apply -f - >"$WORK/theirs.txt" 2>&1 \
  || die "an Ingress of another class was refused: $(cat "$WORK/theirs.txt")"
[[ "$(reviews)" == "$before" ]] || die "an Ingress of another class was sent for review ($before, then $(reviews) reviews)"
(( before > 0 )) || die "no review was counted"
pass "an Ingress of another class is not sent (matchConditions: $before reviews before and after) and is stored"

kill "$GATEHOUSE_PID"; wait "$GATEHOUSE_PID" 2>/dev/null || true
if ingress stopped "$CLASS" | kubectl apply -f - >"$WORK/stopped.txt" 2>&1; then
  die "with Gatehouse stopped an Ingress of its class was stored (failurePolicy Fail)"
fi
grep -q "failed calling webhook" "$WORK/stopped.txt" || die "unexpected: $(cat "$WORK/stopped.txt")"
pass "with Gatehouse stopped, failurePolicy Fail refuses an Ingress of its class"
ingress theirs-too other-class | kubectl apply -f - >/dev/null 2>&1 \
  || die "with Gatehouse stopped an Ingress of another class was refused"
pass "with Gatehouse stopped, other classes are untouched"
say "all checks passed"

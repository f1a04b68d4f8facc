#!/usr/bin/env bash
# ACME issuance against a real kube-apiserver, with deploy/base's RBAC.
#
# What the fake API server of the test suite cannot show: that the real API
# server accepts what Gatehouse writes (the Secrets with their
# resourceVersion preconditions, the AcmeIssuer status through its status
# subresource, the Events), that the CRD's schema keeps every field, and
# that deploy/base/rbac.yaml allows exactly what is needed.
#
# Usage:  KUBECONFIG=ADMIN_KUBECONFIG tests/real-apiserver/acme.sh
#
# Needs: an API server that KUBECONFIG reaches as an administrator (no
# controller-manager or nodes needed), kubectl, jq, curl, openssl, and
# pebble + pebble-challtestsrv (Debian package `pebble`). Skipped, with
# exit status 0, when no API server answers.
#
# It applies deploy/base, runs Gatehouse (GATEHOUSE, default
# target/debug/gatehouse, built when absent) as the ServiceAccount
# gatehouse/gatehouse with a token from `kubectl create token`, runs pebble
# against Gatehouse's listeners on 127.0.0.1, and asks for two certificates:
# one into a new Secret (create) and one into an existing kubernetes.io/tls
# Secret holding a certificate for fewer names (replace). Exits non-zero on
# the first check that fails.
#
# Environment (optional):
#   GATEHOUSE   the gatehouse binary
#   AUDIT_LOG   the API server's audit log (JSON lines): the requests of
#               the ServiceAccount are listed and any refusal (403) fails
#   KEEP=1      leave the work directory (logs, certificates) in place
#   TIMEOUT     seconds to wait for each certificate (default 120)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=gatehouse-acme-check
ISSUER=gatehouse-acme-check
TIMEOUT=${TIMEOUT:-120}
SA_USER=system:serviceaccount:gatehouse:gatehouse

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
now_ms() { date +%s%3N; }
failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
check_start acme.sh jq curl openssl pebble pebble-challtestsrv

# ----------------------------------------------------------------- deploy
say "applying deploy/base"
kubectl apply -k "$REPO/deploy/base" >/dev/null
kubectl wait --for=condition=Established crd/acmeissuers.gatehouse.dev --timeout=30s >/dev/null

crd=$(kubectl get crd acmeissuers.gatehouse.dev -o json)
if [[ $(jq -c '.spec.versions[] | select(.storage) | .subresources.status' <<<"$crd") == "{}" ]]; then
  pass "the AcmeIssuer CRD serves the status subresource"
else
  fail "the AcmeIssuer CRD has no status subresource: replace_status cannot work"
fi

# Leftovers of an earlier run (namespaces are never finalized without a
# controller-manager, so the test namespace is kept and emptied).
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" delete ingress --all --wait=false >/dev/null
kubectl -n "$NS" delete secret --all >/dev/null
kubectl delete acmeissuer "$ISSUER" --ignore-not-found >/dev/null
kubectl -n gatehouse delete secret "$ISSUER-account" gatehouse-acme-challenges \
  gatehouse-acme-orders --ignore-not-found >/dev/null

# Gatehouse's own identity: the ServiceAccount's token, nothing more.
serviceaccount_kubeconfig gatehouse gatehouse "$WORK/gatehouse.kubeconfig"
pass "Gatehouse authenticates as $SA_USER"

# ------------------------------------------------------------------ pebble
HTTP=$(free_port); HTTPS=$(free_port); METRICS=$(free_port)
ACME=$(free_port); MGMT=$(free_port); CHALL_MGMT=$(free_port); DNS=$(free_port -u)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=pebble HTTPS check CA" -keyout "$WORK/https-ca.key" -out "$WORK/https-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/https.key" -out "$WORK/https.csr" 2>/dev/null
openssl x509 -req -in "$WORK/https.csr" -CA "$WORK/https-ca.pem" -CAkey "$WORK/https-ca.key" \
  -CAcreateserial -days 1 -out "$WORK/https.pem" \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') 2>/dev/null
jq -n --arg dir "$WORK" --argjson acme "$ACME" --argjson mgmt "$MGMT" \
  --argjson http "$HTTP" --argjson https "$HTTPS" '{pebble: {
    listenAddress: "127.0.0.1:\($acme)", managementListenAddress: "127.0.0.1:\($mgmt)",
    certificate: "\($dir)/https.pem", privateKey: "\($dir)/https.key",
    httpPort: $http, tlsPort: $https, ocspResponderURL: "",
    externalAccountBindingRequired: false}}' >"$WORK/pebble.json"

pebble-challtestsrv -dns01 "127.0.0.1:$DNS" -http01 "" -https01 "" -tlsalpn01 "" \
  -management "127.0.0.1:$CHALL_MGMT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
  >"$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 pebble -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$DNS" -strict=false \
  >"$WORK/pebble.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  curl -sf --cacert "$WORK/https-ca.pem" "https://127.0.0.1:$MGMT/roots/0" -o "$WORK/root.pem" && break
  sleep 0.1
done
[[ -s "$WORK/root.pem" ]] || die "pebble did not start: $(cat "$WORK/pebble.log")"
say "pebble: directory https://127.0.0.1:$ACME/dir, validating on $HTTP and $HTTPS"

# ---------------------------------------------------------------- Gatehouse
gatehouse_binary
# The arguments and environment of deploy/deployment, on loopback ports.
POD_NAME=gatehouse-acme-check POD_NAMESPACE=gatehouse RUST_LOG=info,gatehouse=debug \
  "$GATEHOUSE" --kubeconfig "$WORK/gatehouse.kubeconfig" \
  --publish-service=gatehouse/gatehouse --configmap=gatehouse/gatehouse \
  --http-addr "127.0.0.1:$HTTP" --https-addr "127.0.0.1:$HTTPS" \
  --metrics-addr "127.0.0.1:$METRICS" --access-log off \
  >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$METRICS/readyz" >/dev/null || die "Gatehouse is not ready: $(tail -20 "$WORK/gatehouse.log")"
for _ in $(seq 100); do
  grep -q "became leader" "$WORK/gatehouse.log" && break
  sleep 0.2
done
grep -q "became leader" "$WORK/gatehouse.log" || die "Gatehouse did not take the Lease: $(tail -20 "$WORK/gatehouse.log")"
pass "Gatehouse is ready and leads (Lease gatehouse/gatehouse-leader)"

# ---------------------------------------------------------------- objects
ca_bundle=$(base64 -w0 "$WORK/https-ca.pem")
kubectl apply -f - >/dev/null <<EOF
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {name: $ISSUER}
spec:
  server: https://127.0.0.1:$ACME/dir
  email: ops@acme-check.test
  privateKeySecretRef: {name: $ISSUER-account}
  challenge: http-01
  caBundle: $ca_bundle
EOF
kept=$(kubectl get acmeissuer "$ISSUER" -o jsonpath='{.spec.caBundle}')
if [[ "$kept" == "$ca_bundle" ]]; then pass "the CRD keeps spec.caBundle"; else fail "the CRD dropped or changed spec.caBundle"; fi

# A Service without endpoints: the routes answer 503; the handshake is what counts.
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
EOF

# An Ingress asking for a certificate into Secret $2, for hosts $3...
ingress() {
  local name=$1 secret=$2; shift 2
  local hosts rules="" h
  hosts=$(printf '%s, ' "$@"); hosts="[${hosts%, }]"
  for h in "$@"; do
    rules+="  - host: $h
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"
  done
  cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $name
  namespace: $NS
  annotations: {gatehouse.dev/acme-issuer: $ISSUER}
spec:
  ingressClassName: gatehouse
  tls:
  - hosts: $hosts
    secretName: $secret
  rules:
$rules
EOF
}

# Stamps (ms) every version of Secret $1 the API server sends a watch, with
# its acme-issuer annotation, into $WORK/$1.watch; the watch's PID in $watcher.
watch_secret() {
  kubectl -n "$NS" get secrets --field-selector "metadata.name=$1" --watch \
      -o jsonpath='{.metadata.annotations.gatehouse\.dev/acme-issuer}{"\n"}' 2>/dev/null \
    > >(while IFS= read -r line; do echo "$(now_ms) $line"; done >"$WORK/$1.watch") &
  watcher=$!
}

# Waits until a handshake for host $1 that trusts only pebble's root
# succeeds; prints its time (ms since epoch), or `none`.
await_handshake() {
  local deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  while (( $(now_ms) < deadline )); do
    if curl -s -o /dev/null --max-time 2 --cacert "$WORK/root.pem" \
        --resolve "$1:$HTTPS:127.0.0.1" "https://$1:$HTTPS/"; then
      now_ms; return
    fi
    sleep 0.05
  done
  echo none
}

# The served certificate for $1: its SANs and issuer, as a trusting client sees it.
served() {
  openssl s_client -connect "127.0.0.1:$HTTPS" -servername "$1" -CAfile "$WORK/root.pem" \
    -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName -issuer 2>/dev/null
}

check_secret() {
  local secret=$1; shift
  local json names
  json=$(kubectl -n "$NS" get secret "$secret" -o json)
  [[ $(jq -r .type <<<"$json") == kubernetes.io/tls ]] && pass "Secret $NS/$secret has type kubernetes.io/tls" \
    || fail "Secret $NS/$secret has type $(jq -r .type <<<"$json")"
  [[ $(jq -r '.metadata.annotations["gatehouse.dev/acme-issuer"]' <<<"$json") == "$ISSUER" ]] \
    && pass "Secret $NS/$secret is annotated gatehouse.dev/acme-issuer: $ISSUER" \
    || fail "Secret $NS/$secret lacks the gatehouse.dev/acme-issuer annotation"
  names=$(jq -r '.data["tls.crt"]' <<<"$json" | base64 -d | openssl x509 -noout -ext subjectAltName | tail -n +2)
  for host in "$@"; do
    grep -q "DNS:$host\(,\|$\)" <<<"$names" && pass "the certificate in $NS/$secret names $host" \
      || fail "the certificate in $NS/$secret does not name $host ($names)"
  done
  jq -r '.data["tls.crt"]' <<<"$json" | base64 -d >"$WORK/$secret.crt"
  openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/$secret.crt" "$WORK/$secret.crt" >/dev/null 2>&1 \
    && pass "the certificate in $NS/$secret chains to pebble's root" \
    || fail "the certificate in $NS/$secret does not chain to pebble's root"
}

# Ingress $1 into Secret $2 for hosts $3...: timed, then checked.
issue() {
  local name=$1 secret=$2; shift 2
  local t0 applied handshake written watcher uid
  ingress "$name" "$secret" "$@" >"$WORK/$name.yaml"
  watch_secret "$secret"
  sleep 1  # the watch is open
  t0=$(now_ms)
  kubectl apply -f "$WORK/$name.yaml" >/dev/null
  applied=$(now_ms)
  say "Ingress $NS/$name applied ($((applied - t0)) ms in kubectl apply); waiting for a trusted handshake for $1"
  handshake=$(await_handshake "$1")
  sleep 1
  kill "$watcher" 2>/dev/null || true
  written=$(awk -v issuer="$ISSUER" '$2 == issuer {print $1; exit}' "$WORK/$secret.watch")
  if [[ -z "$written" ]]; then
    fail "no certificate in Secret $NS/$secret within ${TIMEOUT}s"; return
  fi
  say "timing $NS/$name from the start of kubectl apply: Secret written (watch event) after" \
    "$((written - t0)) ms, first trusted handshake after" \
    "$([[ $handshake == none ]] && echo never || echo "$((handshake - t0)) ms")"
  [[ "$handshake" != none ]] && pass "a client trusting only pebble's root completes a handshake for $1" \
    || fail "no trusted handshake for $1 within ${TIMEOUT}s"
  check_secret "$secret" "$@"
  for host in "$@"; do
    served "$host" | grep -q "DNS:$host\(,\|$\)" && pass "Gatehouse serves the issued certificate for $host by SNI" \
      || fail "Gatehouse does not serve a trusted certificate naming $host"
  done
  uid=$(kubectl -n "$NS" get ingress "$name" -o jsonpath='{.metadata.uid}')
  for _ in $(seq 50); do
    kubectl -n "$NS" get events --field-selector "involvedObject.uid=$uid,reason=CertificateIssued" \
      -o name | grep -q . && break
    sleep 0.2
  done
  if kubectl get events -A --field-selector "involvedObject.uid=$uid,reason=CertificateIssued" -o name | grep -q .; then
    pass "Event CertificateIssued on Ingress $NS/$name"
  else
    fail "no Event CertificateIssued on Ingress $NS/$name"
  fi
}

issue shop shop-tls shop.acme-check.test www.shop.acme-check.test

# An existing kubernetes.io/tls Secret, with a self-signed certificate for
# one name and a key of its own: replaced at its resourceVersion, keeping
# its type and other keys.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=blog.acme-check.test" -addext "subjectAltName=DNS:blog.acme-check.test" \
  -keyout "$WORK/old.key" -out "$WORK/old.crt" 2>/dev/null
kubectl -n "$NS" create secret tls blog-tls --cert "$WORK/old.crt" --key "$WORK/old.key" \
  --dry-run=client -o json | jq '.data["ca.crt"] = "b2xk"' | kubectl apply -f - >/dev/null
issue blog blog-tls blog.acme-check.test www.blog.acme-check.test
[[ $(kubectl -n "$NS" get secret blog-tls -o jsonpath='{.data.ca\.crt}') == b2xk ]] \
  && pass "replacing Secret $NS/blog-tls kept its other keys" \
  || fail "replacing Secret $NS/blog-tls lost its key ca.crt"

# An Ingress re-created over a Secret that already holds its certificate
# places no order and leaves the Secret as it is.
acme_state() {  # the /debug/certs state of host $1's certificate, or nothing
  curl -s "http://127.0.0.1:$METRICS/debug/certs" | jq -r --arg h "$1" '.[$h].acme.state // empty'
}
placed() {
  curl -s "http://127.0.0.1:$METRICS/metrics" \
    | sed -n "s/^gatehouse_acme_orders_total{issuer=\"$ISSUER\",event=\"placed\"} //p"
}
before=$(placed)
version=$(kubectl -n "$NS" get secret shop-tls -o jsonpath='{.metadata.resourceVersion}')
kubectl -n "$NS" delete ingress shop >/dev/null
for _ in $(seq 100); do [[ -z $(acme_state shop.acme-check.test) ]] && break; sleep 0.1; done
kubectl apply -f "$WORK/shop.yaml" >/dev/null
for _ in $(seq 100); do [[ $(acme_state shop.acme-check.test) == valid ]] && break; sleep 0.1; done
if [[ $(acme_state shop.acme-check.test) == valid && $(placed) == "$before" \
      && $(kubectl -n "$NS" get secret shop-tls -o jsonpath='{.metadata.resourceVersion}') == "$version" ]]; then
  pass "a re-created Ingress whose Secret holds its certificate places no order"
else
  fail "the re-created Ingress shop: state '$(acme_state shop.acme-check.test)', orders placed $before -> $(placed)"
fi

# ------------------------------------------------------------ issuer status
status=$(kubectl get acmeissuer "$ISSUER" -o json | jq -c '.status.conditions[]? | select(.type == "Ready")')
if [[ $(jq -r .status <<<"$status") == True ]]; then
  pass "AcmeIssuer $ISSUER is Ready=True ($(jq -r '.reason + ": " + .message' <<<"$status"))"
else
  fail "AcmeIssuer $ISSUER Ready condition: ${status:-absent}"
fi
for field in lastTransitionTime reason message observedGeneration; do
  [[ $(jq -r ".$field // empty" <<<"$status") != "" ]] || fail "the Ready condition lost $field"
done

# ----------------------------------------------------------------- refusals
if grep -i "forbidden" "$WORK/gatehouse.log" >"$WORK/forbidden.log"; then
  fail "Gatehouse's log shows refusals:"; cat "$WORK/forbidden.log" >&2
else
  pass "no 'forbidden' in Gatehouse's log"
fi
if grep -E "WARN|ERROR" "$WORK/gatehouse.log" >"$WORK/warnings.log"; then
  say "Gatehouse's warnings and errors (for reading; not a failure by themselves):"
  cat "$WORK/warnings.log" >&2
fi
if [[ -n "${AUDIT_LOG:-}" ]]; then
  mine=$(jq -c --arg user "$SA_USER" --arg since "$started" 'select(.user.username == $user
      and .stageTimestamp >= $since)' "$AUDIT_LOG")
  say "requests of $SA_USER since $started, by verb, resource and answer:"
  jq -r '[.verb, (.objectRef.apiGroup // "core") + "/" + .objectRef.resource
      + (if .objectRef.subresource then "/" + .objectRef.subresource else "" end),
      (.responseStatus.code | tostring)] | join(" ")' <<<"$mine" | sort | uniq -c >&2
  if jq -e 'select(.responseStatus.code == 403)' <<<"$mine" >/dev/null; then
    fail "the API server refused requests of $SA_USER (403):"
    jq -c 'select(.responseStatus.code == 403) | [.verb, .requestURI]' <<<"$mine" >&2
  else
    pass "the audit log shows no refusal (403) of $SA_USER"
  fi
fi

if (( failures > 0 )); then
  say "$failures check(s) failed; Gatehouse's log: $WORK/gatehouse.log"
  KEEP=1
  exit 1
fi
say "all checks passed"

#!/usr/bin/env bash
# Runs the demo with no cluster: the demo backend on 127.0.0.1:9080 and
# Gatehouse serving the manifests of this folder (or of the folder given as
# the first argument) on 127.0.0.1:8080 (HTTP), 127.0.0.1:8443 (HTTPS) and
# 127.0.0.1:10254 (health). Ctrl-C stops both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
manifests=$(cd "${1:-$here}" && pwd)
cd "$here/../.."
cargo build --profile demo --features demo --bin gatehouse --bin demo-backend
target/demo/demo-backend 127.0.0.1:9080 &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
target/demo/gatehouse --manifests "$manifests" \
  --http-addr 127.0.0.1:8080 --https-addr 127.0.0.1:8443 --metrics-addr 127.0.0.1:10254

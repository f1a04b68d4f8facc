#!/usr/bin/env bash
# Runs the Gateway API demo with no cluster: the Ingress demo's runner on
# the Gateway and HTTPRoutes of this folder, on the same ports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../demo/run.sh" "$here"

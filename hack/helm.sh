#!/usr/bin/env bash
# Provides helm for the chart tests and `make manifests`, and prints ONLY the path of the
# binary on stdout. Logs go to stderr.
#
#   hack/helm.sh      helm 4 (the default)
#   hack/helm.sh 3    helm 3 (the chart is linted and rendered with both)
#
# 1. HELM (helm 4) / HELM3 set to an executable: print it.
# 2. A cached build: print it.
# 3. Otherwise `go install` it from the Go module proxy into the cache, outside the repo
#    (about 2 minutes per version on 2 cores):
#      ${NFSGUARD_HELM_CACHE:-~/.cache/nfsguard/helm}/v<version>/helm
set -euo pipefail

log() { echo "helm: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

major=${1:-4}
case "$major" in
  4) version=v4.3.2 module=helm.sh/helm/v4/cmd/helm preset=${HELM:-} ;;
  3) version=v3.21.4 module=helm.sh/helm/v3/cmd/helm preset=${HELM3:-} ;;
  *) die "usage: $0 [3|4]" ;;
esac

if [ -n "$preset" ]; then
  [ -x "$preset" ] || die "$preset is not an executable"
  echo "$preset"
  exit 0
fi

cache=${NFSGUARD_HELM_CACHE:-$HOME/.cache/nfsguard/helm}/$version
if [ -x "$cache/helm" ]; then
  echo "$cache/helm"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is needed to build helm $version (or set HELM/HELM3)"
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building $module@$version from the Go module proxy (once; cached in $cache)"
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
  "$module@$version" >&2
"$tmp/helm" version --short >&2 || die "the built helm does not run"
mv "$tmp/helm" "$cache/helm"  # atomic within the cache: a concurrent run sees all or nothing
echo "$cache/helm"

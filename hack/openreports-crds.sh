#!/usr/bin/env bash
# Provides the OpenReports CRDs (openreports.io/v1alpha1 Report and ClusterReport) for
# tests/e2e and prints ONLY the directory holding them on stdout. Logs go to stderr.
#
# The CRDs ship in the Go module github.com/openreports/reports-api (config/crd/); it is
# downloaded through the Go module proxy (checksummed by sum.golang.org) into Go's module
# cache, outside the repo, and never copied into the repo.
#
#   NFSGUARD_OPENREPORTS_VERSION  the module version (default v0.2.1)
#   NFSGUARD_OPENREPORTS_CRDS     a directory already holding the CRDs: printed as is
set -euo pipefail

log() { echo "openreports-crds: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

MODULE=github.com/openreports/reports-api
VERSION=${NFSGUARD_OPENREPORTS_VERSION:-v0.2.1}
# ClusterReport (PVs, StorageClasses) and Report (namespaced: Pods and workloads)
CRDS="openreports.io_clusterreports.yaml openreports.io_reports.yaml"

if [ -n "${NFSGUARD_OPENREPORTS_CRDS:-}" ]; then
  for crd in $CRDS; do
    [ -f "$NFSGUARD_OPENREPORTS_CRDS/$crd" ] || die "$NFSGUARD_OPENREPORTS_CRDS lacks $crd"
  done
  echo "$NFSGUARD_OPENREPORTS_CRDS"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "Go is needed to download $MODULE@$VERSION from the module proxy"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
# `go mod download` of a module path needs no go.mod; run it outside any module.
cd "${TMPDIR:-/tmp}"
json=$(go mod download -json "$MODULE@$VERSION") || die "go mod download $MODULE@$VERSION failed"
dir=$(printf '%s\n' "$json" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -n "$dir" ] || die "go mod download $MODULE@$VERSION named no directory"
for crd in $CRDS; do
  [ -f "$dir/config/crd/$crd" ] || die "$MODULE@$VERSION has no config/crd/$crd"
done
log "using $MODULE@$VERSION from $dir"
echo "$dir/config/crd"

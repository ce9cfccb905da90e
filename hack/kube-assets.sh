#!/usr/bin/env bash
# Provides kube-apiserver + etcd (+ kubectl) for tests/e2e and prints ONLY the directory
# holding them on stdout (envtest's KUBEBUILDER_ASSETS convention). Logs go to stderr.
#
#   hack/kube-assets.sh          etcd, kube-apiserver (+ kubectl): the apiserver-only harness
#   hack/kube-assets.sh --node   also kubelet, kube-controller-manager, kube-scheduler and
#                                kube-proxy of the same release, into the same directory, for
#                                the real node (tests/node); only what is missing is built
#
#   1. KUBEBUILDER_ASSETS set and holding etcd + kube-apiserver: print it, done (no Go needed).
#   2. A cached build for the pinned release (hack/kube-version): print it, done.
#   3. Otherwise build them from the Go module proxy into the cache (10-20+ min cold on
#      2 cores), outside the repo:
#        ${NFSGUARD_ASSETS_CACHE:-~/.cache/nfsguard/kube-assets/v<version>}
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every staging module at
# v0.0.0 with `replace => ./staging/...`, and replaces are ignored for a dependency. A
# throw-away wrapper module replaces each staging module with its published v0.<minor>.<patch>
# tag (golang/go#35878; kubernetes/cloud-provider-aws hack/update-kubernetes-deps.sh).
set -euo pipefail

log() { echo "kube-assets: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node=0
case "${1:-}" in
  "") ;;
  --node) node=1 ;;
  *) die "usage: $0 [--node]" ;;
esac
NODE_BINARIES="kubelet kube-controller-manager kube-scheduler kube-proxy"

have_assets() {
  [ -x "$1/etcd" ] && [ -x "$1/kube-apiserver" ] || return 1
  [ "$node" = 0 ] && return 0
  local b
  for b in $NODE_BINARIES kubectl; do [ -x "$1/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if have_assets "$KUBEBUILDER_ASSETS"; then
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks some binaries; falling back to a build"
fi

here=$(cd "$(dirname "$0")" && pwd)
K8S=$(tr -d ' \t\r\n' < "$here/kube-version")
[[ "$K8S" =~ ^1\.([0-9]+)\.([0-9]+)$ ]] || die "hack/kube-version must hold X.Y.Z, got '$K8S'"
MINOR=${BASH_REMATCH[1]}
OUT=${NFSGUARD_ASSETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfsguard/kube-assets/v$K8S}

if have_assets "$OUT"; then
  log "reusing cached Kubernetes v$K8S assets in $OUT"
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "Go is needed to build kube-apiserver/etcd (or set KUBEBUILDER_ASSETS)"
export GOTOOLCHAIN=local CGO_ENABLED=0
# -mod=mod lets the wrapper module's go.sum be filled in as it builds; -buildvcs=false since
# the wrapper is not a VCS checkout. Module and build caches stay in Go's default locations.
export GOFLAGS="-mod=mod -buildvcs=false"

mkdir -p "$OUT"
# One build at a time per cache directory.
exec 9>"$OUT/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if have_assets "$OUT"; then
    log "another run finished the build; reusing $OUT"
    echo "$OUT"
    exit 0
  fi
fi

work="$OUT/.wrapper"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
start=$(date +%s)

log "building Kubernetes v$K8S ($(go version)) into $OUT"
MOD=$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$MOD" ] && [ -f "$MOD" ] || die "could not download k8s.io/kubernetes@v$K8S from the module proxy"

{ echo 'module local/kubeassets'; echo; sed -n '/^go /p;/^godebug /p' "$MOD"; } > go.mod
staging=$(sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' "$MOD")
[ -n "$staging" ] || die "no staging replaces found in $MOD"
for m in $staging; do
  go mod edit -replace="$m=$m@v0.$MINOR.${K8S##*.}"
done
log "resolving k8s.io/kubernetes@v$K8S with $(echo "$staging" | wc -w) staging replaces"
go get "k8s.io/kubernetes@v$K8S" >&2
# etcd's server module is already in the graph (k8s.io/apiserver requires it); make it explicit.
etcd_ver=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
log "etcd server module: $etcd_ver"

LDF="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1"
LDF="$LDF -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
tmp="$OUT/.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"

# build NAME PACKAGE [LDFLAGS]: only when $OUT lacks it; into $tmp, published below.
build() {
  local name=$1 pkg=$2 ldf=${3:-$LDF} t0
  [ -x "$OUT/$name" ] && return 0
  t0=$(date +%s)
  log "go build $name"
  go build -trimpath -ldflags "$ldf" -o "$tmp/$name" "$pkg" >&2
  log "$name built in $(( $(date +%s) - t0 )) s"
}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build etcd go.etcd.io/etcd/server/v3 "-s -w"
if [ "$node" = 1 ]; then
  # The real node drives kubectl (delete --grace-period=0, rollout restart): not optional.
  build kubectl k8s.io/kubernetes/cmd/kubectl
  for b in $NODE_BINARIES; do build "$b" "k8s.io/kubernetes/cmd/$b"; done
elif [ "${NFSGUARD_SKIP_KUBECTL:-}" != 1 ] && [ ! -x "$OUT/kubectl" ]; then
  log "kubectl is optional here (NFSGUARD_SKIP_KUBECTL=1 skips it)"
  build kubectl k8s.io/kubernetes/cmd/kubectl \
    || { log "kubectl build failed; continuing without it (the tests use the Python client)"; rm -f "$tmp/kubectl"; }
fi

for b in "$tmp"/*; do [ -f "$b" ] && "$b" --version >&2 || true; done
# Publish atomically-ish: kube-apiserver last, since have_assets() keys on it.
for b in kubectl etcd $NODE_BINARIES kube-apiserver; do
  [ -f "$tmp/$b" ] && mv -f "$tmp/$b" "$OUT/$b"
done
rm -rf "$tmp" "$work"
echo "v$K8S etcd=$etcd_ver built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start )) $(cd "$OUT" && ls | tr '\n' ' ')" >> "$OUT/BUILD-INFO"
log "done in $(( $(date +%s) - start )) s: $OUT"
echo "$OUT"

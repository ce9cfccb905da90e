#!/usr/bin/env bash
# Everything the real single-node cluster of tests/node needs, cached and idempotent; prints
# what it provides on stdout as key=value lines (logs go to stderr):
#   assets=<dir>       etcd, kube-apiserver, kubectl, kubelet, kube-controller-manager,
#                      kube-scheduler, kube-proxy of hack/kube-version (hack/kube-assets.sh --node:
#                      same release and cache as the apiserver-only harness)
#   cni_bin=<dir>      the CNI plugins (bridge, host-local, loopback)
#   pause=<tar>        the sandbox ("pause") image, a docker-archive for `ctr images import`
#   pause_ref=<ref>    its name, for containerd's sandbox_image
#
#   1. Debian packages: containerd (1.6), runc, containernetworking-plugins, iptables
#      (kube-proxy's iptables mode), nftables (teardown removes the tables iptables-nft
#      created). Installed only when missing; needs root.
#   2. The Kubernetes node binaries, built once from the Go module proxy.
#   3. The pause image: no registry is reachable here (registry.k8s.io/pause cannot be
#      pulled), so a tiny static Go program that sleeps until SIGTERM/SIGINT and reaps
#      orphans is packed as a one-layer image. Cached by the hash of its source and Go version:
#        ${NFSGUARD_NODE_CACHE:-~/.cache/nfsguard/node}/pause-<key>.tar
set -euo pipefail

log() { echo "node-deps: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${NFSGUARD_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfsguard/node}
CNI_BIN=/usr/lib/cni

[ "$(id -u)" = 0 ] || die "run as root (containerd, kubelet, bridges and iptables need it)"

# ---- 1. Debian packages -------------------------------------------------------------------
need=()
for tool in containerd ctr; do command -v "$tool" >/dev/null 2>&1 || need+=(containerd); done
command -v runc >/dev/null 2>&1 || need+=(runc)
for p in bridge host-local loopback; do
  [ -x "$CNI_BIN/$p" ] || need+=(containernetworking-plugins)
done
for tool in iptables iptables-save iptables-restore; do
  command -v "$tool" >/dev/null 2>&1 || need+=(iptables)
done
# nft: teardown deletes the iptables-nft tables the node created, once they are empty.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Other jobs on the machine may hold the dpkg lock: wait for it rather than fail.
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- 2. the node binaries -----------------------------------------------------------------
assets=$("$here/kube-assets.sh" --node)
[ -n "$assets" ] || die "hack/kube-assets.sh --node printed no directory"

# ---- 3. the pause image -------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "Go is needed to build the pause image"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

read -r -d '' PAUSE_SRC <<'EOF' || true
// The sandbox process of every pod on the test node: holds the pod's namespaces open,
// reaps orphaned children (it is PID 1 when the pod shares its PID namespace), and exits
// at once on SIGTERM/SIGINT so that a sandbox stops without waiting for a SIGKILL.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
goversion=$(go env GOVERSION)
key=$(printf '%s\n%s\n' "$PAUSE_SRC" "$goversion" | sha256sum | cut -c1-16)
pause_ref=localhost/nfsguard-pause:$key
pause_tar=$CACHE/pause-$key.tar

if [ ! -s "$pause_tar" ]; then
  work=$(mktemp -d "$CACHE/pause.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/src" "$work/root" "$work/image"
  printf '%s\n' "$PAUSE_SRC" > "$work/src/main.go"
  printf 'module local/pause\n\ngo 1.21\n' > "$work/src/go.mod"
  log "building the pause binary ($goversion)"
  (cd "$work/src" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags '-s -w' -o "$work/root/pause" .) >&2
  chmod 0755 "$work/root/pause"
  # One reproducible layer: fixed owner, mtime and order.
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name \
    -C "$work/root" -cf "$work/layer.tar" pause
  layer_sha=$(sha256sum < "$work/layer.tar" | cut -d' ' -f1)
  mkdir -p "$work/image/$layer_sha"
  mv "$work/layer.tar" "$work/image/$layer_sha/layer.tar"
  printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"nfsguard hack/node-deps.sh"}]}' \
    "$(go env GOARCH)" "$layer_sha" > "$work/config.json"
  config_sha=$(sha256sum < "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/image/$config_sha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_sha" "$pause_ref" "$layer_sha" > "$work/image/manifest.json"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name \
    -C "$work/image" -cf "$pause_tar.partial" manifest.json "$config_sha.json" "$layer_sha"
  mv -f "$pause_tar.partial" "$pause_tar"
  log "pause image $pause_ref: $pause_tar ($(du -k "$pause_tar" | cut -f1) KiB)"
fi

echo "assets=$assets"
echo "cni_bin=$CNI_BIN"
echo "pause=$pause_tar"
echo "pause_ref=$pause_ref"

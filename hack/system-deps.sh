#!/usr/bin/env bash
# Installs the Debian packages the tests use as independent oracles:
#   nfs-common: /sbin/mount.nfs, whose fake mode (-f -v) prints the options a node would mount with.
# and the tools the e2e harness needs:
#   iproute2: `ip route add blackhole <service CIDR>`, so an apiserver dialling a ClusterIP never
#   sends a packet off this machine (tests/e2e/kubecluster.py blackhole_service_cidr).
#   podman, mmdebstrap, runc: the image, built and run by hack/image.sh and tests/image (no
#   registry here: the base is made from Debian packages; crun refuses hybrid cgroups).
set -euo pipefail
need=()
command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ] || [ -x /usr/sbin/mount.nfs ] || need+=(nfs-common)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
for tool in podman mmdebstrap runc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# Other jobs on the machine may hold the dpkg lock: wait for it rather than fail.
apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null

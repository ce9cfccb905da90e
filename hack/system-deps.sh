#!/usr/bin/env bash
# Installs the Debian packages the tests use as independent oracles:
#   nfs-common: /sbin/mount.nfs, whose fake mode (-f -v) prints the options a node would mount with.
# and the tools the e2e harness needs:
#   iproute2: `ip route add blackhole <service CIDR>`, so an apiserver dialling a ClusterIP never
#   sends a packet off this machine (tests/e2e/kubecluster.py blackhole_service_cidr).
set -euo pipefail
need=()
command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ] || [ -x /usr/sbin/mount.nfs ] || need+=(nfs-common)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

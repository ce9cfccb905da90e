#!/usr/bin/env bash
# Installs the Debian packages the tests use as independent oracles:
#   nfs-common: /sbin/mount.nfs, whose fake mode (-f -v) prints the options a node would mount with.
set -euo pipefail
need=()
command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ] || [ -x /usr/sbin/mount.nfs ] || need+=(nfs-common)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

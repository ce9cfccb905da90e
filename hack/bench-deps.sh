#!/usr/bin/env bash
# Installs what `make bench` needs and `make test` never does:
#   wrk: the HTTP load generator (saturation, 8 keep-alive TLS connections).
# Fixed-rate latency uses bench/paced.py (Python, no extra package): Debian ships no wrk2.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "bench-deps: missing ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

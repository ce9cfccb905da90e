#!/usr/bin/env bash
# Runs the whole pytest suite. The e2e suite needs kube-apiserver + etcd:
#   KUBEBUILDER_ASSETS (envtest convention) wins; otherwise hack/kube-assets.sh builds them
#   once from the Go module proxy into a cache outside the repo. Under CI=true a missing
#   asset is a failure (tests/e2e/conftest.py), never a skip.
# The node suite (tests/node) also needs containerd/runc/CNI plugins, the kubelet,
#   kube-proxy and controllers of the same release and a pause image: hack/node-deps.sh
#   installs/builds them once (cached) when run as root; under CI=true a failure there
#   fails the run, and tests/node/conftest.py fails rather than skips.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x hack/kube-assets.sh ]; then
  if [ "${CI:-}" = true ] || command -v go >/dev/null 2>&1; then
    if assets=$(hack/kube-assets.sh); then
      export KUBEBUILDER_ASSETS="$assets"
    elif [ "${CI:-}" = true ]; then
      echo "test: building kube-apiserver/etcd failed under CI=true" >&2
      exit 1
    fi
  fi
fi
if [ "$(id -u)" = 0 ] && { [ "${CI:-}" = true ] || command -v go >/dev/null 2>&1; }; then
  if ! hack/node-deps.sh >/dev/null && [ "${CI:-}" = true ]; then
    echo "test: hack/node-deps.sh failed under CI=true" >&2
    exit 1
  fi
elif [ "${CI:-}" = true ]; then
  echo "test: the node suite needs root and Go under CI=true" >&2
  exit 1
fi
exec .venv/bin/pytest -q tests "$@"

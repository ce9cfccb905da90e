#!/usr/bin/env bash
# Runs the whole pytest suite. The e2e suite needs kube-apiserver + etcd:
#   KUBEBUILDER_ASSETS (envtest convention) wins; otherwise hack/kube-assets.sh builds them
#   once from the Go module proxy into a cache outside the repo. Under CI=true a missing
#   asset is a failure (tests/e2e/conftest.py), never a skip.
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
exec .venv/bin/pytest -q tests "$@"

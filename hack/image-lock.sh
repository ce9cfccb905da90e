#!/usr/bin/env bash
# Writes requirements/image.lock: every dependency the image installs (pyproject.toml's
# [project.dependencies], resolved for CPython 3.11 on Linux) pinned by version and sha256,
# with pip-compile (pip-tools, in its own venv in the cache, outside the repo):
#   ${XDG_CACHE_HOME:-~/.cache}/nfsguard/tools/pip-tools
# Existing pins are kept while they still satisfy pyproject.toml; `hack/image-lock.sh
# --upgrade` moves every pin to the newest release. Run it after changing the dependencies:
# tests/unit/install/test_image_lock.py fails until the lock matches pyproject.toml again.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${XDG_CACHE_HOME:-$HOME/.cache}/nfsguard/tools/pip-tools
if [ ! -x "$tools/bin/pip-compile" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q 'pip-tools==7.7.0'
fi
# PIP_FIND_LINKS cleared: a local wheel directory must not end up in the lock.
PIP_FIND_LINKS='' "$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras \
  --allow-unsafe --no-emit-index-url --no-emit-find-links "$@" \
  --output-file requirements/image.lock pyproject.toml
echo "requirements/image.lock: $(grep -c '==' requirements/image.lock) pinned packages" >&2

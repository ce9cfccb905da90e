#!/usr/bin/env bash
# Builds the nfsguard image from the project's own Dockerfile with no registry and no
# network inside the build, and prints what it made on stdout (logs go to stderr):
#   image=localhost/nfsguard:<version>-<key>     in root's podman storage
#   archive=<cache>/nfsguard-<key>.tar           docker-archive (podman save), for containerd
#   size=<bytes>                                 the image as podman stores it (uncompressed)
#
#   1. Base: Debian bookworm made with mmdebstrap (python3 3.11, python3-venv,
#      ca-certificates; no docs, man pages or locales), imported as localhost/nfsguard-base.
#      python:3.11-slim cannot be pulled here; the Dockerfile takes its base as a build-arg.
#   2. Wheels: every dependency pinned in requirements/image.lock (version + sha256), fetched
#      on the host by `pip wheel --require-hashes --only-binary=:all:`, and nfsguard's own
#      wheel built from the work tree; the build installs them with --no-index.
#   3. podman build --network none of the Dockerfile, then podman save.
# Everything is cached outside the repo, keyed by content:
#   ${NFSGUARD_IMAGE_CACHE:-~/.cache/nfsguard/image}/base-<key>.tar       the base rootfs
#                                              /wheels-<lock sha>/        dependency wheels
#                                              /nfsguard-<key>.tar        the built image
# The image key covers the Dockerfile, .dockerignore, the lock, the base key and every file
# of the build context; a change to any of them builds a new image, nothing else does.
#
# podman 4.3 / buildah 1.28 (Debian) work as root here only with, in
# /etc/containers/containers.conf: no default ulimits (root lacks CAP_SYS_RESOURCE), the
# cgroupfs manager, and runc (crun refuses hybrid cgroups). The script writes that file
# when there is none, and refuses to go on when an existing one lacks the settings.
set -euo pipefail

log() { echo "image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
CACHE=${NFSGUARD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfsguard/image}
PY=${PYTHON:-$repo/.venv/bin/python}
SUITE=bookworm
MIRROR=${NFSGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${NFSGUARD_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

[ "$(id -u)" = 0 ] || die "run as root (podman, mmdebstrap)"
for tool in podman mmdebstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: hack/system-deps.sh installs it"
done
[ -x "$PY" ] || die "no Python at $PY (make test creates .venv; or set PYTHON=)"

conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  log "writing $conf (default_ulimits = [], cgroupfs, runc)"
  mkdir -p /etc/containers
  cat > "$conf" <<'EOF'
# Written by nfsguard's hack/image.sh: podman/buildah as root on a host whose root lacks
# CAP_SYS_RESOURCE and whose cgroups are hybrid (v1 controllers).
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
fi
grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[[[:space:]]*\]' "$conf" \
  && grep -Eq '^[[:space:]]*cgroup_manager[[:space:]]*=[[:space:]]*"cgroupfs"' "$conf" \
  && grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf" \
  || die "$conf lacks default_ulimits = [] / cgroup_manager = \"cgroupfs\" / runtime = \"runc\""

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

sha() { sha256sum | cut -c1-16; }

# ---- 1. the base ------------------------------------------------------------------------
mm_args=(--variant=essential --include=python3,python3-venv,ca-certificates
  "--dpkgopt=path-exclude=/usr/share/man/*" "--dpkgopt=path-exclude=/usr/share/doc/*"
  "--dpkgopt=path-include=/usr/share/doc/*/copyright" "--dpkgopt=path-exclude=/usr/share/locale/*"
  "--dpkgopt=path-exclude=/usr/share/info/*")
sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main")
base_key=$(printf '%s\n' "$SUITE" "$(dpkg --print-architecture)" "${mm_args[@]}" "${sources[@]}" | sha)
base_ref=localhost/nfsguard-base:$base_key
base_tar=$CACHE/base-$base_key.tar
if ! podman image exists "$base_ref"; then
  if [ ! -s "$base_tar" ]; then
    t0=$(date +%s)
    log "mmdebstrap $SUITE base ($base_key)"
    mmdebstrap --quiet --format=tar "${mm_args[@]}" "$SUITE" "$base_tar.partial" "${sources[@]}" >&2
    mv -f "$base_tar.partial" "$base_tar"
    log "base rootfs made in $(( $(date +%s) - t0 )) s ($(du -m "$base_tar" | cut -f1) MB)"
  fi
  podman import --quiet "$base_tar" "$base_ref" >/dev/null
fi

# ---- 2. wheels ----------------------------------------------------------------------------
lock=$repo/requirements/image.lock
[ -f "$lock" ] || die "no $lock (hack/image-lock.sh writes it)"
wheels=$CACHE/wheels-$(sha < "$lock")
if [ ! -f "$wheels/.complete" ]; then
  log "pip wheel --require-hashes the locked dependencies into $wheels"
  rm -rf "$wheels"
  # PIP_FIND_LINKS cleared: only the index, so every file is checked against the lock.
  PIP_FIND_LINKS='' "$PY" -m pip wheel --quiet --require-hashes --only-binary=:all: \
    -r "$lock" -w "$wheels" >&2
  touch "$wheels/.complete"
fi

# ---- 3. context, key, build -----------------------------------------------------------------
ctx=$(mktemp -d "$CACHE/context.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
(cd "$repo" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - \
  Dockerfile .dockerignore pyproject.toml README.md LICENSE webhook requirements/image.lock) | tar -xf - -C "$ctx"
key=$( { echo "base=$base_key"; (cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } | sha)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/webhook/__init__.py")
[ -n "$version" ] || die "no __version__ in webhook/__init__.py"
ref=localhost/nfsguard:$version-$key
archive=$CACHE/nfsguard-$key.tar

if ! podman image exists "$ref"; then
  if [ -s "$archive" ]; then
    log "loading $archive"
    podman load --quiet -i "$archive" >&2
  else
    mkdir -p "$ctx/requirements/wheels"
    cp "$wheels"/*.whl "$ctx/requirements/wheels/"
    "$PY" -m pip wheel --quiet --no-deps "$ctx" -w "$ctx/requirements/wheels" >&2
    rm -rf "$ctx/build" "$ctx"/*.egg-info
    t0=$(date +%s)
    log "podman build $ref (base $base_ref, no network)"
    podman build --quiet --pull=never --network=none --build-arg "PYTHON_IMAGE=$base_ref" \
      -t "$ref" "$ctx" >&2
    log "built in $(( $(date +%s) - t0 )) s"
    podman save --quiet --format docker-archive -o "$archive.tmp" "$ref"
    mv -f "$archive.tmp" "$archive"
  fi
fi
[ -s "$archive" ] || { podman save --quiet --format docker-archive -o "$archive.tmp" "$ref"; mv -f "$archive.tmp" "$archive"; }
size=$(podman image inspect --format '{{.Size}}' "$ref")
log "$ref: $(( size / 1024 / 1024 )) MiB"
echo "image=$ref"
echo "archive=$archive"
echo "size=$size"

# nfsguard: the admission webhook image.
#   docker build -t ghcr.io/nfsguard/nfsguard:0.1.0 .        (a machine that reaches a registry)
#   make image                                                (no registry: hack/image.sh)
# Base: the exact CPython patch release and Debian release, in both stages (the venv's
# interpreter link must resolve to the same Python). To pin the digest as well, resolve it
# at release time and build with
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it).
# hack/image.sh passes a Debian bookworm base it made with mmdebstrap instead
# (--build-arg PYTHON_IMAGE=localhost/nfsguard-base:<key>): python3 3.11 from Debian.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder: a self-contained virtualenv with nfsguard and its dependencies ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore admits only pyproject.toml, README.md, LICENSE, webhook/ and requirements/.
COPY . .
# Every dependency comes from requirements/image.lock, pinned by version and sha256
# (--require-hashes also refuses any dependency the lock lacks), as a wheel only. Offline
# builds (hack/image.sh) bring the wheels, and nfsguard's own, in requirements/wheels/;
# otherwise pip fetches the same files from the index. `pip check` fails the build when the
# lock no longer satisfies nfsguard's own requirements (pyproject.toml changed, lock did not).
RUN python3 -m venv /opt/nfsguard \
 && if [ -d requirements/wheels ]; then set -- --no-index --find-links requirements/wheels; fi \
 && /opt/nfsguard/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: "$@" \
      -r requirements/image.lock \
 && if [ -d requirements/wheels ]; then \
      /opt/nfsguard/bin/pip install --no-cache-dir --no-deps "$@" nfsguard; \
    else \
      /opt/nfsguard/bin/pip install --no-cache-dir --no-deps .; \
    fi \
 && /opt/nfsguard/bin/pip check \
 && /opt/nfsguard/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/nfsguard/bin/nfsguard --version

# ---- runtime: no compiler, no pip, no build context, non-root -------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="nfsguard" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that keeps NFS volumes off protocol versions known to break" \
      org.opencontainers.image.licenses="Apache-2.0"
# Drop the installers the base image ships (python:slim has pip; Debian's python3 has
# none); the application lives in /opt/nfsguard.
RUN if python3 -m pip --version > /dev/null 2>&1; then \
      python3 -m pip uninstall --no-cache-dir --yes pip setuptools wheel; \
    fi \
 && mkdir -p /etc/nfsguard/policies /etc/nfsguard/tls /var/log/nfsguard \
 && chown 10001:10001 /etc/nfsguard/tls /var/log/nfsguard
COPY --from=builder /opt/nfsguard /opt/nfsguard
ENV PATH=/opt/nfsguard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric uid/gid, so runAsNonRoot can be verified by the kubelet without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/nfsguard
EXPOSE 8443
ENTRYPOINT ["nfsguard"]
CMD ["serve", "--policy", "/etc/nfsguard/policies", "--tls-dir", "/etc/nfsguard/tls", \
     "--host", "0.0.0.0", "--port", "8443", \
     "--audit-log", "/var/log/nfsguard/audit.log", "--audit-stdout", \
     "--audit-key", "/etc/nfsguard/audit-key/audit.key", "--in-cluster", \
     "--register", "--ca-bundle", "/etc/nfsguard/tls/ca-bundle.crt", \
     "--register-owner", "nfsguard-registration"]

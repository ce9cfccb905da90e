# nfsguard: the admission webhook image.
#   docker build -t ghcr.io/nfsguard/nfsguard:0.1.0 .
# Base: the exact CPython patch release and Debian release, in both stages (the venv's
# interpreter link must resolve to the same Python). To pin the digest as well, resolve it
# at release time and build with
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder: a self-contained virtualenv with nfsguard and its dependencies ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore admits only pyproject.toml, README.md and webhook/.
COPY . .
RUN python -m venv /opt/nfsguard \
 && /opt/nfsguard/bin/pip install --no-cache-dir . \
 && /opt/nfsguard/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/nfsguard/bin/nfsguard --help > /dev/null

# ---- runtime: no compiler, no pip, no build context, non-root -------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="nfsguard" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that keeps NFS volumes off protocol versions known to break" \
      org.opencontainers.image.licenses="Apache-2.0"
# Drop the installers the base image ships; the application lives in /opt/nfsguard.
RUN python -m pip uninstall --no-cache-dir --yes pip setuptools wheel \
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

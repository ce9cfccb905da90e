# nfsguard: two commands do all the set-up on a fresh machine.
#   make run   - serve the shipped policy with a dev certificate on https://127.0.0.1:8443
#   make test  - install dev deps and run every check (ruff, import-linter, mypy, pytest incl. e2e)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8443

.PHONY: run test lint typecheck unit e2e bench system-deps kube-assets node-deps openreports-crds helm manifests image image-lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@$(BIN)/nfsguard serve --policy policies/ --tls-dir .dev/tls --audit-log .dev/audit.log \
	  --host $(HOST) --port $(PORT) --print-example

# System packages the tests use as oracles (mount.nfs from nfs-common).
system-deps:
	@hack/system-deps.sh

# kube-apiserver + etcd for tests/e2e (KUBEBUILDER_ASSETS wins; else built once from the Go module proxy).
kube-assets:
	@hack/kube-assets.sh

# The real node of tests/node: containerd, runc and CNI plugins (Debian), kubelet,
# kube-proxy, kube-controller-manager, kube-scheduler (same release and cache as
# kube-assets) and a pause image built here; cached, as root.
node-deps:
	@hack/node-deps.sh

# The OpenReports CRDs for tests/e2e/test_reporter.py (Go module proxy, Go's module cache).
openreports-crds:
	@hack/openreports-crds.sh

# helm 4 and helm 3 for the chart tests (hack/helm.sh: Go module proxy, cached outside the repo).
helm:
	@hack/helm.sh >/dev/null && hack/helm.sh 3 >/dev/null

# manifests/ = charts/nfsguard rendered with its default values (tests/chart fails on drift).
manifests: $(STAMP) helm
	$(BIN)/python hack/render_manifests.py

# The image from the Dockerfile, with no registry (hack/image.sh: mmdebstrap base, wheels
# from requirements/image.lock, podman build --network none; cached by content).
image: $(STAMP) system-deps
	@hack/image.sh

# Re-pin requirements/image.lock after a dependency change in pyproject.toml.
image-lock:
	@hack/image-lock.sh

lint: $(STAMP)
	$(BIN)/ruff check webhook tests hack bench
	$(BIN)/ruff format --check webhook tests hack bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps helm lint typecheck
	@hack/test.sh

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .dev .mypy_cache .ruff_cache .pytest_cache .hypothesis

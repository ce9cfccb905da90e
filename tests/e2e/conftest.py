"""Fixtures for the end-to-end suite: a real etcd + kube-apiserver, and the real server.

Without kube-apiserver/etcd the suite is skipped with one line saying how to get them;
under CI=true that is an error instead, never a skip.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    ENABLE_HINT,
    KUBE_VERSION,
    Cleanup,
    ControlPlane,
    Registration,
    WebhookServer,
    find_assets,
    webhook_configuration_for,
)
from tests.optional_suite import OptionalSuite

E2E_DIR = Path(__file__).resolve().parent
POLICIES = E2E_DIR / "policies"

_ASSETS, _WHY = find_assets()
SUITE = OptionalSuite("e2e", E2E_DIR, _WHY if _ASSETS is None else None, ENABLE_HINT, marker="e2e")


def pytest_configure(config: pytest.Config) -> None:
    SUITE.register(config)


@pytest.fixture(scope="session")
def kube_assets() -> Path:
    SUITE.require()
    assert _ASSETS is not None
    return _ASSETS


@pytest.fixture(scope="session")
def control_plane(
    kube_assets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    cp = ControlPlane(kube_assets, tmp_path_factory.mktemp("kube"))
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    api = control_plane.api_client()
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def core_v1(api_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def storage_v1(api_client: k8s.ApiClient) -> k8s.StorageV1Api:
    return k8s.StorageV1Api(api_client)


@pytest.fixture(scope="session")
def admissionregistration_v1(api_client: k8s.ApiClient) -> k8s.AdmissionregistrationV1Api:
    return k8s.AdmissionregistrationV1Api(api_client)


@pytest.fixture(scope="session")
def kube_version() -> str:
    return KUBE_VERSION


@pytest.fixture
def cleanup(core_v1: k8s.CoreV1Api, storage_v1: k8s.StorageV1Api) -> Iterator[Cleanup]:
    c = Cleanup(core_v1, storage_v1)
    yield c
    c.run()


WebhookFactory = Callable[..., WebhookServer]


@pytest.fixture
def start_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookFactory]:
    """Start `nfsguard serve` processes for one test; all are stopped afterwards."""
    started: list[WebhookServer] = []

    def start(policy: Path, kubeconfig: Path | None = None) -> WebhookServer:
        wh = WebhookServer(policy, tmp_path_factory.mktemp("nfsguard"), kubeconfig=kubeconfig)
        started.append(wh)
        return wh.start()

    yield start
    for wh in started:
        wh.stop()


RegisterFactory = Callable[..., Registration]


@pytest.fixture
def register(api_client: k8s.ApiClient) -> Iterator[RegisterFactory]:
    """Register the shipped MutatingWebhookConfiguration for a webhook on 127.0.0.1, wait
    until it is live; unregister (and wait until it is gone) afterwards."""
    done: list[Registration] = []

    def reg(
        wh: WebhookServer, *, name: str | None = None, failure_policy: str | None = None
    ) -> Registration:
        cfg = webhook_configuration_for(
            wh.url, wh.ca_crt.read_bytes(), name=name, failure_policy=failure_policy
        )
        r = Registration(api_client, cfg)
        done.append(r)
        r.register()
        return r

    yield reg
    for r in reversed(done):
        r.unregister()


@pytest.fixture(scope="module")
def module_webhook(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookServer]:
    """One server for a whole test module, registered from manifests/ and proven live.

    The module names its policy file with `POLICY = "<file in tests/e2e/policies>"`.
    """
    policy = POLICIES / str(request.module.POLICY)
    wh = WebhookServer(policy, tmp_path_factory.mktemp("nfsguard"))
    reg: Registration | None = None
    try:
        wh.start()
        cfg = webhook_configuration_for(wh.url, wh.ca_crt.read_bytes())
        reg = Registration(api_client, cfg)
        reg.register()
        yield wh
    finally:
        try:
            if reg is not None:
                reg.unregister()
        finally:
            wh.stop()


@pytest.fixture(scope="session")
def openreports_crds() -> Path:
    """The OpenReports CRD directory, from the Go module proxy (hack/openreports-crds.sh).
    Failing to get it fails the test (under CI=true as everywhere): never a skip."""
    script = E2E_DIR.parents[1] / "hack" / "openreports-crds.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"e2e: no OpenReports CRDs ({script.name}): {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])


CLUSTERREPORT_CRD = "clusterreports.openreports.io"
REPORT_CRD = "reports.openreports.io"
CRD_FILES = {
    CLUSTERREPORT_CRD: "openreports.io_clusterreports.yaml",
    REPORT_CRD: "openreports.io_reports.yaml",
}


@pytest.fixture
def report_crds(openreports_crds: Path, api_client: k8s.ApiClient) -> tuple[str, ...]:
    """The ClusterReport and (namespaced) Report CRDs installed from the module
    (idempotent) and Established."""
    ext = k8s.ApiextensionsV1Api(api_client)
    for file in CRD_FILES.values():
        body = yaml.safe_load((openreports_crds / file).read_text())
        try:
            ext.create_custom_resource_definition(body)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    waiting = set(CRD_FILES)
    while time.monotonic() < deadline:
        for name in list(waiting):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                waiting.discard(name)
        if not waiting:
            return tuple(CRD_FILES)
        time.sleep(0.2)
    pytest.fail(f"{', '.join(sorted(waiting))} not Established after 30 s")

"""charts/nfsguard against the real kube-apiserver: every ci/ values rendering passes a
server-side dry run (admission, defaulting and the API's own validation, beyond the
OpenAPI schemas of tests/chart), and `helm install` / `helm uninstall` really create and
remove the release. This harness has no kubelet: pods never run here (tests/node does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.chart.helm import CHART, CI_VALUES, CRD_KINDS, helm, render_text


def kubectl(assets: Path, kubeconfig: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [str(assets / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_values_file_passes_a_server_side_dry_run(
    values: Path, kube_assets: Path, kubeconfig: Path, core_v1: k8s.CoreV1Api
) -> None:
    # One release and namespace per values file: cluster-scoped names never meet another
    # test's objects in this shared apiserver.
    name = "chart-" + values.name.removesuffix("-values.yaml")
    try:
        core_v1.read_namespace(name)
    except k8s.ApiException:
        core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    out = render_text(values_files=[values], release=name, namespace=name).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] not in CRD_KINDS]
    assert docs
    result = kubectl(
        kube_assets,
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-o",
        "name",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )
    assert len(result.split()) == len(docs), result


def test_helm_install_and_uninstall(
    kubeconfig: Path, core_v1: k8s.CoreV1Api, api_client: k8s.ApiClient
) -> None:
    release, ns = "chart-real", "chart-real-ns"
    base = ["--kubeconfig", str(kubeconfig), "--namespace", ns]
    helm(
        "install",
        release,
        str(CHART),
        *base,
        "--create-namespace",
        "--no-hooks",  # the pre-delete hook's Job needs a kubelet (tests/node runs it)
        "--set",
        "image.pullPolicy=Never",
    )
    try:
        full = f"{release}-nfsguard"
        apps = k8s.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment(full, ns)
        assert deployment.spec is not None and deployment.spec.replicas == 2
        service = core_v1.read_namespaced_service(full, ns)
        assert service.spec is not None and service.spec.ports is not None
        assert service.spec.ports[0].port == 443
        policies = core_v1.read_namespaced_config_map(f"{full}-policies", ns)
        assert set(policies.data or {}) == {"known-issues.yaml"}
        k8s.BatchV1Api(api_client).read_namespaced_job(f"{full}-certs-init-1", ns)
        rbac = k8s.RbacAuthorizationV1Api(api_client)
        rbac.read_cluster_role(f"{full}-registration")
        status = helm("status", release, *base).stdout
        assert "STATUS: deployed" in status
        # an upgrade with a site policy reaches the ConfigMap and runs a new certs Job
        helm(
            "upgrade",
            release,
            str(CHART),
            *base,
            "--no-hooks",
            "--values",
            str(CHART / "ci" / "site-values.yaml"),
        )
        policies = core_v1.read_namespaced_config_map(f"{full}-policies", ns)
        assert set(policies.data or {}) == {"known-issues.yaml", "incident.yaml"}
        k8s.BatchV1Api(api_client).read_namespaced_job(f"{full}-certs-init-2", ns)
    finally:
        helm("uninstall", release, *base, "--no-hooks", "--wait", "--timeout", "60s")
    with pytest.raises(k8s.ApiException) as gone:
        k8s.AppsV1Api(api_client).read_namespaced_deployment(f"{release}-nfsguard", ns)
    assert gone.value.status == 404
    with pytest.raises(k8s.ApiException) as gone:
        k8s.RbacAuthorizationV1Api(api_client).read_cluster_role(f"{release}-nfsguard-registration")
    assert gone.value.status == 404
    core_v1.delete_namespace(ns)

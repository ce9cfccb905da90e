"""nodeKernels decisions follow the cluster's Nodes, as `nfsguard serve --kubeconfig` sees them.

Nodes are created directly through the API (no kubelet runs) and their
status.nodeInfo.kernelVersion is set through the nodes/status subresource; the server's
node watch must pick each change up, and the next review must follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import (
    PIN,
    Cleanup,
    ControlPlane,
    nfs_pv,
    pv_model,
    version_options,
    wait_until,
)

POLICY = Path(__file__).resolve().parent / "policies" / "nodes.yaml"
SERVER = "192.0.2.40"
ASKED = ["nfsvers=4.1", "hard"]
EL9 = "5.14.0-362.8.1.el9_3.x86_64"
EL7_AFFECTED = "3.10.0-862.14.4.el7.x86_64"
EL7_FIXED = "3.10.0-1160.119.1.el7.x86_64"


def node_info(kernel: str) -> dict[str, str]:
    """All ten NodeSystemInfo fields: the Python client refuses a Node missing any."""
    return {
        "architecture": "amd64",
        "bootID": "00000000-0000-0000-0000-000000000001",
        "containerRuntimeVersion": "containerd://1.7.0",
        "kernelVersion": kernel,
        "kubeProxyVersion": "",
        "kubeletVersion": "v1.36.3",
        "machineID": "0123456789abcdef0123456789abcdef",
        "operatingSystem": "linux",
        "osImage": "e2e",
        "systemUUID": "00000000-0000-0000-0000-000000000002",
    }


class Nodes:
    def __init__(self, core: k8s.CoreV1Api) -> None:
        self.core = core
        self.names: list[str] = []

    def create(self, name: str, kernel: str) -> None:
        body = k8s.V1Node.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            }
        )
        assert body is not None
        self.core.create_node(body)
        self.names.append(name)
        self.set_kernel(name, kernel)

    def set_kernel(self, name: str, kernel: str) -> None:
        self.core.patch_node_status(name, {"status": {"nodeInfo": node_info(kernel)}})
        stored = self.core.read_node(name)
        assert stored.status is not None and stored.status.node_info is not None
        assert stored.status.node_info.kernel_version == kernel

    def delete_all(self) -> None:
        for n in self.names:
            try:
                self.core.delete_node(n)
            except k8s.ApiException as e:
                if e.status != 404:
                    raise


@pytest.fixture
def nodes(core_v1: k8s.CoreV1Api) -> Iterator[Nodes]:
    n = Nodes(core_v1)
    yield n
    n.delete_all()


def pv_on(name: str, node: str | None = None) -> k8s.V1PersistentVolume:
    body = nfs_pv(name, SERVER, "/vol", ASKED, csi=True)
    if node is not None:
        body["spec"]["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": [node],
                            }
                        ]
                    }
                ]
            }
        }
    return pv_model(body)


def admitted(core: k8s.CoreV1Api, pv: k8s.V1PersistentVolume) -> list[str]:
    out = core.create_persistent_volume(pv, dry_run="All")
    assert out.spec is not None
    return list(out.spec.mount_options or [])


def pinned(options: list[str]) -> bool:
    return PIN in options and "nfsvers=4.1" not in options


def test_decisions_follow_node_kernels(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    nodes: Nodes,
    cleanup: Cleanup,
) -> None:
    nodes.create("e2e-el9", EL9)
    wh = start_webhook(POLICY, kubeconfig=control_plane.kubeconfig)
    register(wh, name="nfsguard-e2e-nodes")
    anywhere = pv_on("kernels-anywhere")

    # Only an EL9 node: the watch has synced and nothing is in range -> left alone.
    wait_until(
        "the EL9-only cluster to be seen as unaffected",
        lambda: not pinned(admitted(core_v1, anywhere)),
        30,
    )

    # An affected EL7 node joins: a PV usable on every node is pinned...
    nodes.create("e2e-el7", EL7_AFFECTED)
    wait_until("the new EL7 node to be seen", lambda: pinned(admitted(core_v1, anywhere)), 30)
    name = cleanup.pv("kernels-stored")
    core_v1.create_persistent_volume(pv_on(name))
    stored = core_v1.read_persistent_volume(name)
    assert stored.spec is not None
    assert version_options(stored.spec.mount_options) == [PIN]
    assert "hard" in (stored.spec.mount_options or [])
    # ... while node affinity scopes the decision to the nodes a PV can be used on.
    assert pinned(admitted(core_v1, pv_on("kernels-on-el7", "e2e-el7")))
    assert not pinned(admitted(core_v1, pv_on("kernels-on-el9", "e2e-el9")))

    # The EL7 node is patched to a fixed kernel: nothing in range any more.
    nodes.set_kernel("e2e-el7", EL7_FIXED)
    wait_until("the kernel update to be seen", lambda: not pinned(admitted(core_v1, anywhere)), 30)
    assert admitted(core_v1, anywhere) == ASKED

    # Back to an affected kernel, then the node is deleted: decisions follow both.
    nodes.set_kernel("e2e-el7", EL7_AFFECTED)
    wait_until("the kernel downgrade to be seen", lambda: pinned(admitted(core_v1, anywhere)), 30)
    core_v1.delete_node("e2e-el7")
    wait_until("the node deletion to be seen", lambda: not pinned(admitted(core_v1, anywhere)), 30)

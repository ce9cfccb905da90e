"""The node itself: Ready, of the pinned release, on the bridge address only."""

from __future__ import annotations

from kubernetes import client as k8s

from tests.node.cluster import KUBE_VERSION, NODE_NAME, NodeCluster


def test_the_node_is_ready_on_its_bridge_address(node: NodeCluster) -> None:
    n = k8s.CoreV1Api(node.api).read_node(NODE_NAME)
    assert n.status is not None and n.status.node_info is not None
    assert n.status.node_info.kubelet_version == f"v{KUBE_VERSION}"
    assert n.status.node_info.container_runtime_version.startswith("containerd://")
    addresses = {a.type: a.address for a in n.status.addresses or []}
    assert addresses["InternalIP"] == node.node_ip
    conds = {c.type: c.status for c in n.status.conditions or []}
    assert conds["Ready"] == "True"

"""/readyz of one worker (webhook/server/health.py): the policies in force, and a live
node inventory's status through the HealthCheck protocol, on a driven clock."""

from __future__ import annotations

from kubernetes import client as k8s_client

from tests.integration.conftest import POLICIES
from tests.support import policy_store
from webhook.cluster.nodes import LiveNodeInventory
from webhook.server.health import HealthCheck, WorkerReadiness

STORE = policy_store([str(POLICIES)])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_live_inventory_the_policies_make_a_worker_ready() -> None:
    ready, details = WorkerReadiness(STORE, None, grace=60.0)()
    assert ready is True
    assert set(details) == {"policies", "reload"}
    assert details["reload"]["result"] == "initial"
    assert [p["name"] for p in details["policies"]] == [p.name for p in STORE.engine().policies]


def test_an_unsynced_node_inventory_holds_readiness_until_the_grace_period() -> None:
    nodes: HealthCheck = LiveNodeInventory(k8s_client.ApiClient(), stale_after=60.0)  # not started
    clock = Clock()
    readiness = WorkerReadiness(STORE, nodes, grace=60.0, clock=clock)
    ready, details = readiness()
    assert ready is False
    assert details["nodes"]["ready"] is False and details["nodes"]["synced"] is False
    assert "assuming" not in details
    clock.now += 60.0  # at the bound: still waiting
    assert readiness()[0] is False
    clock.now += 1.0
    ready, details = readiness()
    assert ready is True
    assert details["assuming"] == (
        "node inventory not synced after 61s: nodeKernels rules follow each policy's unknownNodes"
    )


class Synced:
    """A HealthCheck that is ready (what a LiveNodeInventory says after its first list)."""

    def status(self) -> dict[str, object]:
        return {"ready": True, "synced": True, "nodes": 3}


def test_a_ready_node_inventory_is_reported_and_the_worker_is_ready() -> None:
    ready, details = WorkerReadiness(STORE, Synced(), grace=60.0, clock=Clock())()
    assert ready is True
    assert details["nodes"] == {"ready": True, "synced": True, "nodes": 3}
    assert "assuming" not in details

"""The live node inventory against a real HTTP server on loopback.

(Over 400 lines: the fake API server and every watch failure it can stage.)

``FakeNodeAPI`` speaks the Kubernetes wire format for ``/api/v1/nodes`` (paged
list with resourceVersion; watch as chunked newline-delimited JSON events,
BOOKMARK, ``ERROR`` 410 for a compacted resourceVersion) and can drop
connections or go down. The inventory talks to it through the real kubernetes
client, configured from a kubeconfig file, exactly as in production.
(tests/e2e adds the same checks against a real kube-apiserver.)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from webhook.cluster.nodes import LiveNodeInventory, start_node_inventory
from webhook.nfs.inventory import ALL_NODES, KernelView
from webhook.nfs.scope import NodeScope, SelectorRequirement, SelectorTerm

EL7 = "3.10.0-862.14.4.el7.x86_64"
EL7_NEW = "3.10.0-1160.el7.x86_64"
UBUNTU = "5.15.0-91-generic"
COS = "6.12.55+"
ZONE = "topology.kubernetes.io/zone"


def node(name: str, kernel: str, rv: int, zone: str = "a") -> dict[str, Any]:
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "resourceVersion": str(rv),
            "labels": {"kubernetes.io/hostname": name, ZONE: zone},
        },
        "status": {
            "nodeInfo": {"kernelVersion": kernel, "osImage": "test"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class FakeNodeAPI:
    """A tiny API server for Nodes: state, an event log, and fault injection."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.nodes: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.epoch = 0  # bumped to make open watches drop (or send 410)
        self.epoch_action = "drop"
        self.down = False  # every request: connection closed without a response
        self.status_override: int | None = None  # e.g. 403 for every request
        self.refuse_continue = 0  # answer this many continue requests with 410 Expired
        self.requests: list[dict[str, list[str]]] = []
        self.open_watches = 0
        self._snapshots: dict[str, str] = {}
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- what a test does to the cluster -------------------------------------------

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self.log.append((self.rv, kind, obj))
        self.cond.notify_all()

    def put(self, name: str, kernel: str, zone: str = "a") -> None:
        with self.cond:
            self.rv += 1
            kind = "MODIFIED" if name in self.nodes else "ADDED"
            self.nodes[name] = node(name, kernel, self.rv, zone)
            self._event(kind, self.nodes[name])

    def delete(self, name: str) -> None:
        with self.cond:
            self.rv += 1
            obj = self.nodes.pop(name)
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
            self._event("DELETED", obj)

    def bookmark(self) -> None:
        with self.cond:
            self.rv += 1
            self._event(
                "BOOKMARK",
                {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.rv)}},
            )

    def compact(self) -> None:
        with self.cond:
            self.compacted = self.rv

    def break_watches(self, action: str = "drop") -> None:
        """``drop``: cut open watches mid-stream; ``gone``: send them an ERROR 410."""
        with self.cond:
            self.epoch += 1
            self.epoch_action = action
            self.cond.notify_all()

    def watch_requests(self) -> list[dict[str, list[str]]]:
        return [q for q in self.requests if q.get("watch") == ["true"]]

    def list_requests(self) -> list[dict[str, list[str]]]:
        return [q for q in self.requests if q.get("watch") != ["true"]]

    def close(self) -> None:
        with self.cond:
            self.down = True
            self.epoch += 1
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- the wire --------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                api.requests.append(query)
                if api.down:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if api.status_override is not None:
                    self._status(api.status_override, "Forbidden", "nodes is forbidden")
                    return
                if url.path != "/api/v1/nodes":
                    self._status(404, "NotFound", "not found")
                    return
                if query.get("watch") == ["true"]:
                    self._watch(query)
                elif "continue" in query and api.refuse_continue > 0:
                    api.refuse_continue -= 1
                    self._status(410, "Expired", "the provided continue parameter is too old")
                else:
                    self._list(query)

            def _json(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._json(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _list(self, query: dict[str, list[str]]) -> None:
                limit = int(query.get("limit", ["0"])[0])
                with api.cond:
                    if "continue" in query:
                        offset_s, rv_s = query["continue"][0].split(":")
                        offset, rv = int(offset_s), rv_s
                        items = json.loads(api._snapshot_for(rv))
                    else:
                        offset, rv = 0, str(api.rv)
                        items = sorted(api.nodes.values(), key=lambda n: n["metadata"]["name"])
                        api._snapshots[rv] = json.dumps(items)
                page = items[offset : offset + limit] if limit else items[offset:]
                meta: dict[str, Any] = {"resourceVersion": rv}
                if limit and offset + limit < len(items):
                    meta["continue"] = f"{offset + limit}:{rv}"
                page = [
                    {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}
                    for item in page
                ]
                self._json(
                    200, {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": page}
                )

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, query: dict[str, list[str]]) -> None:
                since = int(query.get("resourceVersion", ["0"])[0] or 0)
                timeout = float(query.get("timeoutSeconds", ["30"])[0])
                bookmarks = query.get("allowWatchBookmarks") == ["true"]
                deadline = time.monotonic() + timeout
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                with api.cond:
                    epoch = api.epoch
                    api.open_watches += 1
                try:
                    if since < api.compacted:
                        self._chunk(self._gone(since))
                        self._chunk(b"")
                        return
                    while True:
                        with api.cond:
                            pending = [e for e in api.log if e[0] > since]
                            if not pending and api.epoch == epoch:
                                api.cond.wait(max(0.0, min(0.2, deadline - time.monotonic())))
                                pending = [e for e in api.log if e[0] > since]
                            broken = api.epoch != epoch
                            action = api.epoch_action
                        for rv, kind, obj in pending:
                            if kind == "BOOKMARK" and not bookmarks:
                                since = rv
                                continue
                            self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                            since = rv
                        if broken:
                            if action == "gone" and not api.down:
                                self._chunk(self._gone(since))
                                self._chunk(b"")
                            else:
                                # Half an event, then the connection just goes away.
                                self._chunk(b'{"type":"MODIFIED","object":{"kind":')
                                self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if time.monotonic() >= deadline:
                            self._chunk(b"")  # the server's timeoutSeconds: a clean end
                            return
                except OSError:
                    return
                finally:
                    with api.cond:
                        api.open_watches -= 1

            def _gone(self, since: int) -> bytes:
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {since} ({api.compacted})",
                    "reason": "Expired",
                    "code": 410,
                }
                return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"

        return Handler

    def _snapshot_for(self, rv: str) -> str:
        return self._snapshots[rv]


class ManualClock:
    """A monotonic clock that moves only when the test says (``LiveNodeInventory(clock=)``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


def kubeconfig_for(tmp_path: Path, port: int) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "nfsguard", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "nfsguard"}}],
                "current-context": "fake",
            }
        )
    )
    return str(path)


@pytest.fixture
def api() -> Iterator[FakeNodeAPI]:
    server = FakeNodeAPI()
    server.put("node-a", EL7, zone="a")
    server.put("node-b", UBUNTU, zone="b")
    server.put("node-c", UBUNTU, zone="b")
    yield server
    server.close()


@pytest.fixture
def start(
    api: FakeNodeAPI, tmp_path: Path
) -> Iterator[Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]]:
    started: list[LiveNodeInventory] = []

    def _start(**kwargs: Any) -> tuple[LiveNodeInventory, CollectorRegistry]:
        registry = CollectorRegistry()
        options: dict[str, Any] = {
            "stale_after": 60.0,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
            "page_size": 2,
            "watch_timeout": 30.0,
            "metrics_interval": 0.05,
        }
        options.update(kwargs)
        inv = start_node_inventory(kubeconfig_for(tmp_path, api.port), registry=registry, **options)
        started.append(inv)
        return inv, registry

    yield _start
    for inv in started:
        inv.stop()


def zone(value: str) -> NodeScope:
    return NodeScope((SelectorTerm((SelectorRequirement(ZONE, "In", (value,)),)),))


def kernels(inv: LiveNodeInventory, scope: NodeScope = ALL_NODES) -> AbstractSet[str] | None:
    view = inv.kernels_in(scope)
    return view.kernels if view.known else None


def metric(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_list_then_watch_follows_the_cluster(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, registry = start()
    assert inv.wait_synced(10)
    assert inv.synced
    # Paged list (limit=2, continue) of three nodes.
    assert len(api.list_requests()) == 2
    first, second = api.list_requests()
    assert first["limit"] == ["2"] and "resourceVersion" not in first  # consistent, paged
    assert "continue" in second and "resourceVersion" not in second
    assert kernels(inv) == {EL7, UBUNTU}
    assert kernels(inv, zone("a")) == {EL7}
    assert kernels(inv, zone("b")) == {UBUNTU}
    eventually(lambda: len(api.watch_requests()) == 1, what="a watch")
    watch = api.watch_requests()[0]
    assert watch["resourceVersion"] == ["103"]
    assert watch["allowWatchBookmarks"] == ["true"]

    api.put("node-d", COS, zone="c")  # ADDED: a new kernel appears
    eventually(lambda: kernels(inv) == {EL7, UBUNTU, COS}, what="ADDED node-d")
    assert kernels(inv, zone("c")) == {COS}

    api.put("node-a", EL7_NEW, zone="a")  # MODIFIED: kernel upgraded
    eventually(lambda: kernels(inv) == {EL7_NEW, UBUNTU, COS}, what="MODIFIED node-a")
    assert kernels(inv, zone("a")) == {EL7_NEW}

    api.put("node-b", UBUNTU, zone="c")  # MODIFIED: labels moved
    eventually(lambda: kernels(inv, zone("c")) == {UBUNTU, COS}, what="relabel node-b")

    api.delete("node-d")  # DELETED: stops counting
    eventually(lambda: kernels(inv) == {EL7_NEW, UBUNTU}, what="DELETED node-d")
    assert kernels(inv, zone("c")) == {UBUNTU}
    api.delete("node-b")
    api.delete("node-c")
    eventually(lambda: kernels(inv) == {EL7_NEW}, what="last ubuntu node gone")

    api.bookmark()
    eventually(lambda: inv.status()["resourceVersion"] == str(api.rv), what="bookmark rv")
    status = inv.status()
    assert status["ready"] and status["synced"] and not status["stale"]
    assert status["nodes"] == 1 and status["kernels"] == {EL7_NEW: 1}
    assert status["relists"] == 1 and status["errors"] == 0
    assert status["events"]["BOOKMARK"] == 1 and status["events"]["DELETED"] == 3

    eventually(lambda: metric(registry, "nfsguard_node_inventory_nodes") == 1, what="gauge")
    assert metric(registry, "nfsguard_node_inventory_kernels") == 1
    assert metric(registry, "nfsguard_node_inventory_kernel_nodes", {"kernel": EL7_NEW}) == 1
    # Kernels that left the cluster leave the metrics too.
    assert (
        registry.get_sample_value("nfsguard_node_inventory_kernel_nodes", {"kernel": COS}) is None
    )
    assert metric(registry, "nfsguard_node_inventory_synced") == 1
    assert metric(registry, "nfsguard_node_inventory_stale") == 0
    assert metric(registry, "nfsguard_node_inventory_relists_total") == 1
    assert metric(registry, "nfsguard_node_watch_events_total", {"type": "ADDED"}) == 1
    assert metric(registry, "nfsguard_node_watch_events_total", {"type": "DELETED"}) == 3
    assert b"nfsguard_node_watch_broken_seconds 0.0" in generate_latest(registry)
    assert len(api.list_requests()) == 2  # no API call besides the watch


def test_status_only_updates_keep_the_snapshot(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, _ = start()
    assert inv.wait_synced(10)
    generation = inv.index().generation
    view = inv.kernels_in(zone("b"))
    api.put("node-b", UBUNTU, zone="b")  # same kernel and labels: a heartbeat
    eventually(lambda: inv.status()["events"]["MODIFIED"] == 1, what="MODIFIED seen")
    assert inv.index().generation == generation
    assert inv.kernels_in(zone("b")) is view  # the per-scope cache survived


def test_relist_after_410_gone(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, registry = start()
    assert inv.wait_synced(10)
    eventually(lambda: api.open_watches == 1, what="a watch")

    # An ERROR 410 event on the open watch -> re-list.
    api.break_watches("gone")
    eventually(lambda: inv.status()["relists"] == 2, what="re-list after ERROR 410")
    assert kernels(inv) == {EL7, UBUNTU}

    # The history is compacted while the watch is down, and the cluster changes meanwhile:
    # the reconnecting watch gets 410, the re-list must pick up the changes.
    eventually(lambda: api.open_watches == 1, what="watch again")
    with api.cond:
        api.down = True
    api.break_watches("drop")
    eventually(lambda: api.open_watches == 0, what="watch dropped")
    api.delete("node-a")
    api.put("node-e", COS)
    api.compact()
    with api.cond:
        api.down = False
    eventually(lambda: inv.status()["relists"] == 3, what="re-list after compaction")
    eventually(lambda: kernels(inv) == {UBUNTU, COS}, what="state after re-list")
    relist = api.list_requests()[-2]  # page 1 of the re-list (page 2 carries continue)
    assert "resourceVersion" not in relist and "continue" not in relist
    assert metric(registry, "nfsguard_node_watch_events_total", {"type": "ERROR"}) == 2
    assert metric(registry, "nfsguard_node_inventory_relists_total") == 3

    # Keeps following after the re-list.
    api.put("node-f", EL7_NEW)
    eventually(lambda: kernels(inv) == {UBUNTU, COS, EL7_NEW}, what="watch after re-list")
    assert not inv.stale


def test_recovers_after_dropped_connection(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, registry = start()
    assert inv.wait_synced(10)
    eventually(lambda: api.open_watches == 1, what="a watch")
    api.put("node-d", COS)
    eventually(lambda: COS in (kernels(inv) or ()), what="node-d")

    with api.cond:
        api.down = True
    api.break_watches("drop")  # half an event, then the socket goes away
    eventually(lambda: inv.status()["errors"] >= 1, what="the drop noticed")
    api.put("node-d", EL7_NEW)  # changed while we are disconnected
    api.delete("node-c")
    with api.cond:
        api.down = False
    eventually(lambda: kernels(inv) == {EL7, UBUNTU, EL7_NEW}, what="catch up after drop")
    # Caught up by watching from the last resourceVersion, not by re-listing.
    assert inv.status()["relists"] == 1
    resumed = api.watch_requests()[-1]
    assert int(resumed["resourceVersion"][0]) == 104
    assert not inv.stale and inv.broken_for() == 0.0
    assert metric(registry, "nfsguard_node_watch_errors_total") >= 1


def test_goes_stale_past_the_bound_and_recovers(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    # The test holds the inventory's clock, so "within the bound" and "past it" are
    # claims about set times, not about how fast this machine noticed the drop.
    clock = ManualClock()
    inv, registry = start(stale_after=60.0, clock=clock)
    assert inv.wait_synced(10)
    eventually(lambda: api.open_watches == 1, what="a watch")
    with api.cond:
        api.down = True
    api.break_watches("drop")
    eventually(lambda: inv.status()["errors"] >= 1, what="the drop noticed")
    clock.advance(59.0)
    # Broken but within the bound: the last known state still answers.
    assert inv.broken_for() == 59.0
    assert kernels(inv) == {EL7, UBUNTU}
    assert not inv.stale and not inv.status()["stale"]
    clock.advance(2.0)
    view = inv.kernels_in(zone("a"))
    assert view == KernelView(known=False, reason="node watch stale for 61s")
    assert not inv.kernels_in(ALL_NODES).known
    status = inv.status()
    assert status["stale"] and status["synced"] and status["ready"]
    assert status["watchBrokenSeconds"] == 61.0
    assert status["lastError"]
    eventually(lambda: metric(registry, "nfsguard_node_inventory_stale") == 1, what="gauge")
    assert metric(registry, "nfsguard_node_watch_broken_seconds") == 61.0

    with api.cond:
        api.down = False
    eventually(lambda: inv.kernels_in(ALL_NODES).known, what="fresh again")
    assert kernels(inv) == {EL7, UBUNTU}
    assert inv.broken_for() == 0.0
    eventually(lambda: metric(registry, "nfsguard_node_inventory_stale") == 0, what="gauge")


def test_unknown_until_first_list(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    api.status_override = 403  # e.g. RBAC not applied yet
    inv, registry = start()
    eventually(lambda: inv.status()["errors"] >= 2, what="failing lists")
    refused = KernelView(known=False, reason="node inventory not synced yet (HTTP 403 Forbidden)")
    # the reason is the last error: waited for, so that one failure of another kind on a
    # loaded machine (a read cut short) is followed by the next 403 instead of failing
    eventually(lambda: inv.kernels_in(ALL_NODES) == refused, what="the 403 as the reason")
    assert not inv.synced and not inv.status()["ready"]
    eventually(lambda: registry.get_sample_value("nfsguard_node_inventory_synced") == 0)
    api.status_override = None
    assert inv.wait_synced(10)
    eventually(lambda: kernels(inv) == {EL7, UBUNTU}, what="synced answer")


def test_idle_watch_reconnects_without_going_stale(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, _ = start(idle_timeout=0.3, stale_after=0.5)
    assert inv.wait_synced(10)
    eventually(lambda: len(api.watch_requests()) >= 4, what="idle reconnects")
    assert inv.kernels_in(ALL_NODES).known
    assert inv.status()["errors"] == 0 and inv.status()["relists"] == 1


def test_server_timeout_ends_watch_cleanly(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, _ = start(watch_timeout=1.0)
    assert inv.wait_synced(10)
    eventually(lambda: len(api.watch_requests()) >= 2, timeout=10, what="second watch")
    assert int(api.watch_requests()[0]["timeoutSeconds"][0]) in (1, 2)
    assert inv.status()["errors"] == 0 and inv.broken_for() == 0.0


def test_stop_ends_the_thread(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    inv, _ = start()
    assert inv.wait_synced(10)
    eventually(lambda: api.open_watches == 1, what="a watch")
    began = time.monotonic()
    inv.stop()
    assert time.monotonic() - began < 3
    assert inv.status()["threadAlive"]  # stopped on purpose is not "dead"


def test_expired_continue_token_restarts_the_list(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    api.refuse_continue = 1  # the first continue token has expired (410)
    inv, _ = start()
    assert inv.wait_synced(10)
    assert kernels(inv) == {EL7, UBUNTU}
    assert [("continue" in q) for q in api.list_requests()] == [False, True, False, True]
    assert inv.status()["relists"] == 1 and inv.status()["errors"] == 1


MULTIPROCESS_SCRIPT = """
import sys, time
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from webhook.cluster.nodes import start_node_inventory
inv = start_node_inventory(sys.argv[1], metrics_interval=0.05)
assert inv.wait_synced(10)
time.sleep(0.5)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
inv.stop()
"""


def test_metrics_reach_a_multiprocess_registry(api: FakeNodeAPI, tmp_path: Path) -> None:
    """``nfsguard serve`` runs prometheus-client in multiprocess mode (one file per worker)."""
    import os
    import subprocess
    import sys

    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, kubeconfig_for(tmp_path, api.port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "nfsguard_node_inventory_nodes 3.0" in out
    assert "nfsguard_node_inventory_kernels 2.0" in out
    assert "nfsguard_node_inventory_synced 1.0" in out
    assert "nfsguard_node_inventory_relists_total 1.0" in out


def test_a_server_that_expires_every_watch_gets_paced_relists(
    api: FakeNodeAPI, start: Callable[..., tuple[LiveNodeInventory, CollectorRegistry]]
) -> None:
    with api.cond:
        api.compacted = 10**9  # every watch: ERROR 410 at once
    inv, _ = start(backoff_initial=0.1, backoff_max=0.4)
    assert inv.wait_synced(10)
    time.sleep(1.5)
    relists = inv.status()["relists"]
    # Unpaced this would be hundreds; backing off 0.1, 0.2, 0.4, 0.4 ... it is a handful.
    assert 2 <= relists <= 8, relists
    assert kernels(inv) in ({EL7, UBUNTU}, None)

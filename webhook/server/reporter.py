"""``nfsguard report``: keep one OpenReports ClusterReport per NFS PV and StorageClass,
and one namespaced Report per Pod or workload with inline NFS volumes, current, and
gauges of what the cluster holds.

A separate process (its own Deployment), not a mode of ``serve``: the webhook's
workers answer admission reviews under a timeout and hold no watches of PVs; a
reporter that lists and watches the whole cluster must never share their CPU or
their failure modes (docs/reporter.md).

Threads: one list+watch per kind (PVs, StorageClasses, Pods and the seven workload
kinds; webhook/cluster/reports.py, relisting on 410 Gone) feeding a queue; of Pods and
workloads only those naming an ``nfs`` or ``csi`` volume are kept (most pods name
neither: the view stays the size of what is reported); the main loop evaluates each changed object
with the admission engine and ``classify`` (webhook/engine/scan.py), as ``scan``
does, keeps every replica's view (metrics, /readyz), and writes reports only while
it holds the Lease (webhook/cluster/lease.py): standbys never write. Pods, PVCs and
FailedMount events (stranded pods, webhook/engine/stranded.py) are relisted every
``resync`` seconds, when every object is evaluated again too; a policy change
(files polled like serve's hot reload, or the ConfigMap read each resync)
re-evaluates everything at once.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from webhook.api.kube import POD_SPEC_POINTERS
from webhook.api.target import InvalidObject
from webhook.cluster.lease import LeaseLock
from webhook.cluster.reports import (
    CLUSTER_REPORTS,
    REPORTS,
    Absent,
    Expired,
    ReportKey,
    ReportStore,
    watch,
)
from webhook.cluster.scan import ClusterError, ClusterObjects
from webhook.engine.engine import Engine
from webhook.engine.openreport import SELECTOR, report_for, report_name
from webhook.engine.pod_volumes import names_inline_volume
from webhook.engine.scan import Classification, classify
from webhook.engine.stranded import PodIndex
from webhook.nfs.inventory import NodeInventory, StaticInventory, nodes_from_objects

log = logging.getLogger("nfsguard.report")

CLUSTER_KINDS = ("PersistentVolume", "StorageClass")
POD_KINDS = tuple(POD_SPEC_POINTERS)
KINDS = CLUSTER_KINDS + POD_KINDS
INDEX = (("Pod", ""), ("PersistentVolumeClaim", ""), ("Event", "reason=FailedMount"))
#: The report kind and resource of each store.
STORES = (("ClusterReport", CLUSTER_REPORTS), ("Report", REPORTS))

Key = tuple[str, str, str]  # (kind, namespace or "", name)


def key_of(kind: str, obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (kind, str(meta.get("namespace") or ""), str(meta.get("name")))


def report_key(key: Key) -> tuple[str, ReportKey]:
    """(the report's resource, (namespace, name)) of the object ``key`` names."""
    kind, namespace, name = key
    plural = CLUSTER_REPORTS if kind in CLUSTER_KINDS else REPORTS
    return plural, (namespace, report_name(kind, name))


@dataclass
class Settings:
    namespace: str  # the Lease's
    lease_name: str
    identity: str
    lease_seconds: int = 15
    renew_every: float = 5.0
    resync: float = 300.0
    poll: float = 2.0  # policy files / queue wait
    watch_timeout: int = 300


def kept(kind: str, obj: Mapping[str, Any]) -> bool:
    """Whether the view keeps ``obj``: every PV and StorageClass, the Pods and workloads
    that name an ``nfs`` or ``csi`` volume (the rest cannot be in scope)."""
    return kind in CLUSTER_KINDS or names_inline_volume(obj)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.objects = Gauge(
            "nfsguard_report_objects",
            "NFS PVs, StorageClasses, Pods and workloads by kind, verdict and deciding rule",
            ["kind", "verdict", "rule"],
            registry=r,
        )
        self.stranded = Gauge(
            "nfsguard_report_stranded_pods", "Pods stranded on NFS PVs", registry=r
        )
        self.leader = Gauge(
            "nfsguard_report_leader", "1 while this replica holds the Lease", registry=r
        )
        self.crd = Gauge(
            "nfsguard_report_openreports_available",
            "1 when the CRD of the report kind (ClusterReport, Report) is installed",
            ["kind"],
            registry=r,
        )
        self.writes = Counter(
            "nfsguard_report_writes_total",
            "Report and ClusterReport writes by this replica (put: create or replace; delete)",
            ["op"],
            registry=r,
        )
        self.written = Gauge(
            "nfsguard_report_reports",
            "Reports this replica keeps, by kind (ClusterReport, Report)",
            ["kind"],
            registry=r,
        )


class _Renew(Exception):
    """A write pass stopped to renew the Lease first."""


class Reporter:
    def __init__(
        self,
        cluster: ClusterObjects,
        lease: LeaseLock,
        settings: Settings,
        engine: Callable[[], Engine],
        policy_changed: Callable[[], bool],
    ) -> None:
        self.cluster, self.lease, self.s = cluster, lease, settings
        self._engine, self._policy_changed = engine, policy_changed
        self.stores = {
            plural: ReportStore(cluster, settings.identity, plural) for _, plural in STORES
        }
        self.metrics = Metrics()
        self.events: queue.Queue[tuple[str, Key, dict[str, Any] | None]] = queue.Queue()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.verdicts: dict[Key, Classification | None] = {}
        self.synced: set[str] = set()
        self.index = PodIndex()
        self.inventory: NodeInventory = StaticInventory([])
        self.dirty: set[Key] = set()
        self.gone: set[Key] = set()
        #: plural -> whether its CRD is installed (None: not looked yet)
        self.crd_present: dict[str, bool | None] = {plural: None for _, plural in STORES}
        self.leading = False
        self.beat = time.monotonic()  # the main loop's last round (/healthz)
        self._renewed = 0.0  # monotonic time of the last successful acquire/renew
        self.stop = threading.Event()

    # -- watches ----------------------------------------------------------------------

    def _follow(self, kind: str) -> None:
        """List then watch ``kind`` forever; every list replaces the view of that kind."""
        delay = 1.0
        while not self.stop.is_set():
            try:
                items: dict[Key, Any] = {}
                seen: dict[str, str] = {}
                for obj in self.cluster.list(kind, seen=seen):
                    if kept(kind, obj):
                        items[key_of(kind, obj)] = obj
                rv = seen["resourceVersion"]
                self.events.put(("LIST", (kind, "", ""), {"items": items}))
                delay = 1.0
                while not self.stop.is_set():
                    for etype, obj in watch(self.cluster, kind, rv, timeout=self.s.watch_timeout):
                        rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                        if etype == "BOOKMARK":
                            continue
                        if etype != "DELETED" and not kept(kind, obj):
                            etype = "DELETED"  # names no inline NFS volume (any more)
                        self.events.put((etype, key_of(kind, obj), obj))
            except Expired:
                log.info("%s watch: resourceVersion expired (410), listing again", kind)
            except Exception as exc:  # retried with backoff; the thread must not die
                log.warning("%s list/watch: %s; retrying in %.0fs", kind, exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _apply(self, etype: str, key: Key, obj: dict[str, Any] | None) -> None:
        kind = key[0]
        if etype == "LIST":
            assert obj is not None
            items: dict[Key, Any] = obj["items"]
            for k in [k for k in self.objects if k[0] == kind and k not in items]:
                self._forget(k)
            for k, o in items.items():
                self.objects[k] = o
                self.dirty.add(k)
            self.synced.add(kind)
            return
        if etype == "DELETED":
            self._forget(key)
        elif obj is not None:
            self.objects[key] = obj
            self.dirty.add(key)

    def _forget(self, key: Key) -> None:
        self.objects.pop(key, None)
        self.verdicts.pop(key, None)
        self.dirty.discard(key)
        self.gone.add(key)

    def _reindex(self) -> None:
        index = PodIndex()
        try:
            for kind, selector in INDEX:
                for obj in self.cluster.list(kind, field_selector=selector):
                    index.add(obj)
            self.inventory = StaticInventory(nodes_from_objects(self.cluster.list("Node")))
        except ClusterError as exc:
            log.warning("pod index: %s (keeping the last one)", exc)
            return
        self.index = index
        self.dirty.update(self.objects)

    # -- evaluation and writing -------------------------------------------------------

    def _evaluate(self) -> None:
        engine = self._engine()
        for key in list(self.dirty):
            obj = self.objects.get(key)
            if obj is None:
                continue
            try:
                ev = engine.evaluate(obj, operation="CREATE", inventory=self.inventory)
                self.verdicts[key] = classify(ev)
            except InvalidObject as exc:
                log.warning("%s %s: %s", key[0], "/".join(k for k in key[1:] if k), exc)
                self.verdicts[key] = None

    def _publish(self) -> None:
        m = self.metrics
        m.objects.clear()
        counts: dict[tuple[str, str, str], int] = {}
        stranded = 0
        for (kind, _, name), c in self.verdicts.items():
            if c is None:
                continue
            rule = c.evaluation.deciding.rule.name if c.evaluation.deciding else ""
            k = (kind, c.verdict.value, rule)
            counts[k] = counts.get(k, 0) + 1
            if kind == "PersistentVolume":
                stranded += sum(1 for p in self.index.pods_of(name) if p.stranded)
        for labels, n in counts.items():
            m.objects.labels(*labels).set(n)
        m.stranded.set(stranded)
        m.leader.set(1 if self.leading else 0)
        for report_kind, plural in STORES:
            m.crd.labels(report_kind).set(1 if self.crd_present[plural] else 0)
            m.written.labels(report_kind).set(len(self.stores[plural].known))

    def _check_crds(self) -> None:
        """Read what each store holds; note (and log once per change) which CRDs exist."""
        for report_kind, plural in STORES:
            crd = f"{plural}.openreports.io"
            try:
                self.stores[plural].sync(SELECTOR)
            except Absent:
                if self.crd_present[plural] is not False:
                    log.warning(
                        "the OpenReports %s CRD (%s) is not installed: no %ss are written; "
                        "metrics and /readyz go on",
                        report_kind,
                        crd,
                        report_kind,
                    )
                self.crd_present[plural] = False
                continue
            if self.crd_present[plural] is False:
                log.info("the OpenReports %s CRD is installed now: writing them", report_kind)
            self.crd_present[plural] = True

    def _may_write(self) -> bool:
        """Still surely the writer: renewed less than half a lease duration ago (a long
        pass stops before another replica could take the Lease by its clock)."""
        return self.leading and time.monotonic() - self._renewed < self.s.lease_seconds / 2

    def _write(self, keys: set[Key], full: bool) -> None:
        """Bring the reports of ``keys`` (all when ``full``) in line with the view; stops
        (the next pass goes on) when the Lease is due for renewal."""
        if full:
            self._check_crds()
        wanted: set[tuple[str, ReportKey]] = set()
        for key, c in self.verdicts.items():
            if c is None:
                continue
            plural, rkey = report_key(key)
            if not self.crd_present[plural]:
                continue
            wanted.add((plural, rkey))
            if full or key in keys:
                if not self._may_write():
                    raise _Renew()
                pods = self.index.pods_of(key[2]) if key[0] == "PersistentVolume" else []
                if self.stores[plural].put(report_for(self.objects[key], c, pods)):
                    self.metrics.writes.labels("put").inc()
        for plural, store in self.stores.items():
            if not self.crd_present[plural]:
                continue
            for rkey in [k for k in store.known if (plural, k) not in wanted]:
                if not self._may_write():
                    raise _Renew()
                store.delete(rkey)
                self.metrics.writes.labels("delete").inc()

    # -- the loop ---------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        missing = [k for k in KINDS if k not in self.synced]
        if missing:
            return False, f"not listed yet: {', '.join(missing)}"
        return True, (
            f"{len(self.verdicts)} objects; "
            f"{'leader' if self.leading else 'standby'}; "
            + "; ".join(
                f"{kind} CRD {_presence(self.crd_present[plural])}" for kind, plural in STORES
            )
        )

    def run(self) -> None:
        for kind in KINDS:
            threading.Thread(
                target=self._follow, args=(kind,), name=f"nfsguard-watch-{kind}", daemon=True
            ).start()
        next_renew = next_resync = retry_at = 0.0
        while not self.stop.is_set():
            now = self.beat = time.monotonic()
            full = False
            if retry_at and now >= retry_at:  # the last write pass failed: a full one now
                full, retry_at = True, 0.0
            if now >= next_renew:
                was = self.leading
                self.leading = self.lease.try_acquire_or_renew()
                if self.leading:
                    self._renewed = now
                if self.leading and not was:
                    log.info(
                        "holding lease %s/%s: writing reports", self.s.namespace, self.s.lease_name
                    )
                    full = True
                elif was and not self.leading:
                    log.info("lost lease %s/%s: standby", self.s.namespace, self.s.lease_name)
                next_renew = now + self.s.renew_every
            if now >= next_resync:
                self._reindex()
                full = True
                next_resync = now + self.s.resync
            try:
                policy_changed = self._policy_changed()
            except Exception:  # a poll that fails must not stop the reporter
                log.exception("policy poll failed (keeping the last policies)")
                policy_changed = False
            if policy_changed:
                self.dirty.update(self.objects)
                full = True
            try:
                item = self.events.get(timeout=min(self.s.poll, self.s.renew_every))
                self._apply(*item)
                while True:
                    self._apply(*self.events.get_nowait())
            except queue.Empty:
                pass
            changed = set(self.dirty) | set(self.gone)
            self._evaluate()
            self.dirty.clear()
            if self.leading and all(k in self.synced for k in KINDS) and (full or changed):
                try:
                    self._write(changed, full)
                    self.gone.clear()
                except _Renew:
                    self.dirty.update(k for k in changed if k in self.objects)
                    next_renew = 0.0
                except ClusterError as exc:
                    log.warning(
                        "writing reports: %s (a full pass again in %.1fs)", exc, self.s.renew_every
                    )
                    self.gone.clear()  # the full pass deletes what is not wanted
                    retry_at = now + self.s.renew_every
            elif not self.leading:
                self.gone.clear()
            self._publish()
        self.lease.release()


def _presence(present: bool | None) -> str:
    return "unknown" if present is None else "present" if present else "absent"


def configmap_fingerprint(cm: Mapping[str, Any] | None) -> str:
    data = (cm or {}).get("data") or {}
    text = "\n".join(f"{k}\0{v}" for k, v in sorted(data.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def serve_http(reporter: Reporter, host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` (Prometheus) and ``/readyz`` (200 once PVs and StorageClasses are
    listed, on every replica), in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, status, ctype = (
                    generate_latest(reporter.metrics.registry),
                    200,
                    CONTENT_TYPE_LATEST,
                )
            elif self.path.startswith("/healthz"):  # alive: the main loop goes round
                ok = time.monotonic() - reporter.beat < 60
                body, status, ctype = (
                    b"ok\n" if ok else b"stuck\n",
                    200 if ok else 503,
                    "text/plain",
                )
            elif self.path.startswith("/readyz"):
                ok, why = reporter.ready()
                body, status, ctype = (why + "\n").encode(), 200 if ok else 503, "text/plain"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="nfsguard-report-http", daemon=True).start()
    return server

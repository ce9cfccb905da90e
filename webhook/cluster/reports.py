"""The cluster side of ``nfsguard report``: watches of PVs, StorageClasses, Pods and
workloads, and the OpenReports ``ClusterReport`` and (namespaced) ``Report`` objects
nfsguard owns.

A watch starts from the resourceVersion of a paged list (webhook/cluster/scan.py) and
streams JSON lines (apimachinery's watch protocol); ``410 Gone`` (an expired
resourceVersion, as an ERROR event or the answer itself) raises ``Expired`` and the
caller lists again, as client-go's reflector does (tools/cache/reflector.go).

Reports are written with ``fieldManager`` ``nfsguard-report`` and an annotation naming
the writer (its Lease identity), created with POST and replaced with PUT at the
resourceVersion read (a concurrent writer gets 409, never a lost update).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import urllib3

from webhook.cluster.scan import _PATHS, ClusterError, ClusterObjects, Conflict

GROUP_PATH = "/apis/openreports.io/v1alpha1"
CLUSTER_REPORTS = "clusterreports"
REPORTS = "reports"
FIELD_MANAGER = "nfsguard-report"
WRITER = "nfsguard.io/written-by"


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Absent(Exception):
    """The report's CRD is not installed (404 on its resource)."""


def watch(
    cluster: ClusterObjects, kind: str, resource_version: str, *, timeout: int = 300
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) of each change to ``kind`` after ``resource_version``, until the
    server ends the watch (``timeoutSeconds``) or it breaks."""
    path, api_version = _PATHS[kind]
    query = [
        ("watch", "true"),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(timeout)),
    ]
    api = cluster.api
    method, url, headers, _, _ = api.param_serialize(
        "GET",
        path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    try:
        resp: Any = api.call_api(method, url, headers, _request_timeout=(10, timeout + 30))
    except urllib3.exceptions.HTTPError as exc:
        raise ClusterError(f"watch {path}: {exc}") from None
    raw = resp.response
    try:
        if resp.status == 410:
            raise Expired()
        if resp.status != 200:
            raise ClusterError(f"watch {path}: {resp.status} {resp.reason}")
        buffer = b""
        for chunk in raw.stream(65536):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                etype, obj = str(event.get("type")), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired()
                    raise ClusterError(f"watch {path}: {obj.get('message')}")
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api_version)
                yield etype, obj
    finally:
        with contextlib.suppress(Exception):
            raw.close()
        with contextlib.suppress(Exception):
            raw.release_conn()


ReportKey = tuple[str, str]  # (namespace, name); namespace "" for a ClusterReport


class ReportStore:
    """The reports of one resource (``clusterreports``, or ``reports`` in every
    namespace) labelled as nfsguard's: list, put (only when changed), delete."""

    def __init__(
        self, cluster: ClusterObjects, identity: str, plural: str = CLUSTER_REPORTS
    ) -> None:
        self.cluster = cluster
        self.identity = identity
        self.plural = plural
        #: (namespace, name) -> (resourceVersion, the content as last read or written)
        self.known: dict[ReportKey, tuple[str, dict[str, Any]]] = {}

    def _collection(self, namespace: str) -> str:
        if self.plural == CLUSTER_REPORTS:
            return f"{GROUP_PATH}/{self.plural}"
        return f"{GROUP_PATH}/namespaces/{namespace}/{self.plural}"

    def _path(self, key: ReportKey) -> str:
        return f"{self._collection(key[0])}/{key[1]}"

    def _query(self) -> list[tuple[str, str]]:
        # Strict: the apiserver refuses a field the CRD schema lacks (never pruned silently)
        return [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]

    def sync(self, selector: str) -> None:
        """Read every report nfsguard owns (paged; a namespaced kind across all
        namespaces); raises Absent without the CRD."""
        known: dict[ReportKey, tuple[str, dict[str, Any]]] = {}
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", "500")]
            if token:
                query.append(("continue", token))
            page = self._get(f"{GROUP_PATH}/{self.plural}", query)
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                key = (str(meta.get("namespace") or ""), str(meta.get("name")))
                known[key] = (str(meta.get("resourceVersion")), item)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        self.known = known

    def _get(self, path: str, query: list[tuple[str, str]]) -> Any:
        try:
            return self.cluster._call("GET", path, query=query)
        except ClusterError as exc:
            if " 404 " in str(exc):
                raise Absent() from None
            raise

    @staticmethod
    def key_of(report: dict[str, Any]) -> ReportKey:
        meta = report["metadata"]
        return (str(meta.get("namespace") or ""), str(meta["name"]))

    def put(self, report: dict[str, Any]) -> bool:
        """Create or replace ``report``; False when the stored one already says the same."""
        key = self.key_of(report)
        report["metadata"].setdefault("annotations", {})[WRITER] = self.identity
        have = self.known.get(key)
        if have is not None and _same(have[1], report):
            return False
        for _ in range(3):
            try:
                if have is None:
                    stored = self.cluster._call(
                        "POST", self._collection(key[0]), query=self._query(), body=report
                    )
                else:
                    body = json.loads(json.dumps(report))
                    body["metadata"]["resourceVersion"] = have[0]
                    stored = self.cluster._call(
                        "PUT", self._path(key), query=self._query(), body=body
                    )
            except Conflict:  # exists already, or changed meanwhile: read it and go again
                current = self._read(key)
                have = (str(current["metadata"]["resourceVersion"]), current) if current else None
                continue
            except ClusterError as exc:
                if have is None or " 404 " not in str(exc):
                    raise
                have = None  # deleted by someone else meanwhile: create it again
                continue
            self.known[key] = (str(stored["metadata"]["resourceVersion"]), stored)
            return True
        raise ClusterError(f"{self.plural} {'/'.join(k for k in key if k)}: kept conflicting")

    def _read(self, key: ReportKey) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.cluster._call("GET", self._path(key))
        except ClusterError as exc:
            if " 404 " in str(exc):
                return None
            raise
        return obj

    def delete(self, key: ReportKey) -> None:
        self.known.pop(key, None)
        try:
            self.cluster._call("DELETE", self._path(key))
        except ClusterError as exc:
            if " 404 " not in str(exc):
                raise


def _same(stored: dict[str, Any], desired: dict[str, Any]) -> bool:
    keys = ("scope", "source", "summary", "results")
    if any(stored.get(k) != desired.get(k) for k in keys):
        return False
    meta, want = stored.get("metadata") or {}, desired["metadata"]
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in want["labels"].items()) and all(
        annotations.get(k) == v for k, v in want["annotations"].items()
    )

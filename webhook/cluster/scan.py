"""The cluster side of ``nfsguard scan`` and ``remediate``: paged lists, reads, JSON
patches with a resourceVersion precondition, pod deletion, and who is asking.

Lists are paged (``limit``/``continue``, apimachinery's ListOptions) and parsed page
by page from the raw JSON, so memory holds one page, not the cluster; items get
their ``kind``/``apiVersion`` back (a list's items carry neither). A patch carries
``replace /metadata/resourceVersion`` with the version the plan was made from: the
apiserver refuses it with 409 Conflict when the object changed meanwhile
(optimistic concurrency, apiserver/pkg/registry/generic/registry/store.go), so a
concurrent change is never overwritten; the caller re-reads and re-plans.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import urllib3
from kubernetes import client as k8s

#: (list path, kind, apiVersion) of what a scan reads.
_PATHS = {
    "PersistentVolume": ("/api/v1/persistentvolumes", "v1"),
    "StorageClass": ("/apis/storage.k8s.io/v1/storageclasses", "storage.k8s.io/v1"),
    "Pod": ("/api/v1/pods", "v1"),
    "PersistentVolumeClaim": ("/api/v1/persistentvolumeclaims", "v1"),
    "Event": ("/api/v1/events", "v1"),
    "Node": ("/api/v1/nodes", "v1"),
    "ReplicationController": ("/api/v1/replicationcontrollers", "v1"),
    "Deployment": ("/apis/apps/v1/deployments", "apps/v1"),
    "ReplicaSet": ("/apis/apps/v1/replicasets", "apps/v1"),
    "StatefulSet": ("/apis/apps/v1/statefulsets", "apps/v1"),
    "DaemonSet": ("/apis/apps/v1/daemonsets", "apps/v1"),
    "Job": ("/apis/batch/v1/jobs", "batch/v1"),
    "CronJob": ("/apis/batch/v1/cronjobs", "batch/v1"),
}
DEFAULT_PAGE = 500  # kubectl's --chunk-size default


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read and re-plan."""


class ClusterError(Exception):
    """The apiserver refused a request; one line: what, and its answer."""


def _message(exc: k8s.ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


class ClusterObjects:
    """Reads and writes what a scan and a remediation touch, through one ``ApiClient``."""

    def __init__(self, api: k8s.ApiClient, *, page: int = DEFAULT_PAGE) -> None:
        self.api = api
        self.page = page

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        method_, url, headers, data, post = self.api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp: Any = self.api.call_api(method_, url, headers, data, post)
        except urllib3.exceptions.HTTPError as exc:
            raise ClusterError(f"{method} {path}: {exc}") from None
        resp.read()
        if not 200 <= resp.status <= 299:
            answer = k8s.ApiException(status=resp.status, reason=resp.reason)
            answer.body = resp.data
            if resp.status == 409:
                raise Conflict(_message(answer))
            raise ClusterError(f"{method} {path}: {resp.status} {_message(answer)}")
        return json.loads(resp.data)

    def list(
        self, kind: str, *, field_selector: str = "", seen: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object of ``kind``, page by page (``limit``/``continue``). ``seen`` gets
        the list's ``resourceVersion`` (the first page's: a watch starts there)."""
        path, api_version = _PATHS[kind]
        token = ""
        while True:
            query = [("limit", str(self.page))]
            if token:
                query.append(("continue", token))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            page = self._call("GET", path, query=query)
            if seen is not None and not token:
                seen["resourceVersion"] = str((page.get("metadata") or {}).get("resourceVersion"))
            for item in page.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                yield item
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as it is now; None when it is gone."""
        path, api_version = _PATHS[kind]
        try:
            obj: dict[str, Any] = self._call("GET", f"{path}/{name}")
        except ClusterError as exc:
            if " 404 " in str(exc):
                return None
            raise
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api_version)
        return obj

    def get_namespaced(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A namespaced object (``ConfigMap``), or None when it does not exist."""
        path = {"ConfigMap": "configmaps"}[kind]
        try:
            obj: dict[str, Any] = self._call("GET", f"/api/v1/namespaces/{namespace}/{path}/{name}")
        except ClusterError as exc:
            if " 404 " in str(exc):
                return None
            raise
        return obj

    def patch(
        self, kind: str, name: str, resource_version: str, ops: Sequence[Any]
    ) -> dict[str, Any]:
        """Apply JSON patch ``ops`` only if the object is still at ``resource_version``.
        Raises Conflict when it is not (nothing is written then)."""
        path, _ = _PATHS[kind]
        precondition = {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": resource_version,
        }
        body = [precondition, *ops]
        result: dict[str, Any] = self._call(
            "PATCH", f"{path}/{name}", body=body, content_type="application/json-patch+json"
        )
        return result

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the pod if it is still the one seen (uid precondition); False when gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)
        except ClusterError as exc:
            if " 404 " in str(exc):
                return False
            raise
        except Conflict:
            return False  # another pod of that name now: not the stranded one
        return True

    def whoami(self) -> str:
        """The user the apiserver authenticates (SelfSubjectReview, GA in 1.28); "" when
        it cannot say."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            review = self._call(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body
            )
        except (ClusterError, Conflict):
            return ""
        return str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")

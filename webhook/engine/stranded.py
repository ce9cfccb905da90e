"""Which pods use which PV, and which of them an NFS mount has stranded.

A pod is stranded (docs/after-an-incident.md, /work's existing-objects notes from
pkg/kubelet): phase ``Pending``, a container waiting with reason
``ContainerCreating``, and ``FailedMount`` Events whose ``involvedObject`` is the
pod ("Unable to attach or mount volumes ... timed out waiting for the condition").
The pod's volumes name PVCs, a PVC's ``spec.volumeName`` names its PV, the pod's
``spec.nodeName`` names the node.

Pure and incremental: objects are added as a paged list streams them, and only what a
report needs is kept of each (names, node, phase, a few event messages), never the
objects themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_MAX_MESSAGES = 3  # distinct FailedMount messages kept per pod (evidence, not a log)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class PodRef:
    namespace: str
    name: str
    node: str | None
    phase: str | None
    creating: bool  # a container waits in ContainerCreating
    claims: tuple[str, ...]
    controller: str | None  # "Kind/name" of the controller owner, None for a bare pod
    uid: str = ""
    messages: list[str] = field(default_factory=list)
    failed_mounts: int = 0

    @property
    def stranded(self) -> bool:
        return self.phase == "Pending" and self.creating and self.failed_mounts > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "node": self.node,
            "phase": self.phase,
            "stranded": self.stranded,
            "controller": self.controller,
            "failedMounts": self.failed_mounts,
            "messages": list(self.messages),
        }


def _creating(status: Mapping[str, Any]) -> bool:
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _list(status.get(key)):
            waiting = _map(_map(_map(cs).get("state")).get("waiting"))
            if waiting.get("reason") == "ContainerCreating":
                return True
    return False


def _controller(meta: Mapping[str, Any]) -> str | None:
    for ref in _list(meta.get("ownerReferences")):
        ref = _map(ref)
        if ref.get("controller") is True:
            return f"{ref.get('kind', '?')}/{ref.get('name', '?')}"
    return None


class PodIndex:
    """Pods, PVC bindings and FailedMount events, added in any order."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], PodRef] = {}
        self._bound: dict[tuple[str, str], str] = {}  # (namespace, claim) -> PV name
        self._pvc_of_pv: dict[str, tuple[str, str]] = {}
        self._events: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._by_pv: dict[str, list[PodRef]] | None = None

    def add(self, obj: Mapping[str, Any]) -> None:
        kind = obj.get("kind")
        if kind == "Pod":
            self.add_pod(obj)
        elif kind == "PersistentVolumeClaim":
            self.add_pvc(obj)
        elif kind == "Event":
            self.add_event(obj)

    def add_pod(self, obj: Mapping[str, Any]) -> None:
        meta, spec, status = (
            _map(obj.get("metadata")),
            _map(obj.get("spec")),
            _map(obj.get("status")),
        )
        claims = tuple(
            str(claim)
            for v in _list(spec.get("volumes"))
            if (claim := _map(_map(v).get("persistentVolumeClaim")).get("claimName"))
        )
        if not claims:
            return  # no PV can strand it
        ns, name = str(meta.get("namespace", "default")), str(meta.get("name", "?"))
        node = spec.get("nodeName")
        phase = status.get("phase")
        self._pods[(ns, name)] = PodRef(
            ns,
            name,
            str(node) if node else None,
            str(phase) if phase else None,
            _creating(status),
            claims,
            _controller(meta),
            str(meta.get("uid", "")),
        )
        self._by_pv = None

    def add_pvc(self, obj: Mapping[str, Any]) -> None:
        meta, spec = _map(obj.get("metadata")), _map(obj.get("spec"))
        volume = spec.get("volumeName")
        if volume:
            key = (str(meta.get("namespace", "default")), str(meta.get("name", "?")))
            self._bound[key] = str(volume)
            self._pvc_of_pv[str(volume)] = key
            self._by_pv = None

    def add_event(self, obj: Mapping[str, Any]) -> None:
        if obj.get("reason") != "FailedMount":
            return
        # core/v1 names the pod in involvedObject, events.k8s.io/v1 in regarding
        involved = _map(obj.get("involvedObject") or obj.get("regarding"))
        if involved.get("kind") != "Pod":
            return
        key = (str(involved.get("namespace", "default")), str(involved.get("name", "?")))
        count, messages = self._events.get(key, (0, []))
        raw = obj.get("count") or _map(obj.get("series")).get("count")
        count += raw if isinstance(raw, int) and raw > 0 else 1
        message = obj.get("message") or obj.get("note")
        if isinstance(message, str) and message not in messages and len(messages) < _MAX_MESSAGES:
            messages.append(message)
        self._events[key] = (count, messages)
        self._by_pv = None

    def claim_of(self, pv: str) -> tuple[str, str] | None:
        """The (namespace, name) of the PVC bound to ``pv``, if one was listed."""
        return self._pvc_of_pv.get(pv)

    def pods_of(self, pv: str) -> list[PodRef]:
        """The pods that use ``pv`` through a bound PVC, each with its FailedMount evidence."""
        if self._by_pv is None:
            by_pv: dict[str, list[PodRef]] = {}
            for (ns, _), pod in self._pods.items():
                count, messages = self._events.get((ns, pod.name), (0, []))
                pod.failed_mounts, pod.messages = count, messages
                for claim in pod.claims:
                    volume = self._bound.get((ns, claim))
                    if volume is not None:
                        by_pv.setdefault(volume, []).append(pod)
            self._by_pv = by_pv
        return self._by_pv.get(pv, [])

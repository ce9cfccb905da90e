"""The inline NFS volumes of a Pod or of a workload's pod template, one target each.

A pod names NFS without a PersistentVolume in exactly one place, its spec's
``volumes`` list (k8s.io/api core/v1 PodSpec; containers and initContainers only
mount those volumes by name, so they are never read):

- ``nfs: {server, path, readOnly}``: the in-tree NFS plugin. There is no field for
  mount options at all ("you can't specify NFS mount options in a Pod spec",
  Kubernetes volumes docs), so the client negotiates from 4.2 unless the node's
  /etc/nfsmount.conf says otherwise, which nfsguard cannot see: such a volume is
  read as negotiated 4.2 and can be denied, warned about or recorded, never pinned
  (``inline="nfs"``, no option place);
- ``csi: {driver, volumeAttributes}`` of a driver whose profile says
  ``inlineVolumes: true`` (csi-driver-nfs): read through that profile as the PV it
  stands for, its ``volumeAttributes.mountOptions`` the one option place, pinned on
  CREATE (a Pod's volumes and a Job's template never change after, so an UPDATE can
  only warn there; a Deployment's, StatefulSet's, DaemonSet's, ReplicaSet's,
  ReplicationController's and CronJob's template may, and an UPDATE that changes
  the volume is pinned too, one that keeps it never: webhook/engine/engine.py);
- ``ephemeral.volumeClaimTemplate`` is a PVC: its StorageClass and the PV provisioned
  for it are reviewed as such when they are written, so it is not read here;
  ``persistentVolumeClaim`` likewise.

The pod spec is ``spec`` (Pod), ``spec.template.spec`` (Deployment, ReplicaSet,
StatefulSet, DaemonSet, Job, ReplicationController) or
``spec.jobTemplate.spec.template.spec`` (CronJob): ``POD_SPEC_POINTERS``. Each target
carries the workload's kind and name, the volume's name, the labels the pods will
carry (the object's own, overlaid by the template's: what a pod would be selected
by, and what the workload is labelled with) and the node scope of the pod spec
(webhook/engine/node_scope.py ``pod_scope``); each pointer is the volume's own
(``/spec/template/spec/volumes/2/csi/volumeAttributes/mountOptions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

from webhook.api.kube import JSON_OBJECT, POD_SPEC_POINTERS, ObjectKind
from webhook.api.target import InvalidObject, NFSTarget, OptionPlace
from webhook.engine.node_scope import pod_scope
from webhook.engine.profiles import DriverProfiles
from webhook.engine.reading import normalise_path, read_inline_csi
from webhook.engine.view import mapping, string, string_map

#: The driver name an inline ``nfs:`` volume is recorded with (kubelet's in-tree plugin).
INLINE_NFS_DRIVER = "in-tree-nfs"


def pod_bearing(kind: object) -> bool:
    """Whether ``kind`` is a Pod or a workload with a pod template."""
    return isinstance(kind, str) and kind in POD_SPEC_POINTERS


def pod_spec_of(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], Mapping[str, str]]:
    """(pointer of the pod spec, the pod spec, the template's labels) of a pod-bearing
    object; an absent spec reads as empty. Raises InvalidObject for a wrong shape."""
    kind = cast(str, obj.get("kind"))
    pointer = POD_SPEC_POINTERS[kind]
    node: Any = obj
    labels: Mapping[str, str] = {}
    where = ""
    steps = pointer.strip("/").split("/")
    for i, step in enumerate(steps):
        where = f"{where}.{step}" if where else step
        node = mapping(node.get(step), where)
        if step == "template" and i == len(steps) - 2:
            meta = mapping(node.get("metadata"), where + ".metadata")
            labels = string_map(meta.get("labels"), where + ".metadata.labels")
    return pointer, node, labels


def names_inline_volume(obj: Mapping[str, Any]) -> bool:
    """Whether a pod-bearing ``obj`` names an ``nfs`` or ``csi`` volume at all: the cheap
    test a watcher of every pod uses to keep only what may be in scope (the webhook's
    matchConditions ask the same). A shape that cannot be read counts as naming one, so
    the engine gets to say what is wrong with it."""
    try:
        _, spec, _ = pod_spec_of(obj)
    except (InvalidObject, KeyError):
        return True
    volumes = spec.get("volumes")
    if volumes is None:
        return False
    if not isinstance(volumes, list):
        return True
    return any(
        not isinstance(v, JSON_OBJECT) or v.get("nfs") is not None or v.get("csi") is not None
        for v in volumes
    )


def volume_targets(
    obj: Mapping[str, Any],
    name: str,
    labels: Mapping[str, str],
    profiles: DriverProfiles,
) -> list[NFSTarget]:
    """One target per inline NFS volume of ``obj`` (a pod-bearing kind), in
    ``spec.volumes`` order; ``name`` and ``labels`` are the object's own (metadata).
    Raises InvalidObject for an object no apiserver would send."""
    kind = cast(ObjectKind, obj.get("kind"))
    base, spec, template_labels = pod_spec_of(obj)
    where = base.strip("/").replace("/", ".")
    raw_volumes = spec.get("volumes")
    if raw_volumes is None:
        return []
    if not isinstance(raw_volumes, list):
        raise InvalidObject(f"{where}.volumes must be a list")
    found: list[NFSTarget] = []
    meta = obj.get("metadata")
    namespace = (
        (string(meta.get("namespace"), "metadata.namespace") or "")
        if isinstance(meta, JSON_OBJECT)
        else ""
    )
    pod_labels = {**labels, **template_labels} if template_labels else labels
    scope = None
    for i, raw in enumerate(raw_volumes):
        at = f"{where}.volumes[{i}]"
        if not isinstance(raw, JSON_OBJECT):
            raise InvalidObject(f"{at} must be an object")
        nfs, csi = raw.get("nfs"), raw.get("csi")
        if nfs is None and csi is None:
            continue
        volume = string(raw.get("name"), f"{at}.name") or f"#{i}"
        pointer = f"{base}/volumes/{i}"
        target: NFSTarget | None
        if nfs is not None:
            source = mapping(nfs, f"{at}.nfs")
            server = string(source.get("server"), f"{at}.nfs.server")
            path = string(source.get("path"), f"{at}.nfs.path")
            read_only = source.get("readOnly")
            if read_only is not None and not isinstance(read_only, bool):
                raise InvalidObject(f"{at}.nfs.readOnly must be a boolean")
            target = NFSTarget(
                kind=kind,
                name=name,
                driver=INLINE_NFS_DRIVER,
                provisioner=None,
                server=server or None,
                path=normalise_path(path),
                storage_class=None,
                labels=pod_labels,
                places=(),
                pin_place="",
                scope=scope or pod_scope(spec),
                volume=volume,
                inline="nfs",
                namespace=namespace,
                read_only=bool(read_only),
            )
        else:
            source = mapping(csi, f"{at}.csi")
            driver = string(source.get("driver"), f"{at}.csi.driver")
            if not driver:
                continue
            string_map(source.get("volumeAttributes"), f"{at}.csi.volumeAttributes")
            read = read_inline_csi(source, profiles)
            if read is None:
                continue
            target = dataclasses.replace(
                read,
                kind=kind,
                name=name,
                labels=pod_labels,
                places=tuple(_moved(p, pointer, kind in TEMPLATE_UPDATABLE) for p in read.places),
                pin_place=_label(read.pin_place),
                scope=scope or pod_scope(spec),
                volume=volume,
                inline="csi",
                namespace=namespace,
            )
        scope = target.scope
        found.append(target)
    return found


_CSI_BASE = "/spec/csi"


def _label(label: str) -> str:
    """A place's label on the pod volume: ``csi.volumeAttributes.mountOptions``."""
    return label.removeprefix("spec.")


#: Kinds whose pod template may change on UPDATE (a rollout follows). A Pod's volumes
#: and a Job's template never change after creation (core and batch validation).
TEMPLATE_UPDATABLE = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "CronJob", "ReplicationController"}
)


def _moved(place: OptionPlace, volume_pointer: str, mutable: bool) -> OptionPlace:
    """``place`` read from the stand-in PV, with its pointers under the pod volume."""

    def move(pointer: str) -> str:
        if pointer.startswith(_CSI_BASE + "/") or pointer == _CSI_BASE:
            return volume_pointer + "/csi" + pointer[len(_CSI_BASE) :]
        raise AssertionError(f"inline volume place outside its csi source: {pointer}")

    return dataclasses.replace(
        place,
        label=_label(place.label),
        pointer=move(place.pointer),
        container=move(place.container) if place.container else "",
        mutable=mutable,
    )

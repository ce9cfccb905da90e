"""What a JSON object is, checked fast.

Objects decoded from JSON are plain dicts; ``isinstance(x, Mapping)`` alone goes
through the ABC machinery and costs several times a dict check, dozens of
times per review. Checking ``dict`` first keeps any other Mapping accepted.

Also the Kubernetes names nfsguard reads: annotations, operations, object kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

JSON_OBJECT: Final = (dict, Mapping)

#: kubelet's MountOptionFromSpec (pkg/volume/util/util.go) reads this annotation
#: INSTEAD of ``spec.mountOptions`` when a PV carries it.
LEGACY_ANNOTATION = "volume.beta.kubernetes.io/mount-options"
#: Set by external provisioners on the PVs they create.
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"

#: ``request.operation`` of an AdmissionReview (k8s.io/api/admission/v1 Operation).
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
#: The kinds nfsguard reads: the two objects that carry NFS mount options to a node,
#: and the Pods and workloads whose pod spec may name NFS volumes inline.
ObjectKind = Literal[
    "PersistentVolume",
    "StorageClass",
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
]

#: Where each pod-bearing kind keeps its pod spec (RFC 6901), and the resource the
#: apiserver names it by: a Pod's own ``spec``, a controller's ``spec.template.spec``,
#: a CronJob's ``spec.jobTemplate.spec.template.spec`` (k8s.io/api core/v1, apps/v1,
#: batch/v1). Volumes listed there are the only place a pod names an inline source.
POD_SPEC_POINTERS: Final[dict[str, str]] = {
    "Pod": "/spec",
    "Deployment": "/spec/template/spec",
    "ReplicaSet": "/spec/template/spec",
    "StatefulSet": "/spec/template/spec",
    "DaemonSet": "/spec/template/spec",
    "Job": "/spec/template/spec",
    "ReplicationController": "/spec/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
}
#: The API group and resource of each pod-bearing kind (for webhook rules and listing).
POD_KIND_RESOURCES: Final[dict[str, tuple[str, str]]] = {
    "Pod": ("", "pods"),
    "ReplicationController": ("", "replicationcontrollers"),
    "Deployment": ("apps", "deployments"),
    "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}
#: csi-driver-nfs's driver name (its inline volumes are read through its profile).
CSI_DRIVER_NFS = "nfs.csi.k8s.io"


def object_name(obj: Mapping[str, Any] | None) -> str:
    """How nfsguard names an object in messages and records: ``metadata.name``, or
    ``<generateName>*`` before the apiserver has named it (a CREATE with generateName,
    apiserver/pkg/registry/rest/create.go), or "" when it has neither. Lenient: the
    engine's reading checks the shapes (engine/view.py)."""
    meta = obj.get("metadata") if obj is not None else None
    if not isinstance(meta, JSON_OBJECT):
        return ""
    name = meta.get("name")
    if isinstance(name, str) and name:
        return name
    generate = meta.get("generateName")
    return f"{generate}*" if isinstance(generate, str) and generate else ""

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
#: The kinds nfsguard reads: the two objects that carry NFS mount options to a node.
ObjectKind = Literal["PersistentVolume", "StorageClass"]


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

"""What a JSON object is, checked fast.

Objects decoded from JSON are plain dicts; ``isinstance(x, Mapping)`` alone goes
through the ABC machinery and costs several times a dict check, dozens of
times per review. Checking ``dict`` first keeps any other Mapping accepted.

Also the Kubernetes names nfsguard reads: annotations, operations, object kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

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

"""What a JSON object is, checked fast.

Objects decoded from JSON are plain dicts; ``isinstance(x, Mapping)`` alone goes
through the ABC machinery and costs several times a dict check, dozens of
times per review. Checking ``dict`` first keeps any other Mapping accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

JSON_OBJECT: Final = (dict, Mapping)

#: kubelet's MountOptionFromSpec (pkg/volume/util/util.go) reads this annotation
#: INSTEAD of ``spec.mountOptions`` when a PV carries it.
LEGACY_ANNOTATION = "volume.beta.kubernetes.io/mount-options"
#: Set by external provisioners on the PVs they create.
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
CSI_DRIVER_NFS = "nfs.csi.k8s.io"
SUBDIR_PROVISIONER_SUFFIX = "nfs-subdir-external-provisioner"

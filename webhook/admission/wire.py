"""AdmissionReview v1, as kube-apiserver sends and verifies it.

Only the fields nfsguard reads are typed; the raw object is kept as given so
that patches are built against exactly what the apiserver will apply them to.
See staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/request/admissionreview.go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


@dataclass(frozen=True)
class UserInfo:
    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    kind: str  # request.kind.kind, e.g. "PersistentVolume"
    resource: str  # request.resource.resource, e.g. "persistentvolumes"
    operation: str  # CREATE / UPDATE / DELETE / CONNECT
    name: str  # empty on CREATE with generateName
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    sub_resource: str = ""
    namespace: str = ""
    user: UserInfo = field(default_factory=UserInfo)
    dry_run: bool = False

    @property
    def display_name(self) -> str:
        """The name, or ``generateName*`` when the apiserver has not named it yet."""
        if self.name:
            return self.name
        meta = (self.object or {}).get("metadata") or {}
        generate = meta.get("generateName") if isinstance(meta, Mapping) else None
        return f"{generate}*" if generate else ""

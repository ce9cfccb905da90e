"""The request of an AdmissionReview, as nfsguard reads it: frozen and typed.

Only the fields nfsguard reads are typed; the raw object is kept as given so
that patches are built against exactly what the apiserver will apply them to.
``webhook.admission.review`` parses the wire format into these; the audit
trail records them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.api.kube import object_name


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
        return self.name or object_name(self.object)

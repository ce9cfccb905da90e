"""A review without an apiserver: the request it would send for an object read from a
file, and the object it would store.

``nfsguard review``, ``policy explain`` and ``policy test`` decide objects from files
through the same ``decide`` as the served webhook; these build what the apiserver
builds around that call (the AdmissionRequest in, the patched object out), so a file
is answered exactly as the cluster answers it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

from webhook.api.decision import Decision
from webhook.api.kube import object_name
from webhook.api.review import AdmissionRequest, UserInfo


def object_label(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` (``Kind/generateName*`` before the apiserver names it) in messages."""
    return f"{obj.get('kind', '?')}/{object_name(obj) or '?'}"


def offline_request(
    obj: Mapping[str, Any],
    operation: str,
    uid: str,
    old: Mapping[str, Any] | None = None,
) -> AdmissionRequest:
    """The AdmissionRequest the apiserver would send for ``obj``. ``old`` is the
    oldObject of an UPDATE (``--old FILE``, a suite case's ``oldObject``): without
    one, an UPDATE is judged as one that changes the NFS options (a file holds one
    state), so authors see what their rule does; with one whose options are the
    same, as an existing object's update (never denied)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    name = meta.get("name")
    return AdmissionRequest(
        uid=uid,
        kind=str(obj.get("kind", "")),
        resource="",
        operation=operation,
        name=name if isinstance(name, str) else "",
        object=obj,
        old_object=old if operation == "UPDATE" else None,
        user=UserInfo(username="nfsguard-review"),
    )


def admitted(obj: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """``obj`` as the apiserver stores it once the decision's JSON patch is applied."""
    if not decision.patch:
        return dict(obj)
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(obj)), list(decision.patch))
    return patched

"""JSON Patch operations (RFC 6902) as nfsguard writes them.

A pin writes only ``add`` (a field or a missing parent map), ``replace`` and
``remove``, each through an RFC 6901 pointer read from the object itself
(webhook/engine/pin.py); the apiserver applies them in order.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class PatchOperation(TypedDict):
    op: Literal["add", "replace", "remove"]
    path: str  # RFC 6901 JSON pointer into the object under review
    value: NotRequired[Any]  # add and replace only

"""Field access to one PersistentVolume or StorageClass while it is read.

Two jobs for webhook/engine/reading.py and webhook/engine/places.py: the shape
checks (a field of the wrong JSON type is an ``InvalidObject``, answered 400,
never a 500), and ``ObjectView``, which looks fields up by the ``FieldRef`` a
driver profile names them with (attribute and parameter keys case-insensitively,
as csi-driver-nfs reads them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.api.kube import JSON_OBJECT, LEGACY_ANNOTATION, ObjectKind
from webhook.api.profile import FieldRef, ValueSource
from webhook.api.target import InvalidObject

_TEMPLATE = re.compile(r"\{([^{}]+)\}")

# ------------------------------------------------------------- shape checks


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, JSON_OBJECT):
        raise InvalidObject(f"{where} must be an object")
    return value


def string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidObject(f"{where} must be a string")
    return value


def string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidObject(f"{where} must be a list of strings")
    for item in value:  # a loop, not all(generator): cheaper for the usual few options
        if not isinstance(item, str):
            raise InvalidObject(f"{where} must be a list of strings")
    return tuple(value)


def string_map(value: Any, where: str) -> Mapping[str, str]:
    checked = mapping(value, where)
    for key, item in checked.items():
        if not isinstance(item, str):
            raise InvalidObject(f"{where}.{key} must be a string")
    return checked


def lenient_map(value: Any) -> Mapping[str, str]:
    """String entries only: enough to identify a driver without judging its object."""
    if not isinstance(value, JSON_OBJECT):
        return {}
    # Usually every entry is a string: then the map itself, no copy (and the reader
    # knows the strict check cannot fail).
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return value


# ------------------------------------------------------------- field access


class ObjectView:
    """Read access to one PV or StorageClass by ``FieldRef`` (keys case-insensitive).

    ``fields`` is the map holding the named fields (a PV's spec, or the StorageClass
    itself), looked up once by the reader, not per field and per profile tried;
    ``attributes`` are the PV's volumeAttributes or the StorageClass's parameters.
    """

    __slots__ = ("annotations", "attributes", "fields", "kind", "obj")

    def __init__(
        self,
        kind: ObjectKind,
        obj: Mapping[str, Any],
        fields: Mapping[str, Any],
        annotations: Mapping[str, str],
        attributes: Mapping[str, str],
    ) -> None:
        self.kind: ObjectKind = kind
        self.obj = obj
        self.fields = fields
        self.annotations = annotations
        self.attributes = attributes

    def lookup(self, ref: FieldRef) -> tuple[str, Any] | None:
        """(actual key or field, value) when the field is present (not null)."""
        key = ref.key
        if key is not None:
            if not ref.valid_for(self.kind):
                return None
            wanted = key.lower()
            for k, v in self.attributes.items():
                if k.lower() == wanted:
                    return k, v
            return None
        spec = self.fields
        text = ref.text
        if text == "annotation":
            value = self.annotations.get(LEGACY_ANNOTATION)
        elif text in ("spec.mountOptions", "mountOptions"):
            value = spec.get("mountOptions")
        elif text.startswith("spec.nfs."):
            nfs = spec.get("nfs")
            value = nfs.get(text[len("spec.nfs.") :]) if isinstance(nfs, JSON_OBJECT) else None
        elif text == "spec.csi.volumeHandle":
            csi = spec.get("csi")
            value = csi.get("volumeHandle") if isinstance(csi, JSON_OBJECT) else None
        else:
            value = None
        return None if value is None else (text, value)

    def string(self, ref: FieldRef) -> str | None:
        found = self.lookup(ref)
        return found[1] if found is not None and isinstance(found[1], str) else None

    def resolve(self, sources: Sequence[ValueSource]) -> str | None:
        """The first source that gives a non-empty value."""
        for source in sources:
            value: str | None
            if source.template is not None:
                value = self._template(source.template)
            elif source.ref is not None:
                value = self.string(source.ref)
                if value is not None and source.regex is not None:
                    m = source.regex.search(value)
                    value = (m.group(1) if m.groups() else m.group(0)) if m else None
            else:
                value = None
            if value:
                return value
        return None

    def _template(self, template: str) -> str | None:
        missing = False

        def fill(m: re.Match[str]) -> str:
            nonlocal missing
            value = self.string(FieldRef(m.group(1)))
            if not value:
                missing = True
                return ""
            return value

        out = _TEMPLATE.sub(fill, template)
        return None if missing else out

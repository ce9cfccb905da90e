"""The published JSON Schemas as validators, and the one wording of their errors.

nfsguard publishes a schema per document kind (webhook/data/*.schema.json, also
shipped as policies/schema/ for editors with yaml-language-server), so editors
and nfsguard agree on what is valid. This module never reads them: whoever reads
package data (webhook.files.packaged) hands the parsed schemas to ``Schemas``.
Every kind words a schema error the same way here (unknown key with the closest
allowed one, missing key, type with a quoting hint, enum choices); a kind only
says what differs (``Wording``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from webhook.config.documents import Document, Path, Problem


@dataclass(frozen=True)
class Schemas:
    """A validator per document kind nfsguard reads."""

    policy: jsonschema.Draft202012Validator
    profile: jsonschema.Draft202012Validator
    suite: jsonschema.Draft202012Validator

    @classmethod
    def from_dicts(
        cls, *, policy: Mapping[str, Any], profile: Mapping[str, Any], suite: Mapping[str, Any]
    ) -> Schemas:
        """Validators for the parsed ``nfsmountpolicy``, ``nfsdriverprofile`` and
        ``nfspolicytest`` schemas."""
        return cls(
            jsonschema.Draft202012Validator(policy),
            jsonschema.Draft202012Validator(profile),
            jsonschema.Draft202012Validator(suite),
        )


def dotted(path: Sequence[str | int]) -> str:
    """``("spec", "rules", 0, "match")`` -> ``spec.rules[0].match``, for messages."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _no_context(data: Any, path: Path) -> str:
    return ""


@dataclass(frozen=True)
class Wording:
    """What one document kind words differently; everything else is shared."""

    #: A prefix saying what ``path`` is inside, e.g. ``rule "pin-filer": ``.
    context: Callable[[Any, Path], str] = _no_context
    #: For an unknown key, list every allowed key (a suite's few, fixed keys) instead
    #: of suggesting the closest one (a typo in a policy or profile).
    list_allowed: bool = False
    #: The message of an enum at one path, a format string of ``where``, ``value``
    #: and ``choices``, e.g. a policy's spec.pin names what nfsguard can pin.
    enums: Mapping[Path, str] = field(default_factory=dict)


#: The wording of a kind that words nothing its own way.
PLAIN = Wording()

_TYPE_NAMES = {
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}

#: The DNS-1123 label and subdomain patterns of the schemas: Kubernetes object and
#: rule names (k8s.io/apimachinery/pkg/util/validation), worded as Kubernetes does.
_DNS_1123 = frozenset(
    {
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    }
)


def _closest(key: str, allowed: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    return found[0] if found else None


def schema_problems(
    doc: Document, validator: jsonschema.Draft202012Validator, wording: Wording = PLAIN
) -> list[Problem]:
    """Every error of ``doc`` against ``validator``, each at the key or value it is
    about, in the order the validator finds them."""
    problems: list[Problem] = []
    for error in validator.iter_errors(doc.data):
        path: Path = tuple(error.absolute_path)
        ctx = wording.context(doc.data, path)
        where = dotted(path)
        kind = error.validator
        if kind == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set((error.schema.get("properties") or {}).keys())
            for key in error.instance:
                if key in allowed:
                    continue
                msg = f"{ctx}unknown key {key!r} in {where}"
                if wording.list_allowed:
                    msg += f" (allowed: {', '.join(sorted(allowed))})"
                elif hint := _closest(key, allowed):
                    msg += f" (did you mean {hint!r}?)"
                problems.append(Problem(doc.at((*path, key), key=True), msg))
            continue
        if kind == "required":
            missing = error.message.split("'")[1] if "'" in error.message else "?"
            msg = f"{ctx}{where}: missing required key {missing!r}"
        elif kind == "type":
            want = error.validator_value
            want_text = _TYPE_NAMES.get(want, str(want)) if isinstance(want, str) else str(want)
            msg = f"{ctx}{where} must be {want_text}"
            if want == "string" and isinstance(error.instance, int | float):
                msg += f" (quote it: YAML read {error.instance!r} as a number)"
        elif kind in ("enum", "const"):
            options = error.validator_value
            choices = ", ".join(map(str, options)) if isinstance(options, list) else str(options)
            template = wording.enums.get(path, "{where}: {value!r} is not one of: {choices}")
            msg = ctx + template.format(where=where, value=error.instance, choices=choices)
        elif kind == "pattern" and error.validator_value in _DNS_1123:
            msg = (
                f"{ctx}{where}: {error.instance!r} is not a valid DNS-1123 name "
                "(lower case letters, digits and '-')"
            )
        else:
            msg = f"{ctx}{where}: {error.message}"
        problems.append(Problem(doc.at(path), msg))
    return problems

"""The JSON Schemas nfsguard publishes (webhook/data/*.schema.json), loaded once.

Policies, driver profiles and policy test suites are checked against them, so
editors with yaml-language-server and nfsguard agree on what is valid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema


@cache
def load_schema(name: str) -> dict[str, Any]:
    """``webhook/data/<name>.schema.json`` as a dict."""
    text = resources.files("webhook").joinpath(f"data/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name))


def dotted(path: Sequence[str | int]) -> str:
    """``("spec", "rules", 0, "match")`` -> ``spec.rules[0].match``, for messages."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"

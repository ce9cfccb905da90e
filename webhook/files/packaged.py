"""Package data (webhook/data/): the published JSON Schemas and the built-in driver
profiles, each read once per process.

The one place that opens these files: config and engine take what is read here
as arguments, from the composition roots (each CLI command, the server's
workers, the benches, the tests).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from webhook.api.profile import DriverProfile
from webhook.config.profiles import builtin_profiles_of
from webhook.config.schema import Schemas

#: The built-in profiles' file, as their problems and ``DriverProfile.source`` name it.
BUILTIN_SOURCE = "webhook/data/drivers.yaml"


def _data(name: str) -> str:
    return resources.files("webhook").joinpath(f"data/{name}").read_text(encoding="utf-8")


@cache
def schema(name: str) -> dict[str, Any]:
    """``webhook/data/<name>.schema.json`` as a dict (``nfsmountpolicy``,
    ``nfsdriverprofile``, ``nfspolicytest``)."""
    parsed: dict[str, Any] = json.loads(_data(f"{name}.schema.json"))
    return parsed


@cache
def schemas() -> Schemas:
    """A validator per document kind, for ``webhook.config.load.load``."""
    return Schemas.from_dicts(
        policy=schema("nfsmountpolicy"),
        profile=schema("nfsdriverprofile"),
        suite=schema("nfspolicytest"),
    )


def builtin_text() -> str:
    """The text of webhook/data/drivers.yaml (the documents of policies/drivers/)."""
    return _data("drivers.yaml")


@cache
def builtin_profiles() -> tuple[DriverProfile, ...]:
    """The profiles shipped with nfsguard, in file order. Raises PolicyError on a
    packaging bug, so a broken build fails at start-up, never silently."""
    return builtin_profiles_of(builtin_text(), BUILTIN_SOURCE, schemas().profile)

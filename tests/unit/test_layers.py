"""The pure rooms (webhook.api, .nfs, .config, .engine) open no file.

import-linter (pyproject.toml, ``make lint``) keeps them from importing what does
I/O; this test checks what an import rule cannot see: a function of a pure room
that reaches for a file itself. The inputs are loaded first, as a composition root
loads them (policy text is given as strings, package data is read before the guard,
by webhook.files.packaged, and passed in);
then every way to open a file refuses, and policies are loaded and linted through
the config room and objects decided through the engine. Any open fails the test.
"""

from __future__ import annotations

import builtins
import importlib.resources
import io
import os
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.fixtures.samples import pv, storage_class
from webhook.api.decision import Outcome
from webhook.api.profile import DriverProfile
from webhook.config.lint import lint
from webhook.config.load import load
from webhook.config.schema import Schemas
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.nfs.inventory import StaticInventory
from webhook.nfs.scope import Node

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: house-rules
spec:
  version: "2026.11.27-1"
  pin: "4.0"
  rules:
  - name: incident-pin
    match:
      exports:
      - server: 192.168.100.7
        path: /data1/k8sdev/**
    action: pin
  - name: legacy-deny
    match:
      exports:
      - server: "*.legacy.corp"
    action: deny
  - name: ssd-warn
    match:
      storageClassNames: [nfs-ssd]
    action: warn
"""

# An operator's own driver, in a policy file: the config room builds its profile in
# the same pass, and the engine reads the StorageClass below through it.
OPERATOR_PROFILE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: example-filer}
spec:
  storageClass:
    match:
      provisioners: [filer.example.com]
    export:
      server: [parameters.server]
    mountOptions: [mountOptions]
  versions: ["4.0", "4.1"]
"""

SOURCES = [("10-house.yaml", POLICY), ("20-filer.yaml", OPERATOR_PROFILE)]

OBJECTS = {
    "pin": pv("pv-incident"),
    "deny": pv("pv-legacy", server="filer9.legacy.corp", path="/vol"),
    "warn": storage_class("nfs-ssd", provisioner="filer.example.com", server="10.99.0.2"),
}

# What each object gets: a pin, a refusal, a warning (the three actions that act).
EXPECTED = {"pin": Outcome.MUTATED, "deny": Outcome.DENIED, "warn": Outcome.WARNED}


class FileOpened(BaseException):
    """Raised by every file-opening call while guarded. A BaseException, so that an
    ``except Exception`` in the code under test cannot swallow it; every call is also
    recorded, so a swallowed one fails the test all the same."""


# Every call that opens a file by name, as (owner, attribute name).
OPENERS: list[tuple[Any, str]] = [
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (pathlib.Path, "open"),
    (pathlib.Path, "read_text"),
    (pathlib.Path, "read_bytes"),
    (pathlib.Path, "write_text"),
    (pathlib.Path, "write_bytes"),
    (importlib.resources, "files"),
    (importlib.resources, "as_file"),
    (importlib.resources, "path"),
    (importlib.resources, "read_text"),
    (importlib.resources, "read_binary"),
    (importlib.resources, "open_text"),
    (importlib.resources, "open_binary"),
]


@contextmanager
def watching_opens(
    monkeypatch: pytest.MonkeyPatch, *, refuse: bool = True
) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Within the block every opener of ``OPENERS`` is recorded (name, arguments) and
    refuses, or with ``refuse=False`` goes on to open; yields the record."""
    opened: list[tuple[str, tuple[Any, ...]]] = []

    def guarded(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def opener(*args: Any, **kwargs: Any) -> Any:
            opened.append((name, args))
            if refuse:
                raise FileOpened(f"{name}{args!r}")
            return real(*args, **kwargs)

        return opener

    with monkeypatch.context() as patch:
        for owner, attribute in OPENERS:
            name = f"{getattr(owner, '__name__', owner)}.{attribute}"
            patch.setattr(owner, attribute, guarded(name, getattr(owner, attribute)))
        yield opened


def cold_package_data() -> None:
    """Empty webhook.files.packaged's caches, so no test passes on a cache another
    test happened to warm."""
    for cached in (packaged.builtin_profiles, packaged.schemas, packaged.schema):
        cached.cache_clear()


def package_data_read_first() -> tuple[tuple[DriverProfile, ...], Schemas]:
    """What a composition root reads before it calls the pure rooms (the built-in
    profiles and the JSON Schemas, webhook.files.packaged), read here from cold."""
    cold_package_data()
    return packaged.builtin_profiles(), packaged.schemas()


def test_the_pure_rooms_load_lint_and_decide_without_opening_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builtins_loaded, schemas = package_data_read_first()
    inventory = StaticInventory([Node("node-1", "5.15.0-91-generic", {})])
    with watching_opens(monkeypatch) as opened:
        loaded = load(SOURCES, builtin_profiles=builtins_loaded, schemas=schemas)
        linted = lint(loaded)
        engine = Engine(loaded.policies, loaded.profiles)
        decisions = {
            label: engine.decide(obj, inventory=inventory) for label, obj in OBJECTS.items()
        }
    assert opened == []
    assert not linted.errors
    assert decisions["warn"].target is not None
    assert decisions["warn"].target.driver == "example-filer"
    assert {p.name for p in builtins_loaded} < {p.name for p in loaded.profiles}
    assert {label: d.outcome for label, d in decisions.items()} == EXPECTED
    assert decisions["pin"].patch
    assert {label: d.deciding.rule for label, d in decisions.items() if d.deciding} == {
        "pin": "incident-pin",
        "deny": "legacy-deny",
        "warn": "ssd-warn",
    }


def test_the_guard_catches_every_opener(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Each opener of ``OPENERS`` refuses and is recorded while guarded, so the test
    above cannot pass on a guard that is silently off."""
    here = pathlib.Path(__file__)
    calls: list[Callable[[], object]] = [
        lambda: open(here),  # noqa: SIM115
        lambda: io.open(here),  # noqa: SIM115, UP020
        lambda: os.open(here, os.O_RDONLY),
        lambda: here.open(),
        here.read_text,
        here.read_bytes,
        lambda: (tmp_path / "x").write_text("x"),
        lambda: (tmp_path / "x").write_bytes(b"x"),
        lambda: importlib.resources.files("webhook"),
        lambda: importlib.resources.as_file(here),
        lambda: importlib.resources.path("webhook", "py.typed"),
        lambda: importlib.resources.read_text("webhook", "py.typed"),
        lambda: importlib.resources.read_binary("webhook", "py.typed"),
        lambda: importlib.resources.open_text("webhook", "py.typed"),
        lambda: importlib.resources.open_binary("webhook", "py.typed"),
    ]
    assert len(calls) == len(OPENERS)
    with watching_opens(monkeypatch) as opened:
        for call in calls:
            with pytest.raises(FileOpened):
                call()
    assert len(opened) == len(OPENERS)


def test_package_data_is_read_by_files_packaged_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The only reads of package data: webhook.files.packaged opens drivers.yaml and
    the three schemas once; asked again (each CLI command, each worker), it opens
    nothing."""
    cold_package_data()
    with watching_opens(monkeypatch, refuse=False) as opened:
        for _ in range(2):
            packaged.builtin_profiles()
            packaged.schemas()
    assert [pathlib.Path(args[0]).name for name, args in opened if name == "Path.read_text"] == [
        "drivers.yaml",
        "nfsmountpolicy.schema.json",
        "nfsdriverprofile.schema.json",
        "nfspolicytest.schema.json",
    ]

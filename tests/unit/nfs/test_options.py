"""NFS option grammar, effective version and pinning (webhook/nfs/options.py).

Every expectation comes from reference/nfs-semantics.md; the rows that mount.nfs
can check are checked again against the real program in test_mount_nfs_oracle.py.
"""

from __future__ import annotations

import random

import pytest

from webhook.nfs.options import (
    EffectiveVersion,
    VersionKind,
    effective_version,
    is_version_option,
    minor_version,
    pin_entries,
    pin_option,
    pin_string,
    selected_version,
    split_options,
    strip_entries,
    strip_entry,
)

E = VersionKind.EXPLICIT
N = VersionKind.NEGOTIATED
C = VersionKind.CONFLICTING
V3 = VersionKind.NOT_V4
INV = VersionKind.INVALID


# -- the grammar: which options select a version ---------------------------------------


@pytest.mark.parametrize(
    ("option", "version"),
    [
        ("vers=2", "2"),
        ("vers=3", "3"),
        ("vers=4", "4"),
        ("vers=4.0", "4.0"),
        ("vers=4.1", "4.1"),
        ("vers=4.2", "4.2"),
        ("nfsvers=2", "2"),
        ("nfsvers=3", "3"),
        ("nfsvers=4", "4"),
        ("nfsvers=4.0", "4.0"),
        ("nfsvers=4.1", "4.1"),
        ("nfsvers=4.2", "4.2"),
        ("v2", "2"),
        ("v3", "3"),
        ("v4", "4"),
        ("v4.0", "4.0"),
        ("v4.1", "4.1"),
        ("v4.2", "4.2"),
        # unknown values are still version options (reported as invalid, removed by a pin)
        ("vers=4.3", "4.3"),
        ("vers=4.00", "4.00"),
        ("v4.3", "4.3"),
        ("vers=", ""),
        # stray spellings are recognised, so that a pin removes them
        ("NFSVERS=4.1", "4.1"),
        ("Vers=4.0", "4.0"),
        ("V4.2", "4.2"),
        (" nfsvers=4.1", "4.1"),
        ("nfsvers=4.1 ", "4.1"),
        ("nfsvers = 4.1", "4.1"),
    ],
)
def test_selected_version(option: str, version: str) -> None:
    assert selected_version(option) == version
    assert is_version_option(option)
    assert minor_version(option) is None


@pytest.mark.parametrize(
    "option",
    ["hard", "soft", "timeo=600", "retrans=2", "proto=tcp", "vers4", "v", "verbose", "nconnect=4"],
)
def test_not_version_options(option: str) -> None:
    assert selected_version(option) is None
    assert minor_version(option) is None
    assert not is_version_option(option)


@pytest.mark.parametrize(
    ("option", "minor"),
    [
        ("minorversion=0", "0"),
        ("minorversion=1", "1"),
        ("MinorVersion=2", "2"),
        ("minorversion", ""),
    ],
)
def test_minorversion_is_not_a_version_option_but_is_removed(option: str, minor: str) -> None:
    # mount.nfs does not count minorversion= as a version option ...
    assert selected_version(option) is None
    assert minor_version(option) == minor
    # ... but a pin removes it all the same (policy-language.md, action pin).
    assert is_version_option(option)


def test_split_options_splits_every_entry_on_commas() -> None:
    assert split_options(["nfsvers=4.1,hard", "timeo=600"]) == ["nfsvers=4.1", "hard", "timeo=600"]
    assert split_options(["hard,,soft", "", ","]) == ["hard", "soft"]
    assert split_options([]) == []
    # whitespace inside an option is kept as the node would see it
    assert split_options(["hard, nfsvers=4.0"]) == ["hard", " nfsvers=4.0"]


# -- effective version, exactly per the table of nfs-semantics.md ----------------------

EFFECTIVE: list[tuple[list[str], VersionKind, str | None, bool]] = [
    # (options, kind, version, affected)
    ([], N, "4.2", True),
    (["hard"], N, "4.2", True),
    (["vers=4"], N, "4.2", True),
    (["nfsvers=4"], N, "4.2", True),
    (["v4"], N, "4.2", True),
    (["vers=4", "minorversion=0"], E, "4.0", False),
    (["vers=4,minorversion=0"], E, "4.0", False),
    (["vers=4", "minorversion=1"], E, "4.1", True),
    (["v4", "minorversion=2"], E, "4.2", True),
    (["vers=4", "minorversion=1", "minorversion=0"], E, "4.0", False),
    (["minorversion=1"], N, "4.2", True),
    (["minorversion=0"], N, "4.2", True),
    (["vers=4.2", "minorversion=0"], E, "4.2", True),
    (["vers=4.1", "minorversion=0"], E, "4.1", True),
    (["nfsvers=4.0", "minorversion=1"], E, "4.0", False),
    (["nfsvers=4.0", "hard", "timeo=600"], E, "4.0", False),
    (["vers=4.0"], E, "4.0", False),
    (["v4.0"], E, "4.0", False),
    (["vers=4.1"], E, "4.1", True),
    (["nfsvers=4.1"], E, "4.1", True),
    (["v4.1"], E, "4.1", True),
    (["vers=4.2"], E, "4.2", True),
    (["v4.2"], E, "4.2", True),
    (["nfsvers=4.1,hard"], E, "4.1", True),
    (["hard,vers=4.0", "timeo=600"], E, "4.0", False),
    (["vers=4.1", "nfsvers=4.0"], C, None, True),
    (["v4.2", "nfsvers=4.0"], C, None, True),
    (["vers=4", "nfsvers=4.0"], C, None, True),
    (["vers=4.1,v3"], C, None, True),
    # a repeated identical option is that version (conflicts are two *different* versions)
    (["vers=4.1", "vers=4.1"], E, "4.1", True),
    (["vers=4.0", "nfsvers=4.0"], E, "4.0", False),
    (["v3"], V3, "3", False),
    (["vers=3"], V3, "3", False),
    (["nfsvers=3", "hard"], V3, "3", False),
    (["v2"], V3, "2", False),
    (["vers=2"], V3, "2", False),
    (["vers=4.3"], INV, None, True),
    (["v4.3"], INV, None, True),
    (["nfsvers=5"], INV, None, True),
    (["vers=4.00"], INV, None, True),
    (["vers="], INV, None, True),
    (["nfsvers"], INV, None, True),
    (["vers=4", "minorversion=3"], INV, None, True),
    (["vers=4", "minorversion=x"], INV, None, True),
    # mount.nfs and the kernel match option names exactly (case and blanks included):
    # a stray spelling selects nothing on the node, so it cannot be shown safe.
    (["NFSVERS=4.0"], INV, None, True),
    (["Vers=4.0"], INV, None, True),
    (["V4.0"], INV, None, True),
    ([" nfsvers=4.0"], INV, None, True),
    (["hard, nfsvers=4.0"], INV, None, True),
    (["nfsvers=4.0 "], INV, None, True),
    (["nfsvers = 4.0"], INV, None, True),
    (["nfsvers= 4.0"], INV, None, True),
    (["nfsvers=4.0", "MINORVERSION=1"], INV, None, True),
    # blanks around options that select no version do not matter
    (["nfsvers=4.0", " hard"], E, "4.0", False),
]


@pytest.mark.parametrize(
    ("options", "kind", "version", "affected"),
    EFFECTIVE,
    ids=[",".join(row[0]) or "(none)" for row in EFFECTIVE],
)
def test_effective_version(
    options: list[str], kind: VersionKind, version: str | None, affected: bool
) -> None:
    ev = effective_version(split_options(options))
    assert ev.kind is kind, ev
    assert ev.version == version, ev
    assert ev.affected is affected, ev


def test_effective_version_reports_the_version_options_in_order() -> None:
    ev = effective_version(["hard", "vers=4", "timeo=600", "minorversion=1"])
    assert ev.options == ("vers=4", "minorversion=1")
    assert ev.describe() == "4.1 (explicit)"
    assert effective_version([]).describe() == "negotiated (starts at 4.2)"
    assert effective_version(["vers=4.1", "v4.0"]).describe() == "conflicting (vers=4.1,v4.0)"
    assert effective_version(["vers=9"]).describe() == "invalid (vers=9)"
    assert effective_version(["v3"]).describe() == "3 (not-v4)"


def test_affected_is_everything_but_explicit_40_and_not_v4() -> None:
    for kind in VersionKind:
        for version in (None, "2", "3", "4.0", "4.1", "4.2"):
            ev = EffectiveVersion(kind, version)
            safe = kind is V3 or (kind is E and version == "4.0")
            assert ev.affected is (not safe)


# -- strip / pin ------------------------------------------------------------------------


def test_strip_entry() -> None:
    assert strip_entry("nfsvers=4.1,hard") == "hard"
    assert strip_entry("hard,vers=4.2,timeo=600") == "hard,timeo=600"
    assert strip_entry("vers=4,minorversion=1") is None
    assert strip_entry("v4.1") is None
    assert strip_entry("NFSVERS=4.1, hard") == " hard"
    assert strip_entry("hard") == "hard"


def test_strip_entries_drops_emptied_entries_and_keeps_order() -> None:
    assert strip_entries(["vers=4.1", "hard", "minorversion=1,timeo=600", "v4.2"]) == [
        "hard",
        "timeo=600",
    ]
    assert strip_entries(["vers=4.1"]) == []
    assert strip_entries([]) == []


@pytest.mark.parametrize(
    ("entries", "pin", "expected"),
    [
        ([], "4.0", ["nfsvers=4.0"]),
        (["hard"], "4.0", ["hard", "nfsvers=4.0"]),
        (["nfsvers=4.1"], "4.0", ["nfsvers=4.0"]),
        (["hard", "vers=4.2", "timeo=600"], "4.0", ["hard", "nfsvers=4.0", "timeo=600"]),
        (["nfsvers=4.1,hard"], "4.0", ["nfsvers=4.0,hard"]),
        (["hard,v4.2,timeo=600"], "4.0", ["hard,nfsvers=4.0,timeo=600"]),
        (["vers=4.1", "nfsvers=4.0"], "4.0", ["nfsvers=4.0"]),
        (["vers=4", "minorversion=1"], "4.0", ["nfsvers=4.0"]),
        (["minorversion=1", "hard"], "4.0", ["hard", "nfsvers=4.0"]),
        (["minorversion=1,vers=4.1"], "4.0", ["nfsvers=4.0"]),
        (["hard", "minorversion=2", "vers=4.1", "v4.2"], "4.0", ["hard", "nfsvers=4.0"]),
        (["NFSVERS=4.1", " hard"], "4.0", ["nfsvers=4.0", " hard"]),
        (["hard, nfsvers=4.0"], "4.0", ["hard,nfsvers=4.0"]),
        (["vers=4.2"], "4.1", ["nfsvers=4.1"]),
        (["vers=4.2", "hard"], "3", ["nfsvers=3", "hard"]),
        (["nfsvers=4.0"], "4.0", ["nfsvers=4.0"]),
    ],
)
def test_pin_entries(entries: list[str], pin: str, expected: list[str]) -> None:
    assert pin_entries(entries, pin) == expected


def test_pin_string() -> None:
    assert pin_string("vers=4.1,hard", "4.0") == "nfsvers=4.0,hard"
    assert pin_string("hard", "4.0") == "hard,nfsvers=4.0"
    assert pin_string("", "4.0") == "nfsvers=4.0"
    assert pin_string("  ", "4.0") == "nfsvers=4.0"
    assert pin_string("minorversion=1", "4.0") == "nfsvers=4.0"
    assert pin_option("4.0") == "nfsvers=4.0"


# Options pinning may meet: every version spelling, stray ones, and ordinary options.
_VERSIONISH = [
    "vers=4",
    "vers=4.1",
    "nfsvers=4.2",
    "nfsvers=4.0",
    "v4",
    "v4.1",
    "v4.2",
    "v3",
    "vers=2",
    "minorversion=1",
    "minorversion=0",
    "vers=4.7",
    "NFSVERS=4.1",
    " v4.2",
    "Vers=4.0",
]
_OTHER = ["hard", "soft", "timeo=600", "retrans=2", "proto=tcp", "noresvport", "nconnect=8", " ac"]


def generated_entries(count: int, seed: int = 20261127) -> list[list[str]]:
    """Deterministic pseudo-random mountOptions lists (several options per entry, too)."""
    rng = random.Random(seed)
    out: list[list[str]] = [[], [""], ["hard"], ["vers=4.1"]]
    for _ in range(count):
        entries = []
        for _ in range(rng.randint(0, 4)):
            opts = [
                rng.choice(_VERSIONISH if rng.random() < 0.4 else _OTHER)
                for _ in range(rng.randint(1, 3))
            ]
            entries.append(",".join(opts))
        out.append(entries)
    return out


@pytest.mark.parametrize("pin", ["4.0", "4.1", "3"])
def test_pin_invariants_on_many_inputs(pin: str) -> None:
    for entries in generated_entries(600):
        pinned = pin_entries(entries, pin)
        options = split_options(pinned)
        # exactly one version option, the pin, never a second one of any spelling
        assert [o for o in options if is_version_option(o)] == [pin_option(pin)], entries
        # every other option kept, in order
        assert [o for o in options if o != pin_option(pin)] == [
            o for o in split_options(entries) if not is_version_option(o)
        ], entries
        # no entry is left empty
        assert all(e.strip(", ") for e in pinned), (entries, pinned)
        # the node mounts with the pin
        ev = effective_version(options)
        expected_kind = V3 if pin == "3" else E
        assert (ev.kind, ev.version) == (expected_kind, pin), (entries, pinned)
        # pinning is idempotent: a pinned list is left as it is (reinvocation)
        assert pin_entries(pinned, pin) == pinned
        assert pin_string(",".join(pinned), pin) == ",".join(pinned)
        # stripping leaves no version option and keeps the rest
        stripped = strip_entries(entries)
        assert not any(is_version_option(o) for o in split_options(stripped))
        assert split_options(stripped) == [
            o for o in split_options(entries) if not is_version_option(o)
        ]
        assert all(e.strip(", ") for e in stripped if e)


def test_pin_takes_the_place_of_the_first_version_option() -> None:
    entries = ["hard", "timeo=600,v4.2,retrans=2", "vers=4.1"]
    assert pin_entries(entries, "4.0") == ["hard", "timeo=600,nfsvers=4.0,retrans=2"]
    # with no version option (or minorversion alone) it is appended as its own entry
    assert pin_entries(["minorversion=1,hard", "timeo=600"], "4.0") == [
        "hard",
        "timeo=600",
        "nfsvers=4.0",
    ]

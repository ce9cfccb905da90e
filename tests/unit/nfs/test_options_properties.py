"""Property tests over the mount option grammar (hypothesis, bounded and derandomized):
whatever mountOptions a user writes, a pin leaves exactly one version option, the pin,
keeps every other option in its order, and is idempotent (the apiserver reinvokes the
webhook on what it patched). tests/unit/nfs/test_mount_nfs_oracle.py checks generated
strings against the real mount.nfs."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import fuzzing
from webhook.nfs.options import (
    PINNABLE_VERSIONS,
    VersionKind,
    effective_version,
    is_version_option,
    pin_entries,
    pin_option,
    pin_string,
    split_options,
    strip_entries,
)

#: Every way an option can select a version, spelled right and wrong.
VERSION_NAMES = ["vers", "nfsvers", "minorversion", "VERS", "NfsVers", "MinorVersion"]
VERSION_VALUES = ["", "2", "3", "4", "4.0", "4.1", "4.2", "4.3", "4.00", "40", "x", " 4.1"]


@st.composite
def version_option(draw: st.DrawFn) -> str:
    """``vers=4.1``, ``v4.2``, ``minorversion=1``, ``NFSVERS = 4.0``, ``v9``, ``vers``..."""
    if draw(st.booleans()):
        name = draw(st.sampled_from(VERSION_NAMES))
        value = draw(st.sampled_from(VERSION_VALUES))
        joiner = draw(st.sampled_from(["=", "=", " =", "= ", ""]))
        option = name + joiner + value if joiner or not value else name
    else:
        option = draw(st.sampled_from(["v", "V"])) + draw(
            st.sampled_from(["2", "3", "4", "4.0", "4.1", "4.2", "4.9", "9"])
        )
    pad = draw(st.sampled_from(["", "", " ", "\t"]))
    return pad + option if draw(st.booleans()) else option + pad


#: Options that select nothing, and names that look close to ones that do.
OTHER = st.one_of(
    st.sampled_from(["hard", "soft", "timeo=600", "retrans=2", "proto=tcp", "noac", "ac"]),
    st.sampled_from(["nconnect=8", "rsize=1048576", "sec=sys", "version=4", "v", "vx", "=4"]),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters=",", exclude_categories=["Cs"]),
        max_size=12,
    ),
)

OPTION = st.one_of(version_option(), OTHER)
#: A mountOptions entry: one option, or several comma-joined (also ",," and blanks).
ENTRY = st.lists(OPTION, min_size=0, max_size=4).map(",".join)
ENTRIES = st.lists(ENTRY, max_size=5)


def _others(entries: list[str]) -> list[str]:
    return [o for o in split_options(entries) if not is_version_option(o)]


@fuzzing(200)
@given(entries=ENTRIES, pin=st.sampled_from(PINNABLE_VERSIONS))
@example(entries=["hard,vers=4.1", "nfsvers=4.2"], pin="4.0")
@example(entries=["minorversion=1"], pin="4.1")
@example(entries=[" nfsvers=4.0,", ",,"], pin="3")
def test_a_pin_leaves_exactly_one_version_option_and_every_other_in_order(
    entries: list[str], pin: str
) -> None:
    pinned = pin_entries(entries, pin)
    options = split_options(pinned)
    assert [o for o in options if is_version_option(o)] == [pin_option(pin)]
    assert [o for o in options if not is_version_option(o)] == _others(entries)
    assert all(entry.strip(", \t") for entry in pinned)  # no entry left empty
    ev = effective_version(options)
    expected = VersionKind.NOT_V4 if pin == "3" else VersionKind.EXPLICIT
    assert (ev.kind, ev.version) == (expected, pin)
    # idempotent: what was pinned is left as it is when reviewed again
    assert pin_entries(pinned, pin) == pinned
    assert pin_string(",".join(pinned), pin) == ",".join(pinned)


@fuzzing(150)
@given(
    entries=ENTRIES,
    first=st.sampled_from(PINNABLE_VERSIONS),
    then=st.sampled_from(PINNABLE_VERSIONS),
)
def test_a_second_pin_replaces_the_first_in_its_place(
    entries: list[str], first: str, then: str
) -> None:
    once = pin_entries(entries, first)
    twice = pin_entries(once, then)
    assert split_options(twice) == [
        pin_option(then) if option == pin_option(first) else option
        for option in split_options(once)
    ]


@fuzzing(150)
@given(text=ENTRY, pin=st.sampled_from(PINNABLE_VERSIONS))
def test_pin_string_is_pin_entries_of_one_string(text: str, pin: str) -> None:
    """The legacy annotation (one comma-joined string) gets the list's answer."""
    pinned = pin_string(text, pin)
    assert split_options([pinned]) == split_options(pin_entries([text], pin))
    assert pin_string(pinned, pin) == pinned


@fuzzing(150)
@given(entries=ENTRIES)
def test_strip_leaves_no_version_option_and_every_other_in_order(entries: list[str]) -> None:
    stripped = strip_entries(entries)
    assert split_options(stripped) == _others(entries)
    assert all(entry.strip(", \t") for entry in stripped)
    assert strip_entries(stripped) == stripped


@fuzzing(200)
@given(entries=ENTRIES)
def test_effective_version_is_total_and_consistent(entries: list[str]) -> None:
    """Any list is read (no exception), and only an explicit 4.0 or a v2/v3 mount is
    called unaffected, never a list with two different versions or a stray spelling."""
    options = split_options(entries)
    ev = effective_version(options)
    assert list(ev.options) == [o for o in options if is_version_option(o)]
    if not ev.affected:
        assert (ev.kind, ev.version) in {
            (VersionKind.EXPLICIT, "4.0"),
            (VersionKind.NOT_V4, "3"),
            (VersionKind.NOT_V4, "2"),
        }
    if ev.kind is VersionKind.CONFLICTING:
        assert ev.version is None and ev.affected

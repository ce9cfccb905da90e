"""Kernel families and ranges, with kernelVersion strings as real nodes report them."""

from __future__ import annotations

import itertools

import pytest

from webhook.nfs.kernels import (
    KernelRange,
    comparable_prefix,
    compare_kernels,
    kernel_components,
)

# status.nodeInfo.kernelVersion values seen on real nodes, by family.
EL7 = [
    "3.10.0-693.el7.x86_64",
    "3.10.0-862.el7.x86_64",
    "3.10.0-862.2.3.el7.x86_64",
    "3.10.0-862.14.4.el7.x86_64",
    "3.10.0-957.el7.x86_64",
    "3.10.0-957.27.2.el7.x86_64",
    "3.10.0-1160.el7.x86_64",
    "3.10.0-1160.108.1.el7.x86_64",
]
EL8 = [
    "4.18.0-305.el8.x86_64",
    "4.18.0-477.10.1.el8_8.x86_64",
    "4.18.0-477.27.1.el8_8.x86_64",
    "4.18.0-513.5.1.el8_9.x86_64",
]
EL9 = [
    "5.14.0-284.11.1.el9_2.x86_64",
    "5.14.0-362.8.1.el9_3.x86_64",
    "5.14.0-427.13.1.el9_4.x86_64",
]
GENERIC = ["4.15.0-39-generic", "5.4.0-150-generic", "5.15.0-91-generic", "5.15.0-101-generic"]
AWS = ["5.15.0-1051-aws", "6.5.0-1014-aws", "6.8.0-1019-aws"]
GKE = ["5.15.0-1048-gke", "6.8.0-1042-gke"]
AMZN2 = [
    "4.14.231-173.361.amzn2.x86_64",
    "5.10.205-195.804.amzn2.x86_64",
    "5.10.205-195.807.amzn2.x86_64",
]
FLATCAR = ["5.15.32-flatcar", "5.15.58-flatcar", "5.15.136-flatcar", "6.6.54-flatcar"]
COS = ["5.15.133+", "6.1.58+", "6.1.100+", "6.12.55+"]
BOTTLEROCKET = ["5.10.209", "5.15.122", "6.1.61"]

ALL_FAMILIES = [EL7, EL8, EL9, GENERIC, AWS, GKE, AMZN2, FLATCAR, COS, BOTTLEROCKET]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_each_family_list_is_strictly_increasing(family: list[str]) -> None:
    for older, newer in itertools.pairwise(family):
        assert compare_kernels(older, newer) == -1, (older, newer)
        assert compare_kernels(newer, older) == 1, (newer, older)
        assert compare_kernels(older, older) == 0


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        # Every pair nfs-semantics.md names.
        ("3.10.0-862.2.3.el7.x86_64", "3.10.0-862.14.4.el7.x86_64"),
        ("3.10.0-957.27.2.el7.x86_64", "3.10.0-1160.el7.x86_64"),
        ("5.15.0-91-generic", "5.15.0-101-generic"),
        ("6.1.58+", "6.1.100+"),
        ("5.10.205-195.804.amzn2.x86_64", "5.10.205-195.807.amzn2.x86_64"),
        ("3.10.0-862.el7.x86_64", "3.10.0-1160.el7.x86_64"),
        ("4.15.0-39-generic", "5.15.0-91-generic"),
        ("5.15.58-flatcar", "5.15.136-flatcar"),
        ("5.15.136-flatcar", "5.15.137-flatcar"),
        ("6.5.0", "6.5.7"),
        ("5.15.122", "6.12.55+"),
        ("4.14.231-173.361.amzn2.x86_64", "5.10.205-195.807.amzn2.x86_64"),
        # GA build sorts before its z-stream updates.
        ("3.10.0-862.el7.x86_64", "3.10.0-862.2.3.el7.x86_64"),
        ("4.18.0-477.10.1.el8_8.x86_64", "4.18.0-477.27.1.el8_8.x86_64"),
        # Release candidates sort before the release.
        ("6.6.0-rc7", "6.6.0"),
        ("6.5.9", "6.6.0-rc7"),
    ],
)
def test_documented_pairs_are_ordered(older: str, newer: str) -> None:
    assert compare_kernels(older, newer) == -1
    assert compare_kernels(newer, older) == 1


@pytest.mark.parametrize(
    ("kernel", "prefix"),
    [
        ("3.10.0-862.14.4.el7.x86_64", "3.10.0-862.14.4"),
        ("4.18.0-477.10.1.el8_8.x86_64", "4.18.0-477.10.1"),
        ("5.14.0-362.8.1.el9_3.aarch64", "5.14.0-362.8.1"),
        ("5.15.0-91-generic", "5.15.0-91"),
        ("6.8.0-1042-gke", "6.8.0-1042"),
        ("4.14.231-173.361.amzn2.x86_64", "4.14.231-173.361"),
        ("5.15.136-flatcar", "5.15.136"),
        ("6.12.55+", "6.12.55"),
        ("5.15.122", "5.15.122"),
        ("6.1.21-v8+", "6.1.21"),
        ("6.6.0-rc7+", "6.6.0~rc7"),
        ("3.10.0-862", "3.10.0-862"),
        ("", ""),
        ("el7", ""),
        ("unknown", ""),
    ],
)
def test_comparable_prefix(kernel: str, prefix: str) -> None:
    assert comparable_prefix(kernel) == prefix


def test_components() -> None:
    assert kernel_components("3.10.0-862.14.4.el7.x86_64") >= {"el7", "x86", "64", "862"}
    assert "el8" in kernel_components("4.18.0-477.10.1.el8_8.x86_64")
    assert "flatcar" in kernel_components("5.15.136-flatcar")
    assert "generic" in kernel_components("5.15.0-91-generic")
    assert kernel_components("6.12.55+") == {"6", "12", "55"}
    assert kernel_components("") == frozenset()


@pytest.mark.parametrize(
    ("family", "kernel", "expected"),
    [
        ("el7", "3.10.0-862.14.4.el7.x86_64", True),
        ("el8", "4.18.0-477.10.1.el8_8.x86_64", True),
        ("el9", "5.14.0-362.8.1.el9_3.x86_64", True),
        ("flatcar", "5.15.136-flatcar", True),
        ("generic", "5.15.0-91-generic", True),
        ("aws", "5.15.0-1051-aws", True),
        ("gke", "6.8.0-1042-gke", True),
        ("amzn2", "5.10.205-195.807.amzn2.x86_64", True),
        ("EL7", "3.10.0-862.el7.x86_64", True),
        ("el7", "4.18.0-477.10.1.el8_8.x86_64", False),
        ("el8", "3.10.0-862.el7.x86_64", False),
        ("el8", "5.4.17-2136.324.5.3.el8uek.x86_64", False),  # a tag is a whole component
        ("generic", "5.15.0-1051-aws", False),
        ("aws", "5.15.0-91-generic", False),
        ("flatcar", "5.15.122", False),
        ("amzn2", "6.1.61-85.141.amzn2023.x86_64", False),
    ],
)
def test_family_without_bounds(family: str, kernel: str, expected: bool) -> None:
    rng = KernelRange(family=family)
    rng.validate()
    assert rng.contains(kernel) is expected


def test_bound_without_suffix_covers_full_strings() -> None:
    rng = KernelRange(family="el7", min="3.10.0-862", below="3.10.0-957")
    rng.validate()
    assert rng.contains("3.10.0-862.el7.x86_64")
    assert rng.contains("3.10.0-862.2.3.el7.x86_64")
    assert rng.contains("3.10.0-862.14.4.el7.x86_64")
    assert not rng.contains("3.10.0-693.el7.x86_64")
    assert not rng.contains("3.10.0-957.el7.x86_64")
    assert not rng.contains("3.10.0-957.27.2.el7.x86_64")
    assert not rng.contains("3.10.0-1160.el7.x86_64")
    # Right versions, wrong family.
    assert not rng.contains("3.10.0-862.14.4.el8.x86_64")


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("3.10.0-862", "3.10.0-862.el7.x86_64"),
        ("3.10.0-862", "3.10.0-862.el7"),
        ("5.15.0-91", "5.15.0-91-generic"),
        ("5.15.136", "5.15.136-flatcar"),
        ("6.12.55", "6.12.55+"),
        ("5.10.205-195.807", "5.10.205-195.807.amzn2.x86_64"),
        ("5.10.205-195.807.amzn2.x86_64", "5.10.205-195.807.amzn2.aarch64"),
    ],
)
def test_bound_with_or_without_suffix_is_the_same_bound(short: str, long: str) -> None:
    assert compare_kernels(short, long) == 0
    assert KernelRange(min=short).contains(long)
    assert KernelRange(min=long).contains(long)
    assert not KernelRange(below=short).contains(long)
    assert not KernelRange(below=long).contains(long)


def test_ubuntu_abi_ordering_in_ranges() -> None:
    rng = KernelRange(family="generic", min="5.15.0-91", below="5.15.0-101-generic")
    rng.validate()
    assert rng.contains("5.15.0-91-generic")
    assert rng.contains("5.15.0-100-generic")
    assert not rng.contains("5.15.0-101-generic")
    assert not rng.contains("5.15.0-89-generic")
    assert not rng.contains("5.15.0-95-aws")


def test_flatcar_pnfs_ds_regression_range() -> None:
    # flatcar/Flatcar#1226: 5.15.136 broken, fixed in 5.15.137.
    rng = KernelRange(family="flatcar", min="5.15.136", below="5.15.137")
    rng.validate()
    assert rng.contains("5.15.136-flatcar")
    assert not rng.contains("5.15.137-flatcar")
    assert not rng.contains("5.15.58-flatcar")
    assert not rng.contains("5.15.136")  # Bottlerocket-style, no flatcar tag


def test_unfamilied_range_over_cos_and_bottlerocket() -> None:
    rng = KernelRange(min="6.1", below="6.2")
    rng.validate()
    assert rng.contains("6.1.58+")
    assert rng.contains("6.1.100+")
    assert rng.contains("6.1.61")
    assert not rng.contains("6.12.55+")
    assert not rng.contains("5.15.122")
    only_min = KernelRange(min="6.5.7")
    assert only_min.contains("6.12.55+") and not only_min.contains("6.5.0")
    only_below = KernelRange(below="5.18")
    assert only_below.contains("5.15.122") and not only_below.contains("6.1.61")


def test_amazon_linux_2() -> None:
    rng = KernelRange(family="amzn2", min="5.10.205-195.807")
    rng.validate()
    assert rng.contains("5.10.205-195.807.amzn2.x86_64")
    assert not rng.contains("5.10.205-195.804.amzn2.x86_64")
    assert not rng.contains("4.14.231-173.361.amzn2.x86_64")


def test_el8_el9_minor_streams() -> None:
    rng = KernelRange(family="el8", min="4.18.0-477", below="4.18.0-513.5.1")
    rng.validate()
    assert rng.contains("4.18.0-477.10.1.el8_8.x86_64")
    assert rng.contains("4.18.0-477.27.1.el8_8.x86_64")
    assert not rng.contains("4.18.0-513.5.1.el8_9.x86_64")
    assert not rng.contains("4.18.0-305.el8.x86_64")
    el9 = KernelRange(family="el9", below="5.14.0-362.8.1.el9_3")
    el9.validate()
    assert el9.contains("5.14.0-284.11.1.el9_2.x86_64")
    assert not el9.contains("5.14.0-362.8.1.el9_3.x86_64")


def test_any_kernel_range() -> None:
    rng = KernelRange()
    rng.validate()
    assert all(rng.contains(k) for family in ALL_FAMILIES for k in family)
    assert rng.contains("")  # no bounds, no family: everything
    assert str(rng) == "[any kernel]"


def test_uncomparable_kernel_is_in_no_bounded_range() -> None:
    assert not KernelRange(min="1").contains("")
    assert not KernelRange(below="99").contains("weird-kernel")
    assert KernelRange(family="weird").contains("weird-kernel")


@pytest.mark.parametrize(
    ("rng", "message"),
    [
        (KernelRange(min="3.10.0-957", below="3.10.0-862"), "empty kernel range"),
        (KernelRange(min="3.10.0-862", below="3.10.0-862.el7"), "empty kernel range"),
        (KernelRange(min="5.15.0-101-generic", below="5.15.0-91-generic"), "empty kernel range"),
        (KernelRange(family="el8_8"), "family"),
        (KernelRange(family=""), "family"),
        (KernelRange(min="el7"), "not a version"),
        (KernelRange(below=""), "not a version"),
        (KernelRange(below=5.1), "must be a string"),  # type: ignore[arg-type]
        (KernelRange(min=6), "must be a string"),  # type: ignore[arg-type]
        (KernelRange(family=7), "must be a string"),  # type: ignore[arg-type]
    ],
)
def test_validate_rejects(rng: KernelRange, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rng.validate()


def test_empty_message_names_bounds() -> None:
    rng = KernelRange(min="3.10.0-957", below="3.10.0-862")
    assert rng.is_empty()
    with pytest.raises(ValueError) as err:
        rng.validate()
    assert str(err.value) == "empty kernel range: min 3.10.0-957 >= below 3.10.0-862"
    assert not KernelRange(min="1").is_empty()
    assert not KernelRange(min="1", below="2").is_empty()


def test_matches_any_and_hashable() -> None:
    rng = KernelRange(family="el7", min="3.10.0-862", below="3.10.0-957")
    hit = frozenset({"5.15.0-91-generic", "3.10.0-862.14.4.el7.x86_64"})
    miss = frozenset({"5.15.0-91-generic", "3.10.0-1160.el7.x86_64"})
    for _ in range(2):  # second time from the per-set cache
        assert rng.matches_any(hit) and not rng.matches_any(miss)
    assert not rng.matches_any(frozenset())
    assert rng.matches_any(["5.15.0-91-generic", "3.10.0-862.14.4.el7.x86_64"])
    assert not rng.matches_any(["5.15.0-91-generic", "3.10.0-1160.el7.x86_64"])
    assert not rng.matches_any([])
    assert rng == KernelRange(family="el7", min="3.10.0-862", below="3.10.0-957")
    assert len({rng, KernelRange(family="el7", min="3.10.0-862", below="3.10.0-957")}) == 1
    assert str(rng) == "[family=el7 min=3.10.0-862 below=3.10.0-957]"


def test_contains_never_raises_on_odd_input() -> None:
    rng = KernelRange(min="3.10", below="7")
    for odd in ["1:2.3", "~", "+", "..", "3.10.0-\u0663", "5.15.0--91", "-5.15", "ñ"]:
        assert rng.contains(odd) in (True, False)

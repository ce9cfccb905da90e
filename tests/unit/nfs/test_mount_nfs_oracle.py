"""effective_version and pinning, checked against the real mount.nfs (nfs-utils) in fake mode.

``mount.nfs 127.0.0.1:/x DIR -f -v -o OPTS`` prints the option string it would hand the
kernel ("trying text-based options '...'") without mounting anything, or refuses
("multiple version options not permitted"). That is an oracle independent of our code:
the version it would try first must be our effective version, and every option string
a pin produces must be accepted with exactly one version option, the pin.

The server is always 127.0.0.1. v3 options make mount.nfs ask portmap on 127.0.0.1; the
first portmap line is proof enough that it took the v3 path, and the process is stopped
there. mount.nfs comes from Debian's nfs-common (``make system-deps``).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures.mount_nfs import MOUNT_NFS, SERVER, TIMEOUT, TRYING, Oracle, ask
from tests.support import fuzzing
from webhook.nfs.options import (
    EffectiveVersion,
    VersionKind,
    effective_version,
    is_version_option,
    pin_entries,
    pin_option,
    selected_version,
    split_options,
)

pytestmark = pytest.mark.oracle


if MOUNT_NFS is None:
    if os.environ.get("CI") == "true":
        pytest.fail(
            "mount.nfs is missing under CI=true: run `make system-deps` (hack/system-deps.sh)",
            pytrace=False,
        )
    pytest.skip(
        "mount.nfs oracle not run: mount.nfs missing; `make system-deps` installs nfs-common",
        allow_module_level=True,
    )


def _fake_mode_works(mount_nfs: str) -> str | None:
    """None when ``mount.nfs -f -v`` answers here, else what it said (it needs root:
    as another user it refuses with "failed to apply fstab options")."""
    with tempfile.TemporaryDirectory() as mnt:
        try:
            done = subprocess.run(
                [mount_nfs, SERVER, mnt, "-f", "-v", "-o", "vers=4.0"],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    output = (done.stdout + done.stderr).strip()
    return None if TRYING.search(output) else (output or f"exit {done.returncode}")


_BROKEN = _fake_mode_works(MOUNT_NFS)
if _BROKEN is not None:
    _WHY = f"mount.nfs fake mode does not work here (run as root): {_BROKEN.splitlines()[-1]}"
    if os.environ.get("CI") == "true":
        pytest.fail(_WHY, pytrace=False)
    pytest.skip(f"mount.nfs oracle not run: {_WHY}", allow_module_level=True)


@pytest.fixture(scope="module")
def mountpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnt")


def _version_option_count(options: list[str]) -> int:
    return sum(1 for o in options if selected_version(o) is not None)


def check_effective(options: str, ev: EffectiveVersion, oracle: Oracle) -> None:
    opts = split_options([options])
    if ev.kind is VersionKind.CONFLICTING:
        assert oracle.refused_multiple, oracle
    elif ev.kind is not VersionKind.INVALID and _version_option_count(opts) > 1:
        # The same version twice: mount.nfs >= 2.5.3 refuses it too. The policy language
        # calls only two *different* versions conflicting, so we report that version.
        assert oracle.refused_multiple, oracle
    elif ev.kind in (VersionKind.EXPLICIT, VersionKind.NEGOTIATED):
        assert oracle.tried is not None, oracle
        assert oracle.version == ev.version, oracle
        assert oracle.kernel_accepts_versions, oracle
    elif ev.kind is VersionKind.NOT_V4 and ev.version == "3":
        assert oracle.v3_path, oracle
        assert oracle.tried is None, oracle
    elif ev.kind is VersionKind.NOT_V4:
        # v2: this client refuses it outright; it never tries an NFSv4 mount.
        assert "not supported" in oracle.output, oracle
        assert oracle.tried is None, oracle
    else:
        # invalid: the node would not end up mounting 4.0 with options the kernel takes.
        assert ev.kind is VersionKind.INVALID
        assert not oracle.mounts_40_cleanly, oracle
    # Both directions of what matters: safe for us <=> the node mounts 4.0 (or v2/v3).
    if ev.affected:
        assert not oracle.mounts_40_cleanly or _version_option_count(opts) > 1, oracle
    elif ev.kind is VersionKind.EXPLICIT and _version_option_count(opts) == 1:
        assert oracle.mounts_40_cleanly, oracle


# The rows of nfs-semantics.md, every spelling, and the strays.
ORACLE_TABLE = [
    "",
    "hard",
    "vers=4",
    "nfsvers=4",
    "v4",
    "vers=4,minorversion=0",
    "vers=4,minorversion=1",
    "vers=4,minorversion=2",
    "v4,minorversion=1",
    "vers=4,minorversion=1,minorversion=0",
    "minorversion=1",
    "minorversion=0",
    "vers=4.2,minorversion=0",
    "vers=4.1,minorversion=0",
    "vers=4.0,minorversion=2",
    "nfsvers=4.0,minorversion=1",
    "nfsvers=4.0,hard,timeo=600",
    "hard,vers=4.0,timeo=600",
    "vers=4.0",
    "nfsvers=4.0",
    "v4.0",
    "vers=4.1",
    "nfsvers=4.1",
    "v4.1",
    "vers=4.2",
    "nfsvers=4.2",
    "v4.2",
    "vers=4.1,nfsvers=4.0",
    "v4.2,nfsvers=4.0",
    "vers=4,nfsvers=4.0",
    "vers=4.1,v3",
    "vers=4.1,vers=4.1",
    "vers=4.0,nfsvers=4.0",
    "vers=4.0,v4.0",
    "vers=4.3",
    "v4.3",
    "vers=4.00",
    "vers=",
    "nfsvers",
    "vers=4,minorversion=3",
    "NFSVERS=4.0",
    "NFSVERS=4.1",
    "Vers=4.0",
    "V4.0",
    " nfsvers=4.0",
    "hard, nfsvers=4.0",
    "nfsvers=4.0 ",
    "nfsvers = 4.0",
    "nfsvers= 4.0",
    "nfsvers=4.0,MINORVERSION=1",
    "nfsvers=4.0, hard",
    "v3",
    "vers=3",
    "nfsvers=3,hard",
    "v2",
    "vers=2",
]


@pytest.mark.parametrize("options", ORACLE_TABLE, ids=[o or "(none)" for o in ORACLE_TABLE])
def test_effective_version_matches_mount_nfs(options: str, mountpoint: Path) -> None:
    ev = effective_version(split_options([options]))
    check_effective(options, ev, ask(options, mountpoint))


def test_the_incident_mount_tries_42_first(mountpoint: Path) -> None:
    # `mount -t nfs 192.168.1.100:/data1/k8sdev/hl/ /tmp/test/` printed vers=4.2 (incident.md)
    oracle = ask("", mountpoint)
    assert oracle.tried is not None and oracle.tried.startswith("vers=4.2,")
    assert effective_version([]).affected


def test_stray_spellings_are_not_honoured_by_mount_nfs(mountpoint: Path) -> None:
    # Why a stray spelling of 4.0 is not trusted: mount.nfs ignores it and starts at 4.2.
    for stray in ("NFSVERS=4.0", " nfsvers=4.0", "hard, nfsvers=4.0", "V4.0"):
        oracle = ask(stray, mountpoint)
        assert oracle.version == "4.2", (stray, oracle)
        assert effective_version(split_options([stray])).kind is VersionKind.INVALID


_VERSIONISH = ["vers=4", "vers=4.1", "nfsvers=4.2", "nfsvers=4.0", "v4", "v4.1", "v4.2", "v3"]
_VERSIONISH += ["vers=2", "minorversion=1", "vers=4.7", "NFSVERS=4.1", " v4.2", "Vers=4.0"]
_OTHER = ["hard", "soft", "timeo=600", "retrans=2", "proto=tcp", "noresvport", "nconnect=8"]


def _pin_inputs() -> list[list[str]]:
    """The table above, and deterministic pseudo-random mountOptions lists."""
    rng = random.Random(7)
    out = [[row] for row in ORACLE_TABLE]
    for _ in range(160):
        out.append(
            [
                ",".join(
                    rng.choice(_VERSIONISH if rng.random() < 0.4 else _OTHER)
                    for _ in range(rng.randint(1, 3))
                )
                for _ in range(rng.randint(0, 4))
            ]
        )
    return out


@pytest.mark.parametrize("pin", ["4.0", "4.1"])
def test_every_pinned_option_string_is_accepted_with_exactly_the_pin(
    pin: str, mountpoint: Path
) -> None:
    seen: set[str] = set()
    for entries in _pin_inputs():
        joined = ",".join(pin_entries(entries, pin))  # kubelet joins the list with ","
        if joined in seen:
            continue
        seen.add(joined)
        oracle = ask(joined, mountpoint)
        assert not oracle.refused_multiple, (entries, joined, oracle)
        assert oracle.tried is not None, (entries, joined, oracle)
        versions = [o for o in oracle.tried_options if is_version_option(o)]
        # mount.nfs saw the pin and added nothing: exactly one version option
        assert versions == [pin_option(pin)], (entries, joined, oracle)
        assert oracle.version == pin
        assert oracle.kernel_accepts_versions


def test_pin_3_takes_the_v3_path(mountpoint: Path) -> None:
    for entries in (["vers=4.2", "hard"], ["v4.1"], [], ["hard,nfsvers=4,minorversion=1"]):
        joined = ",".join(pin_entries(entries, "3"))
        oracle = ask(joined, mountpoint)
        assert oracle.v3_path and not oracle.refused_multiple, (entries, joined, oracle)


# ------------------------------------------------ generated strings (hypothesis)

#: Options mount.nfs reads without contacting anything but 127.0.0.1 (no addr=,
#: mountaddr=, clientaddr=, mounthost=: the oracle never names another address).
_BENIGN = ["hard", "soft", "timeo=600", "retrans=2", "proto=tcp", "noresvport", "nconnect=8"]
_BENIGN += ["ac", "noac", "rsize=1048576", "wsize=1048576", "sec=sys", "lookupcache=none"]


@st.composite
def _oracle_option(draw: st.DrawFn) -> str:
    """A version option in any spelling (case, blanks, values the kernel does not know),
    or an option that selects nothing."""
    if draw(st.integers(0, 9)) < 4:
        return draw(st.sampled_from(_BENIGN))
    if draw(st.booleans()):
        name = draw(st.sampled_from(["vers", "nfsvers", "minorversion", "NFSVERS", "Vers"]))
        value = draw(st.sampled_from(["2", "3", "4", "4.0", "4.1", "4.2", "4.3", "", "0", "1"]))
        option = f"{name}={value}"
    else:
        option = draw(st.sampled_from(["v", "V"])) + draw(
            st.sampled_from(["2", "3", "4", "4.0", "4.1", "4.2", "4.9"])
        )
    return draw(st.sampled_from(["", " "])) + option


_ORACLE_STRING = st.lists(_oracle_option(), min_size=0, max_size=4).map(",".join)


@fuzzing(60)
@given(options=_ORACLE_STRING)
def test_effective_version_matches_mount_nfs_on_generated_strings(options: str) -> None:
    """Whatever we say a generated option string mounts, mount.nfs agrees."""
    with tempfile.TemporaryDirectory() as mnt:
        ev = effective_version(split_options([options]))
        check_effective(options, ev, ask(options, Path(mnt)))


@fuzzing(40)
@given(
    entries=st.lists(_ORACLE_STRING, max_size=3),
    pin=st.sampled_from(["4.0", "4.1"]),
)
def test_mount_nfs_takes_every_generated_pin_with_exactly_one_version(
    entries: list[str], pin: str
) -> None:
    """A pinned list, joined as the kubelet joins it, is mounted by mount.nfs at the
    pin, with the pin its only version option."""
    joined = ",".join(pin_entries(entries, pin))
    with tempfile.TemporaryDirectory() as mnt:
        oracle = ask(joined, Path(mnt))
    assert not oracle.refused_multiple, (entries, joined, oracle)
    assert [o for o in oracle.tried_options if is_version_option(o)] == [pin_option(pin)]
    assert oracle.version == pin and oracle.kernel_accepts_versions, (entries, joined, oracle)

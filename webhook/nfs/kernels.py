"""Kernel families and RPM-ordered kernel ranges (``nodeKernels`` in a policy).

Kernel strings are what ``status.nodeInfo.kernelVersion`` (``uname -r``) shows:
``3.10.0-862.14.4.el7.x86_64``, ``5.15.0-91-generic``, ``6.12.55+`` ...

Rules (documented for policy authors in docs/node-inventory.md):

* A kernel's *components* are the pieces between ``.``, ``-``, ``_`` and ``+``.
  ``family`` matches when it is one of them (case-insensitive).
* Bounds are compared on the kernel's *comparable prefix*: the leading run of
  purely numeric components, with the separators as written. Everything from the
  first component that is not all digits on (family tag, flavour, arch,
  ``+``) is dropped, on the kernel and on the bound alike::

      3.10.0-862.14.4.el7.x86_64    -> 3.10.0-862.14.4
      4.18.0-477.10.1.el8_8.x86_64  -> 4.18.0-477.10.1
      5.15.0-91-generic             -> 5.15.0-91
      4.14.231-173.361.amzn2.x86_64 -> 4.14.231-173.361
      6.12.55+                      -> 6.12.55
      5.15.136-flatcar              -> 5.15.136

  One exception: a release-candidate component ``rcN`` is kept as ``~rcN``, so
  ``6.6.0-rc7`` sorts before ``6.6.0`` (RPM's tilde rule).
  The two prefixes are then ordered with RPM ``rpmvercmp`` rules
  (``univers.versions.RpmVersion``): numeric segments numerically, so
  ``862.14.4 > 862.2.3``, ``1160 > 957.27.2``, ``91 < 101``; a longer prefix
  that agrees on every shared segment is newer (``862.14.4 > 862``).
* Consequently a bound may be written with or without the family/flavour/arch
  suffix and means the same thing: ``min: 3.10.0-862`` and
  ``min: 3.10.0-862.el7.x86_64`` are the same bound, and every flavour and
  architecture of one build counts as that build (``min`` inclusive covers it,
  ``below`` exclusive excludes it).
* A kernel without a comparable prefix (empty, or starting with a letter) is in
  no range that has a bound; a range without bounds matches it by family only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from univers.versions import RpmVersion

__all__ = [
    "KernelRange",
    "comparable_prefix",
    "compare_kernels",
    "kernel_components",
]

_SEPARATORS = re.compile(r"[.\-_+]")
# A component together with the separator that follows it.
_PIECES = re.compile(r"([^.\-_+]*)([.\-_+]?)")
_RC = re.compile(r"rc\d+", re.IGNORECASE)


@lru_cache(maxsize=4096)
def kernel_components(kernel: str) -> frozenset[str]:
    """The non-empty pieces of ``kernel`` between ``.``, ``-``, ``_`` and ``+``, lower-cased."""
    return frozenset(part.lower() for part in _SEPARATORS.split(kernel) if part)


@lru_cache(maxsize=4096)
def comparable_prefix(kernel: str) -> str:
    """The part of ``kernel`` that bounds are compared on (see the module docstring).

    Returns ``""`` when the string does not start with a number (or is no string).
    """
    if not isinstance(kernel, str):
        return ""
    out: list[str] = []
    for match in _PIECES.finditer(kernel.strip()):
        part, sep = match.group(1), match.group(2)
        if not part and not sep:
            break
        if part.isdigit() and part.isascii():
            out.append(part)
            out.append(sep)
            continue
        if _RC.fullmatch(part) and out:
            out[-1] = "~"
            out.append(part.lower())
        break
    return "".join(out).rstrip(".-_+")


@lru_cache(maxsize=4096)
def _rpm(prefix: str) -> RpmVersion:
    return RpmVersion(prefix)


def compare_kernels(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, with, or after ``b`` (comparable prefixes, RPM order).

    Raises ValueError when either has no comparable prefix.
    """
    pa, pb = comparable_prefix(a), comparable_prefix(b)
    if not pa:
        raise ValueError(f"not a comparable kernel version: {a!r}")
    if not pb:
        raise ValueError(f"not a comparable kernel version: {b!r}")
    va, vb = _rpm(pa), _rpm(pb)
    if va < vb:
        return -1
    if va > vb:
        return 1
    return 0


@dataclass(frozen=True)
class KernelRange:
    """One ``nodeKernels`` item: ``family`` tag, ``min`` (inclusive), ``below`` (exclusive).

    All three are optional. Construct, then call :meth:`validate` (the policy
    loader does) before :meth:`contains`.
    """

    family: str | None = None
    min: str | None = None
    below: str | None = None

    def validate(self) -> None:
        """Raise ValueError if this range can never be meaningful."""
        for key, value in (("family", self.family), ("min", self.min), ("below", self.below)):
            if value is not None and not isinstance(value, str):
                raise ValueError(
                    f"kernel {key} must be a string, not {type(value).__name__} {value!r} "
                    "(quote it: unquoted 5.10 is the YAML number 5.1)"
                )
        if self.family is not None and (not self.family or _SEPARATORS.search(self.family)):
            raise ValueError(
                f"kernel family {self.family!r} must be one non-empty component "
                "without '.', '-', '_' or '+'"
            )
        for key, bound in (("min", self.min), ("below", self.below)):
            if bound is not None and not comparable_prefix(bound):
                raise ValueError(
                    f"kernel {key} {bound!r} is not a version: it must start with a number"
                )
        if self.is_empty():
            raise ValueError(f"empty kernel range: min {self.min} >= below {self.below}")

    def is_empty(self) -> bool:
        """True when ``min >= below``: no kernel can be in the range."""
        if self.min is None or self.below is None:
            return False
        try:
            return compare_kernels(self.min, self.below) >= 0
        except ValueError:
            return False

    def contains(self, kernel: str) -> bool:
        """Whether ``kernel`` (a ``kernelVersion`` string) lies in this range."""
        return _contains(self, kernel)

    def matches_any(self, kernels: Iterable[str]) -> bool:
        """Whether any of ``kernels`` lies in this range (results cached per kernel, and
        per kernel set when ``kernels`` is a frozenset, as ``KernelView.kernels`` is)."""
        if isinstance(kernels, frozenset):
            return _matches_set(self, kernels)
        return any(_contains(self, k) for k in kernels)

    def __str__(self) -> str:
        parts = []
        if self.family is not None:
            parts.append(f"family={self.family}")
        if self.min is not None:
            parts.append(f"min={self.min}")
        if self.below is not None:
            parts.append(f"below={self.below}")
        return "[" + " ".join(parts) + "]" if parts else "[any kernel]"


@lru_cache(maxsize=65536)
def _contains(rng: KernelRange, kernel: str) -> bool:
    if rng.family is not None and rng.family.lower() not in kernel_components(kernel):
        return False
    if rng.min is None and rng.below is None:
        return True
    try:
        if rng.min is not None and compare_kernels(kernel, rng.min) < 0:
            return False
        return not (rng.below is not None and compare_kernels(kernel, rng.below) >= 0)
    except ValueError:
        # The kernel (or an unvalidated bound) has no version to compare.
        return False


@lru_cache(maxsize=16384)
def _matches_set(rng: KernelRange, kernels: frozenset[str]) -> bool:
    return any(_contains(rng, k) for k in kernels)

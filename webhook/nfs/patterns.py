"""The small matchers a rule is made of: exports, names, label selectors.

No DNS lookups: a rule naming an IP matches objects that name that IP, a rule
naming a host matches objects that name that host (case-insensitively).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from webhook.nfs.scope import SelectorRequirement

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_GLOB_CHARS = frozenset("*?[")


def is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


@lru_cache(maxsize=4096)
def glob_regex(pattern: str, *, slash_is_special: bool, ignore_case: bool) -> re.Pattern[str]:
    """A glob as a regex. ``**`` crosses ``/``; ``*`` and ``?`` do not when
    ``slash_is_special``; ``[...]`` is a character class. Raises ValueError."""
    out: list[str] = []
    i, n = 0, len(pattern)
    any_char = "[^/]" if slash_is_special else "."
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                # "/**" at the end also matches the directory itself.
                if out and out[-1] == "/" and i == n:
                    out[-1] = "(?:/.*)?"
                    continue
                out.append(".*")
                continue
            out.append(any_char + "*")
        elif c == "?":
            out.append(any_char)
        elif c == "[":
            end = pattern.find(
                "]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[]", i) else i + 1
            )
            if end < 0:
                raise ValueError(f"unclosed '[' in glob {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile("".join(out) + r"\Z", flags)


@lru_cache(maxsize=4096)  # pure; called for the server of every reviewed object
def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$", re.IGNORECASE)


def valid_hostname(text: str) -> bool:
    host = text.rstrip(".")
    return 0 < len(host) <= 253 and all(_HOST_LABEL.match(label) for label in host.split("."))


@dataclass(frozen=True)
class ServerPattern:
    """``server:`` of an export: an IP, a CIDR, a hostname or a hostname glob."""

    text: str
    ip: IPAddress | None = None
    network: IPNetwork | None = None
    glob: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> ServerPattern:
        """Raises ValueError with a one-line reason for an invalid pattern."""
        text = text.strip()
        if not text:
            raise ValueError("server must not be empty")
        if "/" in text:
            try:
                return cls(text, network=ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                raise ValueError(f"invalid CIDR {text!r}: {exc}") from None
        ip = parse_ip(text)
        if ip is not None:
            return cls(text, ip=ip)
        if is_glob(text):
            try:
                return cls(
                    text,
                    glob=glob_regex(
                        text.lower().rstrip("."), slash_is_special=False, ignore_case=True
                    ),
                )
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid server glob {text!r}: {exc}") from None
        if text[0].isdigit() and all(c.isdigit() or c == "." for c in text):
            raise ValueError(f"invalid IP address {text!r}")
        if not valid_hostname(text):
            raise ValueError(f"invalid hostname {text!r}")
        return cls(text.lower().rstrip("."))

    @property
    def host(self) -> str | None:
        """The plain hostname, when this pattern is one."""
        if self.ip is None and self.network is None and self.glob is None:
            return self.text
        return None

    def matches(self, server: str, server_ip: IPAddress | None) -> bool:
        if self.ip is not None:
            return server_ip == self.ip
        if self.network is not None:
            return server_ip is not None and server_ip in self.network
        if self.glob is not None:
            return bool(self.glob.match(server.lower().rstrip(".")))
        return server.lower().rstrip(".") == self.text


@dataclass(frozen=True)
class ExportPattern:
    server: ServerPattern
    path: re.Pattern[str] | None = None
    path_text: str | None = None

    @classmethod
    def parse(cls, server: str, path: str | None) -> ExportPattern:
        compiled = None
        if path is not None:
            if not path.startswith("/") and not path.startswith("*"):
                raise ValueError(f"export path {path!r} must be absolute (start with '/')")
            try:
                compiled = glob_regex(
                    _strip_slashes(path), slash_is_special=True, ignore_case=False
                )
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid path glob {path!r}: {exc}") from None
        return cls(ServerPattern.parse(server), compiled, path)

    def matches(self, server: str, server_ip: IPAddress | None, path: str | None) -> bool:
        if not self.server.matches(server, server_ip):
            return False
        if self.path is None:
            return True
        return path is not None and bool(self.path.match(path))


def _strip_slashes(path: str) -> str:
    # Object paths are normalised (no trailing or doubled slash); patterns too.
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") if len(path) > 1 and not path.endswith("**/") else path


@dataclass(frozen=True)
class NamePattern:
    """A provisioner or CSI driver name, exact or glob (``*.nfs.csi.ceph.com``)."""

    text: str
    glob: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        if is_glob(text):
            try:
                return cls(text, glob_regex(text, slash_is_special=False, ignore_case=False))
            except (ValueError, re.error) as exc:
                raise ValueError(f"invalid glob {text!r}: {exc}") from None
        return cls(text)

    def matches(self, name: str | None) -> bool:
        if name is None:
            return False
        if self.glob is not None:
            return bool(self.glob.match(name))
        return name == self.text


@dataclass(frozen=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels and matchExpressions, all ANDed. Its
    requirements are the node selector's (webhook.nfs.scope), restricted by the
    loader to In, NotIn, Exists and DoesNotExist, so both evaluate alike."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.holds(labels.get(req.key)) for req in self.match_expressions)

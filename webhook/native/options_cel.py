"""webhook/nfs/options.py as apiserver CEL: which options select a version, the
effective version of an option list, and the pin and strip rewrites.

Each function returns CEL text over the expressions it is given, and each follows one
function of webhook/nfs/options.py exactly (docs/nfs-semantics.md; the e2e tests
compare both on the real kube-apiserver):

- ``_parse``: ``option.strip().partition("=")``, the name stripped and lower-cased;
- ``is_version_option``: ``vers``/``nfsvers`` (any value), a flag ``v<digit>...``
  with no ``=``, or ``minorversion`` (which mount.nfs counts only after a bare 4);
- ``effective_version``: a spelling mount.nfs does not read (case, blanks) is invalid;
  two different versions conflict; none, or a bare 4 without minorversion, is
  negotiated from 4.2; ``vers=4`` + the last ``minorversion=N`` is 4.N;
- ``pin_entries``: ``nfsvers=<pin>`` takes the place of the first version-selecting
  option (else its own entry at the end), every other option keeps its place,
  ``minorversion`` goes, emptied entries disappear; ``strip_entries`` likewise.

CEL has no regex replace and no indexed loops, so ``pin_entries`` marks version
options with ``\\x01`` and entries with a newline, replaces the first mark
(``replace(old, new, 1)``) and splits back. Both characters are outside the printable
ASCII the native path accepts in option text (``PRINTABLE``): an object with any other
character in its options is left to the webhook. Python ``str.strip``/``lower`` and
CEL ``trim``/``lowerAscii`` agree on printable ASCII, which is why that guard exists.
"""

from __future__ import annotations

from webhook.nfs.options import KNOWN_VERSIONS
from webhook.registration.scope import cel_string

#: RE2: option text the native path judges (printable ASCII, blanks included).
PRINTABLE = "^[ -~]*$"
#: The most mountOptions entries, and characters of option text (every place together),
#: the native path judges. On kube-apiserver 1.36.3 the rewrite stays within the CEL
#: cost limit up to about 4,000 entries and 40,000 characters (8,000 and 60,000 exceed
#: it: an evaluation error, a refusal under failurePolicy Fail); larger objects are left
#: to the webhook.
MAX_ENTRIES = 1024
MAX_TEXT = 16384
_MARK = "'\\x01'"
_KNOWN = "[" + ", ".join(cel_string(v) for v in sorted(KNOWN_VERSIONS)) + "]"


def name(o: str) -> str:
    """The option's name as webhook/nfs/options.py ``_parse`` reads it."""
    return f"{o}.trim().split('=', 2)[0].trim().lowerAscii()"


def _value(o: str) -> str:
    return f"{o}.trim().split('=', 2)[1].trim()"


def selects(o: str) -> str:
    """``selected_version(o) is not None``: vers=, nfsvers=, or a v<digit> flag."""
    n = name(o)
    return f"({n} in ['vers', 'nfsvers'] || (!{o}.contains('=') && {n}.matches('^v[0-9]')))"


def minor(o: str) -> str:
    """``minor_version(o) is not None``."""
    return f"{name(o)} == 'minorversion'"


def version_option(o: str) -> str:
    """``is_version_option(o)``."""
    return f"({selects(o)} || {minor(o)})"


def _canonical(o: str) -> str:
    """The spelling mount.nfs reads (``_exactly_spelled``: the option must equal it)."""
    return f"({o}.contains('=') ? {name(o)} + '=' + {_value(o)} : {name(o)})"


def split(entries: str) -> str:
    """``split_options``: every option of a list of entries, blank ones dropped."""
    return f"{entries}.join(',').split(',').filter(o, o.trim() != '')"


def effective(options: str) -> list[tuple[str, str]]:
    """Variables (name, CEL) for the effective version of ``options`` (a variable
    holding split options); the last, ``effective``, is ``invalid``, ``conflicting``,
    ``negotiated``, ``not-v4`` or ``explicit-<version>``."""
    vo = "variables.versionOptions"
    vs = "variables.versions"
    ms = "variables.minors"
    last = f"{ms}[size({ms}) - 1]"
    return [
        ("versionOptions", f"{options}.filter(o, {version_option('o')})"),
        ("misspelled", f"{vo}.exists(o, o != {_canonical('o')})"),
        (
            "versions",
            f"{vo}.filter(o, {selects('o')}).map(o, o.contains('=') ? o.split('=', 2)[1] : "
            f"({name('o')} in ['vers', 'nfsvers'] ? '' : o.substring(1)))",
        ),
        (
            "minors",
            f"{vo}.filter(o, {minor('o')}).map(o, o.contains('=') ? o.split('=', 2)[1] : '')",
        ),
        (
            "effective",
            f"variables.misspelled ? 'invalid' : {vs}.exists(v, v != {vs}[0]) ? 'conflicting' : "
            f"size({vs}) == 0 ? 'negotiated' : !({vs}[0] in {_KNOWN}) ? 'invalid' : "
            f"{vs}[0] in ['2', '3'] ? 'not-v4' : {vs}[0] == '4' ? (size({ms}) == 0 ? "
            f"'negotiated' : {last} in ['0', '1', '2'] ? 'explicit-4.' + {last} : 'invalid') : "
            f"'explicit-' + {vs}[0]",
        ),
    ]


#: CEL over the ``effective`` variable: NFSv4.1/4.2 bugs can reach the mount.
AFFECTED = "!(variables.effective in ['not-v4', 'explicit-4.0'])"
#: CEL: the object asks for a version itself (EXPLICIT or CONFLICTING, verdict.act).
EXPLICIT = "(variables.effective.startsWith('explicit-') || variables.effective == 'conflicting')"


def has_version_option(entries: str) -> str:
    """Whether any option of ``entries`` selects a version."""
    return f"{entries}.exists(e, e.split(',').exists(o, {version_option('o')}))"


def _nonblank(entries: str) -> str:
    return f"{entries}.filter(e, e.split(',').exists(o, o.trim() != ''))"


def strip_entries(entries: str) -> str:
    """``strip_entries``: no version option left; emptied entries disappear."""
    kept = f"{entries}.map(e, e.split(',').filter(o, !{version_option('o')}).join(','))"
    return _nonblank(kept)


def pin_entries(entries: str, pin_option: str) -> str:
    """``pin_entries``: exactly one ``pin_option`` (a CEL string expression)."""
    marked = (
        f"{entries}.map(e, e.split(',').filter(o, !({minor('o')}))"
        f".map(o, {selects('o')} ? {_MARK} : o).join(',')).join('\\n')"
    )
    back = (
        f"{marked}.replace({_MARK}, {pin_option}, 1).split('\\n')"
        f".map(e, e.split(',').filter(o, o != {_MARK}).join(','))"
    )
    placed = f"{entries}.exists(e, e.split(',').exists(o, {selects('o')}))"
    return f"({placed} ? {_nonblank(back)} : {_nonblank(back)} + [{pin_option}])"

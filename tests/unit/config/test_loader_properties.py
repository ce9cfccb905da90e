"""Property tests over the policy loader (hypothesis, bounded and derandomized): any
text in a policy file gives either policies that build an engine, or problems, each
``FILE:LINE:COL: message`` on one line; never a traceback, in ``load``, in lint, in
``policy lint`` or in the engine that then decides objects.

Inputs: the shipped policies and profiles with characters inserted, deleted and
replaced (YAML's punctuation above all), their parsed documents with values swapped
for other types, keys dropped and junk keys added, text from nowhere, and policies
in the schema's shape whose values sit at the edges of what each field takes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from tests.integration.conftest import admission_review
from tests.support import fuzzing, nfsguard
from tests.unit.server.test_review_fuzz import OBJECTS
from webhook.admission.errors import UnreviewableObject
from webhook.admission.handler import decide
from webhook.admission.review import parse_review
from webhook.config.lint import lint
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.nfs.inventory import UnknownInventory

REPO = Path(__file__).resolve().parents[3]
SEEDS = [
    (REPO / "tests/fixtures/policies/10-site.yaml").read_text(),
    (REPO / "tests/fixtures/policies/20-exempt.yaml").read_text(),
    (REPO / "policies/site-example.yaml").read_text(),
    (REPO / "policies/drivers/05-csi-driver-nfs.yaml").read_text(),
    (REPO / "policies/drivers/07-netapp-trident.yaml").read_text(),
]
BUILTIN, SCHEMAS = packaged.builtin_profiles(), packaged.schemas()
NAME = "fuzz.yaml"
PROBLEM = re.compile(rf"^{re.escape(NAME)}:\d+:\d+: \S")
REQUESTS = [parse_review(json.dumps(admission_review(obj, uid="u")).encode()) for obj in OBJECTS]

#: What YAML reads specially, and some text that is not.
TOKENS = [":", ": ", "-", "- ", "[", "]", "{", "}", ",", "&a", "*a", "!", "!!str ", "|", ">"]
TOKENS += ["'", '"', "#", "%", "@", "`", "?", "\n", "\n  ", "\t", " ", "~", "null", "0x1f"]
TOKENS += ["2026-13-45", "1e999", ".nan", "<<: *a", "---\n", "...\n", "\\", "\u2028", "\x00"]
TOKENS += ["pin", "deny", "4.0", "4.3", "nfsvers=4.1", "**", "10.0.0.0/33", "*.corp", "é"]


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    """A seed with 1-6 edits: a token or a character inserted, a span deleted, or a
    character replaced, at a random place."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.characters(codec="utf-8")))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        else:
            text = text[:at] + piece + text[at + 1 :]
    return text


VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["pin", "deny", "exempt", "warn", "4.0", "3", "*", "**", "0.0.0.0/0"]),
        st.dates(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def edited_documents(draw: st.DrawFn) -> str:
    """A seed's documents with 1-4 edits at random depths, dumped back to YAML."""
    documents = [copy.deepcopy(d) for d in yaml.safe_load_all(draw(st.sampled_from(SEEDS)))]
    for _ in range(draw(st.integers(1, 4))):
        node: Any = documents
        while True:
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            if not children:
                break
            key, child = draw(st.sampled_from(children))
            if isinstance(child, dict | list) and child and draw(st.integers(0, 4)) > 0:
                node = child
                continue
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace" or not isinstance(node, dict):
                node[key] = draw(VALUES)
            elif action == "remove":
                del node[key]
            else:
                node[draw(st.text(max_size=8))] = draw(VALUES)
            break
    return yaml.safe_dump_all(documents, allow_unicode=draw(st.booleans()))


#: The values rules match on: what loads, and (drawn less often) what should not.
SERVERS = (
    ["192.168.100.7", "10.20.0.0/16", "*.legacy.corp", "fd00::/8", "*", "filer?.corp"],
    ["10.0.0.0/33", "[a-", "::ffff:10.1.2.3", "fe80::1%eth0", "192.168.1.300", "x" * 70],
)
PATHS = (["/data1/k8sdev/**", "/vol", "/a/*/b", "/[ab]/c", "/./x/../y", "/"], ["/[", "rel", "**"])
NAMES = (["nfs-ssd", "nfs-*", "nfs.csi.k8s.io", "*", "driver.longhorn.io"], ["[x", "é", " "])
KERNELS = (["3.10.0-862", "3.10.0-957", "5.14.0-70.el9", "4.18.0-305"], ["not-a-version", ""])
LABELS = st.dictionaries(
    st.sampled_from(["team", "tier", "a/b", "nfsguard.io/skip"]), st.text(max_size=6), max_size=2
)


def pick(draw: st.DrawFn, values: tuple[list[str], list[str]]) -> str:
    """Mostly a value that loads, one time in six one that should not."""
    good, odd = values
    return draw(st.sampled_from(odd if draw(st.integers(0, 5)) == 0 else good))


@st.composite
def match(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["exports"] = [
            {
                "server": pick(draw, SERVERS),
                **({"path": pick(draw, PATHS)} if draw(st.booleans()) else {}),
            }
            for _ in range(draw(st.integers(1, 2)))
        ]
    for key in ("provisioners", "storageClassNames"):
        if draw(st.integers(0, 3)) == 0:
            out[key] = [pick(draw, NAMES) for _ in range(draw(st.integers(1, 2)))]
    if draw(st.integers(0, 3)) == 0:
        kernel = {"family": draw(st.sampled_from(["el7", "el9", "ubuntu", "?"]))}
        for bound in ("min", "below"):
            if draw(st.booleans()):
                kernel[bound] = pick(draw, KERNELS)
        out["nodeKernels"] = [kernel]
    if draw(st.integers(0, 3)) == 0:
        out["objectSelector"] = {
            "matchLabels": draw(LABELS),
            "matchExpressions": [
                {
                    "key": draw(st.sampled_from(["team", "tier", "x/y"])),
                    "operator": draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"])),
                    "values": draw(st.lists(st.text(max_size=4), max_size=2)),
                }
                if draw(st.integers(0, 5)) == 0
                else {
                    "key": draw(st.sampled_from(["team", "tier", "x/y"])),
                    "operator": draw(st.sampled_from(["In", "NotIn"])),
                    "values": draw(st.lists(st.sampled_from(["a", "gold"]), min_size=1)),
                }
            ][: draw(st.integers(0, 1))],
        }
    return out


@st.composite
def generated_policy(draw: st.DrawFn) -> str:
    """An NFSMountPolicy in the schema's shape, its values drawn from the edges of what
    each field takes (so that most load, and the engine then decides with them)."""
    rules = []
    for i in range(draw(st.integers(1, 4))):
        rule: dict[str, Any] = {
            "name": f"r{i}",
            "action": draw(st.sampled_from(["pin", "deny", "warn", "audit", "exempt"])),
            "match": draw(match()),
        }
        if draw(st.integers(0, 3)) == 0:
            rule["exclude"] = draw(match())
        for key, choices in (
            ("onExplicit", ["rewrite", "deny"]),
            ("onUnsupportedPin", ["warn", "deny"]),
            ("onInline", ["deny", "warn", "audit"]),
            ("enforcement", ["Enforce", "Audit"]),
        ):
            if draw(st.integers(0, 3)) == 0:
                rule[key] = draw(st.sampled_from(choices))
        rules.append(rule)
    spec: dict[str, Any] = {"version": "1", "rules": rules}
    if draw(st.booleans()):
        spec["pin"] = draw(st.sampled_from(["3", "4.0", "4.1"]))
    for key, choices in (
        ("unknownNodes", ["assumeAffected", "assumeUnaffected"]),
        ("onInline", ["deny", "warn", "audit"]),
        ("enforcement", ["Enforce", "Audit"]),
    ):
        if draw(st.booleans()):
            spec[key] = draw(st.sampled_from(choices))
    policy = {
        "apiVersion": "nfsguard.io/v1alpha1",
        "kind": "NFSMountPolicy",
        "metadata": {"name": "fuzz"},
        "spec": spec,
    }
    return yaml.safe_dump(policy, allow_unicode=True)


TEXTS = st.one_of(
    edited_text(), edited_documents(), st.text(max_size=200), generated_policy(), generated_policy()
)


def _loads_or_says_where(text: str) -> None:
    result = load([(NAME, text)], builtin_profiles=BUILTIN, schemas=SCHEMAS)
    for problem in result.problems:
        assert PROBLEM.match(str(problem)) and "\n" not in str(problem), str(problem)
    event("refused" if result.errors else "loaded")
    if result.errors:
        return
    for problem in lint(result).problems:
        assert PROBLEM.match(str(problem)) and "\n" not in str(problem), str(problem)
    engine = Engine(result.policies, result.profiles)
    for request in REQUESTS:
        # an object the engine cannot read is refused; a policy never breaks the engine
        with contextlib.suppress(UnreviewableObject):
            decide(engine, request, UnknownInventory())


@fuzzing(250)
@given(text=TEXTS)
def test_any_policy_text_loads_or_says_where(text: str) -> None:
    _loads_or_says_where(text)


@fuzzing(60)
@given(text=TEXTS)
def test_policy_lint_on_any_text_is_lines_at_places_and_an_exit_code(text: str) -> None:
    """The command as CI runs it: exit 0 or 1, every line ``FILE:LINE:COL: ...`` but
    the summary (nfsguard() fails on any exception)."""
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / NAME
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        result = nfsguard("policy", "lint", str(path))
    assert result.exit_code in (0, 1), result.output
    *problems, summary = result.stdout.splitlines()
    for line in problems:
        assert line.startswith(f"{path}:") and re.match(r"^\d+:\d+: \S", line[len(str(path)) + 1 :])
    ok = r"\d+ polic(y|ies), \d+ rules?: OK( \(\d+ warnings?\))?"
    assert re.fullmatch(ok if result.exit_code == 0 else r"\d+ errors?, \d+ warnings?", summary)

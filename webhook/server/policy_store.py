"""The policies in force in one worker, and the engine built from them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from webhook.core.policy.engine import Engine
from webhook.core.policy.loader import load_policies
from webhook.sources import read_policy_sources


class PolicyStore:
    """Holds the current ``Engine``; swapping is one reference assignment, so a
    review always sees one complete policy set."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        self._lock = threading.Lock()
        self._engine = Engine(load_policies(read_policy_sources(self.paths)))

    def engine(self) -> Engine:
        return self._engine

    def status(self) -> list[dict[str, Any]]:
        return [
            {"name": p.name, "version": p.version, "digest": p.digest, "rules": len(p.rules)}
            for p in self._engine.policies
        ]

"""``nfsguard policy``: tools for policy authors (lint, test, explain)."""

from __future__ import annotations

import click


@click.group()
def policy() -> None:
    """Lint, test and explain policies before they ship."""

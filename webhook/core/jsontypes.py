"""What a JSON object is, checked fast.

Objects decoded from JSON are plain dicts; ``isinstance(x, Mapping)`` alone goes
through the ABC machinery and costs several times a dict check, dozens of
times per review. Checking ``dict`` first keeps any other Mapping accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

JSON_OBJECT: Final = (dict, Mapping)

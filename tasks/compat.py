"""Reading what another release wrote (docs/compatibility.md): fields a newer release added are
ignored, and fields it does not know yet take their defaults."""

from __future__ import annotations

import dataclasses
from typing import Any


def known_fields(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    """The items of ``data`` that dataclass ``kind`` has a field for."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in data.items() if k in names}

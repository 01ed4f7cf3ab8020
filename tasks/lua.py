"""The Lua scripts vmigrate runs in Redis, each in a ``.lua`` file beside the module using it."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def lua_script(name: str) -> str:
    return (Path(__file__).parent / f"{name}.lua").read_text()

"""libvirt-python, where installed (the ``libvirt`` extra); None where it is not."""

from __future__ import annotations

import importlib
from typing import Any


def _load() -> Any:
    try:
        module = importlib.import_module("libvirt")
    except ImportError:  # from_settings says what to install
        return None
    # Errors reach vmigrate as exceptions; without this, libvirt also prints each to stderr.
    module.registerErrorHandler(lambda _ctx, _err: None, None)
    return module


libvirt: Any = _load()

__all__ = ["libvirt"]

"""The real kconfiglib, even inside ESP-IDF's own Python environment.

esp-idf-kconfig 3.x installs a ``kconfiglib/`` package that only re-exports its fork
(``from esp_kconfiglib import *``) and lacks parts of kconfiglib's API (``escape``).
A package shadows a module of the same name, so in ESP-IDF's venv ``import kconfiglib``
gives that shim even though the kconfiglib distribution's ``kconfiglib.py`` sits right
beside it.  When that happens, load the distribution's own file under a private name.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

__all__ = ["kconfiglib"]

_PRIVATE_NAME = "_idf_nvs_secure_kconfiglib"


def _is_real(module: ModuleType) -> bool:
    return (str(getattr(module, "__file__", "")).endswith("kconfiglib.py")
            and all(hasattr(module, name) for name in ("Kconfig", "escape", "unescape")))


def _load() -> ModuleType:
    try:
        spec = importlib.util.find_spec("kconfiglib")
    except ValueError:  # imported already, without a spec
        spec = None
    origin = str(getattr(spec, "origin", None) or "")
    if origin.endswith("kconfiglib.py"):  # the module itself: nothing shadows it
        module = importlib.import_module("kconfiglib")
        if _is_real(module):
            return module
    if _PRIVATE_NAME in sys.modules:
        return sys.modules[_PRIVATE_NAME]
    # A package shadows it (esp-idf-kconfig's shim, not imported: it pulls in
    # esp_kconfiglib and rich).  The distribution's file usually sits beside the shim.
    beside = os.path.join(os.path.dirname(os.path.dirname(origin)), "kconfiglib.py")
    if origin and os.path.isfile(beside):
        path = beside
    else:
        from importlib import metadata

        path = str(metadata.distribution("kconfiglib").locate_file("kconfiglib.py"))
    spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        raise ImportError(f"cannot load kconfiglib from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE_NAME] = module
    spec.loader.exec_module(module)
    if not _is_real(module):  # pragma: no cover - a broken install
        raise ImportError(f"{path} is not kconfiglib")
    return module


kconfiglib = _load()

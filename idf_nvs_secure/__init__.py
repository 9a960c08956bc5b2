"""idf_nvs_secure: declarative, reproducible NVS encryption for ESP-IDF projects.

The public API is what ``__all__`` lists; the command line, the idf.py extension and
users' scripts all call it.  Format modules are pure (bytes in, bytes out); only the
CLI and the adapters touch files and the terminal.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CapacityError,
    FormatError,
    InputError,
    KeyMaterialError,
    NvsSecureError,
)

__all__ = [
    "__version__",
    "NvsSecureError",
    "InputError",
    "FormatError",
    "KeyMaterialError",
    "CapacityError",
]

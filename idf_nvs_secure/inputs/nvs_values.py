"""Several NVS values files, in order, merged into one set of entries.

``nvs build a.csv b.yaml c.csv``: each file is read by its own reader (nvs_partition_gen.py
CSV, or values YAML) and applied over the files before it.  A key given again replaces
the earlier value where it stood, so entry order is that of first appearance; a YAML file
after the first is an overlay (``null`` removes a key or namespace, a bare number keeps
the type it overrides).  Within one file a key may appear only once.

nvs_partition_gen.py also takes several CSVs, but writes them one after the other: a key
given twice is written twice, and the reader keeps whichever it finds first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..errors import InputError
from ..fsutil import read_input_text
from .nvs_csv import parse_nvs_csv
from .nvs_yaml import NvsValues, load_nvs_values

__all__ = ["VALUES_SUFFIXES", "load_values_files"]

#: File suffixes that name a values file, and the format each is read as.
VALUES_SUFFIXES = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}


def load_values_files(paths: Sequence[Path], *, env: Mapping[str, str]) -> NvsValues:
    """Read ``paths`` in order, each over the ones before; see the module docstring.

    Raises :class:`InputError` for an unknown suffix, a key twice in one CSV, or any
    error of the readers, located in its file.
    """
    if not paths:
        raise InputError("no values file given")
    values: NvsValues | None = None
    for path in map(Path, paths):
        kind = VALUES_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise InputError(f"unsupported values file type {path.suffix or '(none)'!r}; "
                             "expected " + " or ".join(sorted(VALUES_SUFFIXES)), file=str(path))
        if kind == "yaml":
            values = load_nvs_values([path], env=env, values=values)
            continue
        values = values if values is not None else NvsValues()
        entries = parse_nvs_csv(read_input_text(path), filename=str(path), base_dir=path.parent)
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            if (entry.namespace, entry.key) in seen:
                raise InputError(f"key {entry.key!r} appears twice in namespace "
                                 f"{entry.namespace!r}", file=entry.file, line=entry.line,
                                 hint="a later values file may override it; one file may not")
            seen.add((entry.namespace, entry.key))
            values.namespaces.setdefault(entry.namespace, {})[entry.key] = entry
            values.secrets.discard((entry.namespace, entry.key))
        values.files.append(path)
        values.inputs.append(path)
    assert values is not None
    return values

"""``init``: the three files that put an existing ESP-IDF project under idf_nvs_secure.

:func:`plan_project_init` reads a project's sdkconfig (``sdkconfig``, else
``sdkconfig.defaults``, with Kconfig semantics), the partitions CSV it names (or the
built-in table it selects) and, optionally, an NVS values CSV of nvs_partition_gen.py,
and returns the texts of ``nvs_secure.yaml``, ``partitions.yaml`` and a values YAML.
Writing them is the caller's business (the CLI never overwrites without ``--force``).

The generated partitions CSV keeps the name sdkconfig gives it
(``CONFIG_PARTITION_TABLE_CUSTOM_FILENAME``), so sdkconfig needs no change: from the
next configure on, that CSV is written from ``partitions.yaml``.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..config.sdkconfig import read_config
from ..errors import InputError
from ..formats.partition_table import DATA_TYPE, NVS_SUBTYPE, parse_flash_size
from ..fsutil import display_path, read_input_text
from ..inputs.nvs_csv import parse_nvs_csv
from ..inputs.nvs_yaml import format_nvs_values_yaml
from ..inputs.partitions_yaml import (
    format_partitions_yaml,
    pair_nvs_keys,
    read_partition_source,
)
from ..inputs.project import PROJECT_FILE
from ..inputs.schemas import schema_comment
from .security import DEFAULT_NVS_PARTITION, _builtin_csv_text

__all__ = ["ProjectInit", "plan_project_init", "csv_file_references", "PARTITIONS_YAML",
           "VALUES_YAML"]

PARTITIONS_YAML = "partitions.yaml"
VALUES_YAML = "nvs_values.yaml"


@dataclass(frozen=True)
class ProjectInit:
    """What ``init`` writes: ``files`` maps a name relative to the project to its text,
    in writing order; ``notes`` say what was read and what the user should do next."""

    files: Mapping[str, str]
    notes: tuple[str, ...]
    nvs_partition: str | None


def csv_file_references(text: str) -> dict[tuple[str, str], str]:
    """(namespace, key) -> path of the ``file`` rows of an nvs_partition_gen.py CSV, so
    a conversion keeps them as file references."""
    refs: dict[tuple[str, str], str] = {}
    namespace = ""
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 2 or row[0].startswith("#"):
            continue
        key, kind = row[0].strip(), row[1].strip()
        if kind == "namespace":
            namespace = key
        elif kind == "file" and len(row) >= 4:
            refs[(namespace, key)] = row[3].strip()
    return refs


def _values_yaml(values_csv: Path | None, root: Path) -> tuple[str, int]:
    if values_csv is None:
        return ("# NVS values: namespace -> key -> value (see the README, \"NVS values\").\n"
                "# For example:\n"
                "#   device:\n"
                "#     model: My-Sensor\n"
                "#     hw_rev: {type: u8, value: 1}\n"
                "{}\n"), 0
    text = read_input_text(values_csv)
    entries = parse_nvs_csv(text, filename=str(values_csv), base_dir=values_csv.parent)
    namespaces: dict = {}
    for entry in entries:
        namespaces.setdefault(entry.namespace, {})[entry.key] = entry
    refs = {k: os.path.relpath(values_csv.parent / p, root)
            for k, p in csv_file_references(text).items()}
    return format_nvs_values_yaml(namespaces, files=refs,
                                  schema_line=schema_comment("nvs_values")), len(entries)


def _project_yaml(partition_csv: str, nvs_partition: str | None, sources: str,
                  master_default: str) -> str:
    lines = [f"# Written by idf-nvs-secure init from {sources}.",
             "version: 1",
             f"partitions: {PARTITIONS_YAML}",
             f"# Generated from {PARTITIONS_YAML} at every configure (sdkconfig's "
             "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME):",
             f"# edit {PARTITIONS_YAML}, not this CSV.",
             f"partition_csv: {partition_csv}",
             "# Keys are derived from NVS_MASTER_SECRET. The development default below is",
             "# for development builds only: release and batch refuse it.",
             f'master_secret: {{env: NVS_MASTER_SECRET, development_default: "{master_default}"}}',
             "keys: {source: derive}"]
    if nvs_partition is None:
        lines.append("nvs: {}")
    else:
        lines += ["nvs:", f"  {nvs_partition}: {{values: [{VALUES_YAML}]}}"]
    return "\n".join(lines) + "\n"


def plan_project_init(project_dir: Path, *, sdkconfig: Path | None = None,
                      values_csv: Path | None = None, partition: str | None = None,
                      env: Mapping[str, str] | None = None,
                      rng: Callable[[int], str] = secrets.token_hex) -> ProjectInit:
    """The files ``init`` writes for the project in ``project_dir``.

    ``partition``: the NVS partition the values are for (default ``nvs``, else the only
    data/nvs partition).  ``rng``: draws the development default master secret (hex of
    32 random bytes).  Raises :class:`InputError` located at the file at fault."""
    root = Path(project_dir)
    if not root.is_dir():
        raise InputError("project directory not found", file=str(project_dir))
    config = read_config(root, sdkconfig=sdkconfig, env=env)
    values = config.values
    offset = values.get("PARTITION_TABLE_OFFSET") or 0x8000
    size_text = values.get("ESPTOOLPY_FLASHSIZE")
    flash_size = parse_flash_size(size_text) if size_text else None
    notes = []
    if values.get("PARTITION_TABLE_CUSTOM"):
        csv_name = str(values.get("PARTITION_TABLE_CUSTOM_FILENAME") or "partitions.csv")
        csv_path = Path(csv_name) if os.path.isabs(csv_name) else root / csv_name
        if not csv_path.is_file():
            where = config.requested.get("PARTITION_TABLE_CUSTOM_FILENAME")
            raise InputError(
                f"the partitions CSV {csv_name} named by CONFIG_PARTITION_TABLE_CUSTOM_FILENAME "
                "does not exist", file=where.file if where else str(csv_path),
                line=where.line if where else None)
        text, source = read_input_text(csv_path), csv_name
        if csv_path.suffix.lower() in (".yaml", ".yml"):
            raise InputError("sdkconfig names a YAML file as the partitions CSV",
                             file=csv_name, hint="this project seems to be set up already")
    else:
        builtin = str(values.get("PARTITION_TABLE_FILENAME") or "")
        text = _builtin_csv_text(builtin) if builtin else None
        if text is None:
            raise InputError(f"sdkconfig selects no partitions CSV and no built-in table "
                             f"that is known ({builtin or 'none'})",
                             hint="set CONFIG_PARTITION_TABLE_CUSTOM=y and "
                                  "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME")
        csv_name, source = "partitions.csv", f"ESP-IDF's built-in table {builtin}"
        notes.append(f"to do: sdkconfig selects the built-in table {builtin}; set "
                     f'CONFIG_PARTITION_TABLE_CUSTOM=y and CONFIG_PARTITION_TABLE_CUSTOM_'
                     f'FILENAME="{csv_name}" (in sdkconfig.defaults) so the build uses the '
                     f"table generated from {PARTITIONS_YAML}")
    shown = display_path(csv_path) if values.get("PARTITION_TABLE_CUSTOM") else source
    parsed = read_partition_source(text, shown,
                                   table_offset=offset, flash_size=flash_size, variables=env)
    table = parsed.table
    nvs_names = [p.name for p in table.of_type(DATA_TYPE, NVS_SUBTYPE)]
    if partition is not None and partition not in nvs_names:
        raise InputError(f"partition '{partition}' is not a data/nvs partition of {source}",
                         hint="NVS partitions: " + (", ".join(nvs_names) or "none"))
    nvs_partition = partition or (DEFAULT_NVS_PARTITION if DEFAULT_NVS_PARTITION in nvs_names
                                  else nvs_names[0] if len(nvs_names) == 1 else None)
    if nvs_partition is None and values_csv is not None:
        raise InputError(f"{source} has no data/nvs partition 'nvs' to put the values in",
                         hint="name one with --partition")
    pairs = {keys: nvs for nvs, keys in pair_nvs_keys(table).items()}
    partitions_text = format_partitions_yaml(
        parsed.specs, table_offset=table.offset, flash_size=flash_size,
        nvs_keys_for=pairs, schema_line=schema_comment("partitions"))
    values_text, count = _values_yaml(values_csv, root)
    read = [source] + list(config.loaded) + ([str(values_csv)] if values_csv else [])
    files = {PROJECT_FILE: _project_yaml(csv_name, nvs_partition, ", ".join(read), rng(32)),
             PARTITIONS_YAML: partitions_text}
    if nvs_partition is not None:
        files[VALUES_YAML] = values_text
        notes.append(f"values for partition '{nvs_partition}': {VALUES_YAML}"
                     + (f" ({count} entries from {values_csv})" if values_csv else
                        " (empty: add yours)"))
    else:
        notes.append("no NVS partition named 'nvs': add one under nvs: in "
                     f"{PROJECT_FILE} (with --partition next time)")
    notes.append(f"{csv_name} is generated from {PARTITIONS_YAML} from now on")
    return ProjectInit(files, tuple(notes), nvs_partition)

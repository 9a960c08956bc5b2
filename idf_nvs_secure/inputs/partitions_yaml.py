"""partitions.yaml: an ESP-IDF partition table described in YAML.

::

    table:
      offset: 0x8000          # CONFIG_PARTITION_TABLE_OFFSET
      flash_size: 4MB         # needed for size: rest
    partitions:
      - {name: nvs,      type: data, subtype: nvs,      size: 24K}
      - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted],
         nvs_keys_for: nvs}
      - {name: factory,  type: app,  subtype: factory,  size: 1M}
      - {name: storage,  type: data, subtype: fat,      size: rest}

Offsets left out are placed as gen_esp32part.py places them.  Two extras that CSV
cannot say: ``align:`` (a stricter alignment for a placed offset) and ``nvs_keys_for:``
(which NVS partition a keys partition protects).  The file goes through the same
:class:`PartitionSpec` list, placement and validation as an ESP-IDF CSV, so the same
layout gives the same binary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping, Sequence

import yaml

from ..errors import ErrorCollector, InputError
from ..formats.partition_table import (
    DATA_TYPE,
    DEFAULT_TABLE_OFFSET,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    SUBTYPES,
    TYPES,
    PartitionTable,
    parse_flash_size,
)
from .partition_csv import (
    PARTITION_SPEC_READERS,
    PartitionSpec,
    parse_partition_specs,
    parse_size,
    place_partitions,
)
from .schemas import validate_document
from .yamlsource import YamlDocument, load_yaml

__all__ = [
    "PartitionsFile",
    "parse_partitions_yaml",
    "format_partitions_yaml",
    "pair_nvs_keys",
    "spec_from_item",
    "read_partition_source",
    "parse_partitions_document",
]


@dataclass(frozen=True)
class PartitionsFile:
    """What a partitions file says: the placed table, the specs it came from, the flash
    size it names (bytes, or None) and the nvs_keys pairing (keys partition -> NVS)."""

    table: PartitionTable
    specs: tuple[PartitionSpec, ...]
    flash_size: int | None = None
    nvs_keys_for: dict[str, str] = field(default_factory=dict)
    table_offset: int | None = None  # what the file's table: section says, if anything


def _number(doc: YamlDocument, path: tuple, value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise doc.error(path, f"{what} must be a number")
    if isinstance(value, int):
        return value
    try:
        return parse_size(str(value))
    except InputError as exc:
        raise doc.error(path, f"{what} {value!r}: {exc.message}") from None


def _type(doc: YamlDocument, path: tuple, value: Any) -> int:
    if isinstance(value, int):
        return value
    if value in TYPES:
        return TYPES[value]
    try:
        return int(value, 0)
    except ValueError:
        raise doc.error(path, f"unknown partition type '{value}'",
                        hint="one of: " + ", ".join(TYPES) + ", or a number 0x40-0xFE") from None


def _subtype(doc: YamlDocument, path: tuple, type_: int, value: Any) -> int:
    if isinstance(value, int):
        return value
    known = SUBTYPES.get(type_, {})
    if value in known:
        return known[value]
    try:
        return int(value, 0)
    except ValueError:
        raise doc.error(path, f"unknown subtype '{value}' for this partition type",
                        hint="one of: " + ", ".join(known) if known else None) from None


def spec_from_item(doc: YamlDocument, path: tuple, item: dict[str, Any],
                   base: PartitionSpec | None = None) -> PartitionSpec:
    """One partition mapping as a :class:`PartitionSpec`.

    With ``base`` (a product's change to an existing partition) the fields the mapping
    leaves out keep the base's values.
    """
    line, col = doc.where(path)
    name = item.get("name", base.name if base else None)
    if "type" in item or base is None:
        type_ = _type(doc, path + ("type",), item["type"])
    else:
        type_ = base.type
    if "subtype" in item or base is None:
        subtype = _subtype(doc, path + ("subtype",), type_, item["subtype"])
    else:
        subtype = base.subtype
    if "size" in item or base is None:
        size_raw = item["size"]
        if isinstance(size_raw, str) and size_raw.strip() == "rest":
            size: int | str = "rest"
        else:
            size = _number(doc, path + ("size",), size_raw, "size")
    else:
        size = base.size
    if "offset" in item:
        offset = (_number(doc, path + ("offset",), item["offset"], "offset")
                  if item["offset"] is not None else None)
    else:
        offset = base.offset if base else None
    if "flags" in item or base is None:
        flags = set(item.get("flags") or ())
        encrypted, readonly = "encrypted" in flags, "readonly" in flags
    else:
        encrypted, readonly = base.encrypted, base.readonly
    if "align" in item:
        align = _number(doc, path + ("align",), item["align"], "align")
    else:
        align = base.align if base else None
    if "nvs_keys_for" in item and (type_, subtype) != (DATA_TYPE, NVS_KEYS_SUBTYPE):
        raise doc.error(path + ("nvs_keys_for",), f"nvs_keys_for belongs on an nvs_keys "
                        f"partition, and '{name}' is not one")
    return PartitionSpec(name=name, type=type_, subtype=subtype, offset=offset, size=size,
                         encrypted=encrypted, readonly=readonly, align=align,
                         file=doc.filename, line=line, col=col)


def parse_partitions_document(doc: YamlDocument, *, table_offset: int | None = None,
                              flash_size: int | None = None,
                              secure: str | None = None,
                              primary_bootloader_offset: int | None = None,
                              recovery_bootloader_offset: int | None = None) -> PartitionsFile:
    """Validate (schema, then meaning) and place a partitions.yaml document.

    ``table_offset``/``flash_size`` given by the caller (sdkconfig, command line) win
    over the file's ``table:`` section; ``secure`` ("v1", "v2") adds Secure Boot's app
    checks, as gen_esp32part.py ``--secure``.
    """
    validate_document(doc, "partitions")
    section = doc.data.get("table") or {}
    file_offset = (_number(doc, ("table", "offset"), section["offset"], "table offset")
                   if "offset" in section else None)
    if table_offset is None:
        table_offset = file_offset if file_offset is not None else 0x8000
    if flash_size is None and "flash_size" in section:
        try:
            flash_size = parse_flash_size(section["flash_size"])
        except InputError as exc:
            raise doc.error(("table", "flash_size"), exc.message) from None
    specs: list[PartitionSpec] = []
    pairing: dict[str, str] = {}
    errors = ErrorCollector()  # partitions are independent: every bad one at once
    for i, item in enumerate(doc.data["partitions"]):
        with errors.catch():
            spec = spec_from_item(doc, ("partitions", i), item)
            specs.append(spec)
            if "nvs_keys_for" in item:
                pairing[spec.name] = item["nvs_keys_for"]
    errors.raise_any()
    table = place_partitions(specs, table_offset=table_offset, flash_size=flash_size,
                             secure=secure, primary_bootloader_offset=primary_bootloader_offset,
                             recovery_bootloader_offset=recovery_bootloader_offset)
    for keys_name, nvs_name in pairing.items():
        target = table.find(nvs_name)
        if target is None or (target.type, target.subtype) != (DATA_TYPE, NVS_SUBTYPE):
            index = next(i for i, s in enumerate(specs) if s.name == keys_name)
            raise doc.error(("partitions", index, "nvs_keys_for"),
                            f"nvs_keys_for names '{nvs_name}', which is not an NVS partition "
                            f"in this table")
    return PartitionsFile(table, tuple(specs), flash_size, pairing, file_offset)


def parse_partitions_yaml(text: str, *, filename: str = "<yaml>", table_offset: int | None = None,
                          flash_size: int | None = None, secure: str | None = None,
                          **bootloader_offsets: int | None) -> PartitionsFile:
    """Parse partitions.yaml text into a placed, validated table.

    ``bootloader_offsets``: ``primary_bootloader_offset``/``recovery_bootloader_offset``
    for bootloader entries, as :func:`~.partition_csv.place_partitions` takes them."""
    return parse_partitions_document(load_yaml(text, filename), table_offset=table_offset,
                                     flash_size=flash_size, secure=secure, **bootloader_offsets)


def read_partition_source(text: str, filename: str, *, table_offset: int | None = None,
                          flash_size: int | None = None,
                          variables: Mapping[str, str] | None = None,
                          secure: str | None = None,
                          primary_bootloader_offset: int | None = None,
                          recovery_bootloader_offset: int | None = None) -> PartitionsFile:
    """A partitions.yaml or ESP-IDF CSV (by ``filename``'s extension), placed.

    ``table_offset``/``flash_size`` given by the caller win over a YAML file's ``table:``
    section; a CSV has none, so they default to 0x8000 and no size check.
    """
    if PurePath(filename).suffix.lower() in (".yaml", ".yml"):
        return parse_partitions_yaml(text, filename=filename, table_offset=table_offset,
                                     flash_size=flash_size, secure=secure,
                                     primary_bootloader_offset=primary_bootloader_offset,
                                     recovery_bootloader_offset=recovery_bootloader_offset)
    specs = parse_partition_specs(text, filename=filename, variables=variables)
    offset = DEFAULT_TABLE_OFFSET if table_offset is None else table_offset
    table = place_partitions(specs, table_offset=offset, flash_size=flash_size, secure=secure,
                             primary_bootloader_offset=primary_bootloader_offset,
                             recovery_bootloader_offset=recovery_bootloader_offset)
    return PartitionsFile(table, tuple(specs), flash_size, {}, None)


def pair_nvs_keys(table: PartitionTable, explicit: dict[str, str] | None = None) -> dict[str, str]:
    """NVS partition name -> the nvs_keys partition that holds its keys.

    Explicit ``nvs_keys_for`` pairs first; otherwise, with exactly one nvs_keys partition,
    it protects the default ``nvs`` partition when there is one, else the only NVS one.
    """
    pairs = {nvs: keys for keys, nvs in (explicit or {}).items()}
    keys_parts = [p.name for p in table.of_type(DATA_TYPE, NVS_KEYS_SUBTYPE)]
    nvs_parts = [p.name for p in table.of_type(DATA_TYPE, NVS_SUBTYPE)]
    unpaired = [k for k in keys_parts if k not in pairs.values()]
    if len(unpaired) == 1 and not pairs:
        default = "nvs" if "nvs" in nvs_parts else (nvs_parts[0] if len(nvs_parts) == 1 else None)
        if default is not None:
            pairs[default] = unpaired[0]
    return pairs


def _size_text(size: int) -> int | str:
    if size > 0 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)}M"
    if size > 0 and size % 1024 == 0:
        return f"{size // 1024}K"
    return f"-0x{-size:x}" if size < 0 else f"0x{size:x}"


def _name_of(mapping: dict[str, int], value: int) -> int | str:
    for name, number in mapping.items():
        if number == value:
            return name
    return f"0x{value:02x}"


class _Hex(int):
    """An int that YAML writes as 0x... (still an int when read back)."""


def _represent_hex(dumper: yaml.SafeDumper, value: _Hex) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:int", f"0x{int(value):x}")


def format_partitions_yaml(specs: Sequence[PartitionSpec], *, table_offset: int = 0x8000,
                           flash_size: int | None = None, schema_line: str | None = None,
                           nvs_keys_for: dict[str, str] | None = None) -> str:
    """partitions.yaml text for ``specs`` (offsets left unset stay unset)."""
    table: dict[str, Any] = {"offset": _Hex(table_offset)}
    if flash_size:
        table["flash_size"] = f"{flash_size // (1024 * 1024)}MB"
    items = []
    for s in specs:
        item: dict[str, Any] = {"name": s.name, "type": _name_of(TYPES, s.type),
                                "subtype": _name_of(SUBTYPES.get(s.type, {}), s.subtype)}
        if s.offset is not None:
            item["offset"] = _Hex(s.offset)
        item["size"] = s.size if isinstance(s.size, str) else _size_text(s.size)
        flags = [f for f, on in (("encrypted", s.encrypted), ("readonly", s.readonly)) if on]
        if flags:
            item["flags"] = flags
        if s.align is not None:
            item["align"] = _Hex(s.align)
        if nvs_keys_for and s.name in nvs_keys_for:
            item["nvs_keys_for"] = nvs_keys_for[s.name]
        items.append(item)

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(_Hex, _represent_hex)

    body = yaml.dump({"table": table}, Dumper=_Dumper, sort_keys=False)
    lines = ["partitions:"]
    for item in items:
        lines.append("  - " + yaml.dump(item, Dumper=_Dumper, sort_keys=False,
                                        default_flow_style=True, width=200).strip())
    text = body + "\n".join(lines) + "\n"
    return (f"{schema_line}\n" if schema_line else "") + text


def _yaml_specs(text: str, *, filename: str, variables: Mapping[str, str] | None = None
                ) -> list[PartitionSpec]:
    return list(parse_partitions_yaml(text, filename=filename).specs)


PARTITION_SPEC_READERS.setdefault(".yaml", _yaml_specs)
PARTITION_SPEC_READERS.setdefault(".yml", _yaml_specs)

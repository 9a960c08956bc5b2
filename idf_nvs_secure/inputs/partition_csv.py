"""ESP-IDF partition CSV: read rows into specs, place them, write the canonical CSV.

The CSV dialect is gen_esp32part.py's: one partition per line,
``Name, Type, SubType, Offset, Size, Flags``; ``#`` comments and blank lines; ``$VAR``
and ``${VAR}`` expanded as ``os.path.expandvars`` does; numbers in decimal, ``0x`` hex
or with a ``K``/``M`` suffix (KiB/MiB); flags separated by ``:`` with no spaces
around it (``encrypted : readonly`` is refused, as gen_esp32part.py refuses it).  Blank offsets are
placed after the previous partition (app at 64 KB, others at 4 KB alignment), a
negative size ``-N`` means "up to offset N".

Stricter than gen_esp32part.py, on purpose: a name over 16 bytes is an error (not
truncated), an unknown ``$VAR`` anywhere in a row is an error, and so is a non-empty
seventh column (``encrypted, readonly`` silently loses ``readonly`` there).

Pure text in, models out; file reading belongs to the callers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from ..errors import CapacityError, ErrorCollector, InputError
from ..formats.partition_table import (
    APP_TYPE,
    BOOTLOADER_TYPE,
    DEFAULT_TABLE_OFFSET,
    FLAGS,
    MAX_TYPE,
    PARTITION_TABLE_SIZE,
    PARTITION_TABLE_TYPE,
    PRIMARY_SUBTYPE,
    RECOVERY_SUBTYPE,
    SUBTYPES,
    TYPES,
    UNDEFINED_SUBTYPE,
    Partition,
    PartitionTable,
    alignment_for_type,
    find_problem,
    format_size,
    has_fixed_location,
)

__all__ = [
    "PartitionSpec",
    "parse_size",
    "parse_partition_csv_specs",
    "parse_partition_specs",
    "partition_spec_reader",
    "PARTITION_SPEC_READERS",
    "place_partitions",
    "parse_partition_csv",
    "format_partition_csv",
    "specs_from_table",
]

#: Value of :attr:`PartitionSpec.size` meaning "up to the end of the flash".
REST = "rest"


@dataclass(frozen=True)
class PartitionSpec:
    """One partition as written by the user, before placement.

    ``offset`` in bytes from flash start, None to place it automatically.  ``size`` in
    bytes; a negative int ``-N`` means "up to end offset N" (gen_esp32part.py), the
    string ``"rest"`` up to the end of the flash.  Both are ignored where ESP-IDF fixes
    them: the size of bootloader and partition_table entries, the offset of the primary
    and recovery bootloader and the primary partition table.  ``align`` (bytes) asks for
    a stricter offset alignment than the type's.  ``file``/``line``/``col`` locate the
    spec in its source for error messages.
    """

    name: str
    type: int
    subtype: int
    offset: int | None
    size: int | str
    encrypted: bool = False
    readonly: bool = False
    align: int | None = None
    file: str | None = None
    line: int | None = None
    col: int | None = None


# --- values -------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """A size or offset in bytes: decimal, ``0x`` hex (``int(x, 0)``), or with a ``K``
    (x1024) or ``M`` (x1048576) suffix, either case; a leading ``-`` is allowed."""
    value = text.strip()
    multiplier = 1
    if value[-1:].lower() == "k":
        value, multiplier = value[:-1], 1024
    elif value[-1:].lower() == "m":
        value, multiplier = value[:-1], 1024 * 1024
    try:
        return int(value, 0) * multiplier
    except ValueError:
        raise InputError(f"invalid number {text.strip()!r}",
                         hint="use decimal (24576), hex (0x6000) or a K/M suffix (24K, 1M)") from None


def _parse_keyword(text: str, keywords: Mapping[str, int]) -> int | None:
    lowered = text.lower()
    if lowered in keywords:
        return keywords[lowered]
    try:
        return int(text, 0)
    except ValueError:
        return None


# --- $VAR expansion -----------------------------------------------------------------

# Same pattern as posixpath.expandvars: $name (ASCII word characters) or ${anything}.
_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def _expand_vars(line: str, variables: Mapping[str, str]) -> tuple[str, list[tuple[str, int]]]:
    """Expand like ``os.path.expandvars``; also return unknown variables and columns."""
    unknown: list[tuple[str, int]] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("{"):
            name = name[1:-1]
        if name in variables:
            return variables[name]
        escaped = match.start() > 0 and line[match.start() - 1] == "\\"
        if not escaped:
            unknown.append((name, match.start() + 1))
        return match.group(0)

    return _VAR.sub(replace, line), unknown


# --- reading rows -------------------------------------------------------------------

_COLUMNS = ("name", "type", "subtype", "offset", "size", "flags")


def parse_partition_csv_specs(text: str, *, filename: str = "<csv>",
                              variables: Mapping[str, str] | None = None) -> list[PartitionSpec]:
    """Read an ESP-IDF partition CSV into specs (one per row, in order, not yet placed).

    ``variables`` (default ``os.environ``) supply ``$VAR``/``${VAR}``.  Raises
    :class:`InputError` with ``filename``, the line and (where it is exact) the column.
    """
    env = os.environ if variables is None else variables
    specs = []
    errors = ErrorCollector()  # rows are independent: every bad row is reported at once
    for number, raw in enumerate(text.splitlines(), start=1):
        line, unknown = _expand_vars(raw, env)
        if not line.strip() or line.strip().startswith("#"):
            continue
        exact = line == raw
        with errors.catch():
            if unknown:
                name, col = unknown[0]
                raise InputError(f"unknown variable ${name}", file=filename, line=number,
                                 col=col, hint=f"set {name} in the environment, or write "
                                               "the value")
            fields = _split_row(line)
            try:
                specs.append(_row_to_spec(fields, filename, number))
            except InputError as exc:
                if not exact:
                    exc.col = None
                raise exc.located(filename, number) from None
    errors.raise_any()
    return specs


def _split_row(line: str) -> list[tuple[str, int]]:
    """Comma-separated fields, stripped, with their 1-based columns; at least six."""
    fields, start = [], 0
    for piece in line.split(","):
        stripped = piece.strip()
        lead = len(piece) - len(piece.lstrip())
        fields.append((stripped, start + lead + 1))
        start += len(piece) + 1
    while len(fields) < len(_COLUMNS):
        fields.append(("", len(line) + 1))
    return fields


def _row_to_spec(fields: list[tuple[str, int]], filename: str, number: int) -> PartitionSpec:
    (name, name_col), (type_text, type_col), (sub_text, sub_col), \
        (offset_text, offset_col), (size_text, size_col), (flags_text, flags_col) = fields[:6]

    def fail(message: str, col: int, hint: str | None = None) -> InputError:
        label = f"partition {name!r}: " if name else ""
        return InputError(label + message, file=filename, line=number, col=col, hint=hint)

    if not name:
        raise fail("the partition name is empty", name_col)
    for extra, col in fields[6:]:
        if extra:
            raise fail(f"unexpected seventh column {extra!r}", col,
                       "several flags go in one column separated by ':' (encrypted:readonly)")

    if not type_text:
        raise fail("the type is empty", type_col, "types: " + ", ".join(TYPES))
    ptype = _parse_keyword(type_text, TYPES)
    if ptype is None:
        raise fail(f"unknown type {type_text!r}", type_col,
                   "types: " + ", ".join(TYPES) + ", or a number 0x40-0xFE for custom types")
    if not 0 <= ptype <= MAX_TYPE:
        raise fail(f"type {type_text} is out of range (0x00-0xFE)", type_col)

    names = SUBTYPES.get(ptype, {})
    if not sub_text:
        if ptype == APP_TYPE:
            raise fail("an app partition needs a subtype", sub_col,
                       "app subtypes: factory, test, ota_0..ota_15, tee_0, tee_1")
        subtype = UNDEFINED_SUBTYPE
    else:
        parsed = _parse_keyword(sub_text, names)
        if parsed is None:
            kind = type_text.lower() if type_text.lower() in TYPES else f"type {type_text}"
            known = ", ".join(names) if names else "none (custom type)"
            raise fail(f"unknown {kind} subtype {sub_text!r}", sub_col,
                       f"known {kind} subtypes: {known}; or a number 0x00-0xFF")
        if not 0 <= parsed <= 0xFF:  # data/0xff is used by ESP-IDF's own examples
            raise fail(f"subtype {sub_text} is out of range (0x00-0xFF)", sub_col)
        subtype = parsed

    fixed_size = ptype in (BOOTLOADER_TYPE, PARTITION_TABLE_TYPE)
    fixed_offset = has_fixed_location(ptype, subtype) or \
        (ptype == BOOTLOADER_TYPE and subtype == RECOVERY_SUBTYPE)
    offset: int | None = None
    if offset_text and not fixed_offset:
        try:
            offset = parse_size(offset_text)
        except InputError as exc:
            raise fail(f"offset: {exc.message}", offset_col, exc.hint) from None
        if offset < 0:
            raise fail(f"offset {offset_text} is negative", offset_col)
    size: int = 0
    if not fixed_size:
        if not size_text:
            raise fail("the size is empty", size_col,
                       "give a size (0x6000, 24K, 1M), or -END for 'up to offset END'")
        try:
            size = parse_size(size_text)
        except InputError as exc:
            raise fail(f"size: {exc.message}", size_col, exc.hint) from None

    flags = {}
    col = flags_col
    for flag in flags_text.split(":"):
        # As gen_esp32part.py: the field is stripped, its pieces are not, and names are
        # case-sensitive; empty pieces are skipped.
        if flag in FLAGS:
            flags[flag] = True
        elif flag:
            hint = "flags: encrypted, readonly (several separated by ':')"
            if flag.strip() in FLAGS:
                hint = "no spaces around ':' (gen_esp32part.py refuses them): encrypted:readonly"
            raise fail(f"unknown flag {flag!r}", col, hint)
        col += len(flag) + 1
    return PartitionSpec(name, ptype, subtype, offset, size, file=filename, line=number, **flags)


# --- placement ----------------------------------------------------------------------


def place_partitions(specs: Sequence[PartitionSpec], *, table_offset: int = DEFAULT_TABLE_OFFSET,
                     flash_size: int | None = None,
                     primary_bootloader_offset: int | None = None,
                     recovery_bootloader_offset: int | None = None,
                     secure: str | None = None) -> PartitionTable:
    """Give every spec an offset and a size as gen_esp32part.py does, then validate.

    Walking the specs in order from the end of the table sector (``table_offset`` +
    0x1000): a blank offset goes to the end of the previous partition rounded up to the
    type's alignment (app 0x10000, others 0x1000) or the spec's ``align``; an explicit
    offset must not be below that end (rows with explicit offsets are in increasing
    order).  Sizes ``-N`` become ``N - offset``, ``"rest"`` ``flash_size - offset``.
    The primary bootloader sits at ``primary_bootloader_offset``
    (``CONFIG_BOOTLOADER_OFFSET_IN_FLASH``), the recovery bootloader at
    ``recovery_bootloader_offset``, the primary table at ``table_offset``; bootloader
    entries are ``table_offset - primary_bootloader_offset`` long, table entries 0x1000.
    ``secure`` ("v1", "v2", gen_esp32part.py ``--secure``; see
    :func:`~..formats.partition_table.secure_boot_check`) adds Secure Boot's app checks.

    Every error is an :class:`InputError` naming the partition, with the spec's location.
    """
    if table_offset < 0 or table_offset % 0x1000:
        raise InputError(f"table offset 0x{table_offset:x} is not a multiple of 0x1000")
    if primary_bootloader_offset is not None and primary_bootloader_offset >= table_offset:
        raise InputError(f"the primary bootloader offset 0x{primary_bootloader_offset:x} is "
                         f"not below the partition table offset 0x{table_offset:x}")
    last_end = table_offset + PARTITION_TABLE_SIZE
    previous: str | None = None
    before: PartitionSpec | None = None
    parts = []
    for spec in specs:
        if spec.size == REST and flash_size is not None and before is not None \
                and last_end > flash_size:
            # The partition before a 'rest' one already runs past the flash: that one
            # is the cause, not the 'rest' partition that finds nothing left.
            raise CapacityError(f"partition {previous!r}: it ends at 0x{last_end:x} "
                                f"({last_end / 0x100000:.1f} MB), beyond the end of the "
                                f"{format_size(flash_size)} flash (0x{flash_size:x}), so "
                                f"nothing is left for {spec.name!r} (size: rest)",
                                hint="shrink the partitions, or raise the flash size "
                                     "(CONFIG_ESPTOOLPY_FLASHSIZE)",
                                file=before.file, line=before.line, col=before.col)
        try:
            part = _place_one(spec, last_end, previous, table_offset, flash_size,
                              primary_bootloader_offset, recovery_bootloader_offset)
        except InputError as exc:
            raise exc.located(spec.file, spec.line, spec.col) from None
        if not has_fixed_location(part.type, part.subtype):
            last_end, previous, before = part.end, part.name, spec
        parts.append(part)
    table = PartitionTable(tuple(parts), offset=table_offset)
    problem = find_problem(table, flash_size=flash_size, secure=secure)
    if problem is not None:
        spec = specs[problem.index] if problem.index is not None else None
        message = problem.message
        if problem.other is not None and specs[problem.other].line is not None:
            message += f" (see line {specs[problem.other].line})"
        error = CapacityError if problem.capacity else InputError
        raise error(message, hint=problem.hint, file=spec.file if spec else None,
                    line=spec.line if spec else None, col=spec.col if spec else None)
    return table


def _place_one(spec: PartitionSpec, last_end: int, previous: str | None, table_offset: int,
               flash_size: int | None, primary_bootloader_offset: int | None,
               recovery_bootloader_offset: int | None) -> Partition:
    label = f"partition {spec.name!r}"
    offset, size = spec.offset, spec.size
    if spec.type == BOOTLOADER_TYPE:
        if primary_bootloader_offset is None:
            raise InputError(f"{label}: bootloader entries need the primary bootloader offset",
                             hint="pass --primary-bootloader-offset "
                                  "(CONFIG_BOOTLOADER_OFFSET_IN_FLASH of the target)")
        size = table_offset - primary_bootloader_offset
        if spec.subtype == PRIMARY_SUBTYPE:
            offset = primary_bootloader_offset
        elif spec.subtype == RECOVERY_SUBTYPE:
            if recovery_bootloader_offset is None:
                raise InputError(f"{label}: a recovery bootloader entry needs its offset",
                                 hint="pass --recovery-bootloader-offset "
                                      "(CONFIG_BOOTLOADER_RECOVERY_OFFSET)")
            offset = recovery_bootloader_offset
    elif spec.type == PARTITION_TABLE_TYPE:
        size = PARTITION_TABLE_SIZE
        if spec.subtype == PRIMARY_SUBTYPE:
            offset = table_offset
    if has_fixed_location(spec.type, spec.subtype):
        return _partition(spec, offset, size)

    align = alignment_for_type(spec.type)
    if spec.align is not None:
        if spec.align <= 0:
            raise InputError(f"{label}: alignment {spec.align} is not positive")
        align = math.lcm(align, spec.align)
    if offset is None:
        offset = -(-last_end // align) * align
    elif offset < last_end:
        if previous is None:
            raise InputError(f"{label}: offset 0x{offset:x} is inside or below the partition "
                             f"table sector 0x{table_offset:x}-0x{last_end - 1:x}",
                             hint=f"use a free offset 0x{last_end:x} or higher, "
                                  "or leave the offset empty")
        raise InputError(f"{label}: offset 0x{offset:x} overlaps the previous partition "
                         f"{previous!r}, which ends at 0x{last_end:x}",
                         hint=f"use 0x{last_end:x} or higher (rows with explicit offsets "
                              "must be in increasing order), or leave the offset empty")
    elif spec.align is not None and offset % spec.align:
        raise InputError(f"{label}: offset 0x{offset:x} is not aligned to 0x{spec.align:x} "
                         "(its align setting)",
                         hint=f"use 0x{-(-offset // align) * align:x}, or leave the offset empty")
    if size == REST:
        if flash_size is None:
            raise InputError(f"{label}: size 'rest' needs the flash size",
                             hint="pass --flash-size (CONFIG_ESPTOOLPY_FLASHSIZE)")
        if offset >= flash_size:
            raise CapacityError(f"{label}: starts at 0x{offset:x}, at or beyond the end of "
                                f"the flash (0x{flash_size:x}); nothing is left for 'rest'")
        size = flash_size - offset
    elif isinstance(size, str):
        raise InputError(f"{label}: invalid size {size!r} (a number or 'rest')")
    elif size < 0:
        if -size <= offset:
            raise InputError(f"{label}: size -0x{-size:x} means 'up to offset 0x{-size:x}', "
                             f"but the partition starts at 0x{offset:x}")
        size = -size - offset
    return _partition(spec, offset, size)


def _partition(spec: PartitionSpec, offset: int | None, size: int | str) -> Partition:
    assert isinstance(offset, int) and isinstance(size, int)
    return Partition(spec.name, spec.type, spec.subtype, offset, size,
                     encrypted=spec.encrypted, readonly=spec.readonly)


def parse_partition_csv(text: str, *, filename: str = "<csv>",
                        table_offset: int = DEFAULT_TABLE_OFFSET, flash_size: int | None = None,
                        variables: Mapping[str, str] | None = None,
                        primary_bootloader_offset: int | None = None,
                        recovery_bootloader_offset: int | None = None,
                        secure: str | None = None) -> PartitionTable:
    """Read, place and validate a partition CSV: ``gen_esp32part.py`` without the binary."""
    specs = parse_partition_csv_specs(text, filename=filename, variables=variables)
    return place_partitions(specs, table_offset=table_offset, flash_size=flash_size,
                            primary_bootloader_offset=primary_bootloader_offset,
                            recovery_bootloader_offset=recovery_bootloader_offset,
                            secure=secure)


#: Readers of partition sources by file extension: ``reader(text, filename=...,
#: variables=...) -> list[PartitionSpec]``.  The YAML reader adds ``.yaml``/``.yml``.
PARTITION_SPEC_READERS: dict[str, Callable[..., list[PartitionSpec]]] = {
    ".csv": parse_partition_csv_specs,
}


def partition_spec_reader(filename: str) -> Callable[..., list[PartitionSpec]]:
    """The reader for a partition source, chosen by ``filename``'s extension.

    Raises :class:`InputError` for a ``.bin`` (already built) or an unknown extension.
    """
    suffix = PurePath(filename).suffix.lower()
    reader = PARTITION_SPEC_READERS.get(suffix)
    if reader is None:
        if suffix == ".bin":
            raise InputError("a binary partition table is already built, not a source",
                             file=filename, hint="'partitions show' reads .bin files")
        raise InputError(f"unknown partition source type {suffix or '(no extension)'!r}",
                         file=filename,
                         hint="expected one of: " + ", ".join(sorted(PARTITION_SPEC_READERS)))
    return reader


def parse_partition_specs(text: str, *, filename: str,
                          variables: Mapping[str, str] | None = None) -> list[PartitionSpec]:
    """Read partition specs from a source, choosing the reader by ``filename``'s extension."""
    return partition_spec_reader(filename)(text, filename=filename, variables=variables)


# --- writing ------------------------------------------------------------------------


def specs_from_table(table: PartitionTable) -> list[PartitionSpec]:
    """Specs that place back to ``table`` exactly: every offset and size explicit.

    For writing a built table (a .bin) as a source; the entries keep their table order.
    """
    return [PartitionSpec(p.name, p.type, p.subtype, p.offset, p.size,
                          encrypted=p.encrypted, readonly=p.readonly)
            for p in table.partitions]



def _csv_size(size: int) -> str:
    for unit, suffix in ((1024 * 1024, "M"), (1024, "K")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"0x{size:x}"


def _csv_keyword(value: str | int) -> str:
    return value if isinstance(value, str) else str(value)


def format_partition_csv(table: PartitionTable) -> str:
    """The canonical CSV, identical to what gen_esp32part.py writes for the binary.

    Two comment lines, then ``name,type,subtype,0xOFFSET,SIZE,flags`` per entry: names
    for known types/subtypes else decimal, sizes in M or K when whole, else hex.
    """
    rows = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
    for part in table.partitions:
        rows.append(",".join([part.name, _csv_keyword(part.type_name),
                              _csv_keyword(part.subtype_name), f"0x{part.offset:x}",
                              _csv_size(part.size), ":".join(part.flags)]))
    return "\n".join(rows) + "\n"

"""The devices CSV of a manufacturing batch, checked row by row before anything is built.

``devices.csv`` has a ``device_id`` column and one column per per-device value, named
``namespace.key`` (``partition/namespace.key`` when several NVS partitions have that
key; ``namespace.key:type`` for a key the product's values do not have).  A column's
type is the product's; a blob column, or one whose base value comes from a file, names
a file relative to the CSV.  An empty cell is an error (drop the column to keep the
product's value for every device).  Every error names the CSV line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import CapacityError, InputError
from ..formats.nvs_image import NVS_TYPES, NvsEntry, build_nvs_image, validate_entry
from ..formats.nvs_template import encoded_length
from ..fsutil import read_input_bytes, read_input_text
from ..inputs.textcheck import control_character

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import BatchPlan

__all__ = ["DEVICE_ID_COLUMN", "Column", "DeviceTable", "parse_shard", "load_devices",
           "entry_layouts", "device_entries"]

DEVICE_ID_COLUMN = "device_id"
#: A device id names a directory: letters, digits, '.', '_', '-'; 1..64 characters.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: ``[partition/]namespace.key[:type]``
_HEADER = re.compile(r"(?:(?P<part>[^/]+)/)?(?P<ns>[^.:/]+)\.(?P<key>[^:]+)"
                     r"(?::(?P<type>\w+))?")
_INT_TYPES = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"}


@dataclass(frozen=True)
class Column:
    """A per-device column: where its value goes and how the cell is read."""

    header: str
    index: int
    partition: str
    namespace: str
    key: str
    type: str
    from_file: bool


@dataclass(frozen=True)
class DeviceTable:
    """A checked devices CSV: ``rows`` are ``(device_id, line, values)`` with one value
    per column, already converted and validated."""

    file: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, int, tuple[Any, ...]], ...]

    @property
    def supplied(self) -> dict[str, set[tuple[str, str]]]:
        """Per NVS partition, the (namespace, key) pairs every device gives (a column: an
        empty cell is an error), so the product's own value of them is never used."""
        out: dict[str, set[tuple[str, str]]] = {}
        for col in self.columns:
            out.setdefault(col.partition, set()).add((col.namespace, col.key))
        return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def _column(batch: BatchPlan, header: str, index: int, where: dict) -> Column:
    match = _HEADER.fullmatch(header.strip())
    if not match:
        raise InputError(f"column {header!r} is not namespace.key", **where,
                         hint="name per-device columns namespace.key, e.g. device.serial")
    part_name, ns, key, type_ = match["part"], match["ns"], match["key"], match["type"]
    jobs = [batch.job(part_name)] if part_name else list(batch.jobs)
    if part_name and jobs[0] is None:
        raise InputError(f"column {header!r}: no NVS partition '{part_name}' with host-built "
                         f"images", **where,
                         hint="partitions: " + ", ".join(j.name for j in batch.jobs))
    found = [(j, e) for j in jobs for e in j.entries if (e.namespace, e.key) == (ns, key)]
    if len(found) > 1:
        raise InputError(f"column {header!r}: key {ns}.{key} is in NVS partitions "
                         f"{', '.join(j.name for j, _ in found)}", **where,
                         hint=f"name the partition: {found[0][0].name}/{ns}.{key}")
    if found:
        job, entry = found[0]
        if type_ and type_ != entry.type:
            raise InputError(f"column {header!r}: {ns}.{key} is a {entry.type} in the "
                             f"product's values, not a {type_}", **where)
        return Column(header, index, job.name, ns, key, entry.type,
                      entry.type == "blob" or (ns, key) in job.from_file)
    if type_ is None:
        raise InputError(f"unknown column {header!r}: the product's values have no key "
                         f"{ns}.{key}", **where,
                         hint=f"add it to the values file, or give its type: {header}:u32")
    if type_ not in NVS_TYPES:
        raise InputError(f"column {header!r}: unknown type {type_!r}", **where,
                         hint="one of: " + ", ".join(NVS_TYPES))
    if len(jobs) != 1:
        raise InputError(f"column {header!r}: which NVS partition?", **where,
                         hint="prefix it: " + " or ".join(f"{j.name}/{header}" for j in jobs))
    return Column(header, index, jobs[0].name, ns, key, type_, type_ == "blob")


def _cell(column: Column, text: str, base_dir: Path) -> Any:
    """The value of one cell (files read relative to ``base_dir``); raises ValueError
    with a message for text that is not of the column's type."""
    if column.from_file:
        path = base_dir / text
        try:
            data = read_input_bytes(path)
        except InputError as exc:
            raise ValueError(f"column {column.header}: file '{text}': {exc.message} "
                             f"(relative to the CSV's folder)") from None
        if column.type == "blob":
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"column {column.header}: file '{text}' is not UTF-8 text") from None
        if column.type == "string":
            return text
        text = text.strip()
    if column.type in _INT_TYPES:
        try:
            return int(text, 10)
        except ValueError:
            try:
                return int(text, 0)
            except ValueError:
                raise ValueError(f"column {column.header}: {text!r} is not a whole "
                                 f"number") from None
    if column.type in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"column {column.header}: {text!r} is not a number") from None
    return text


def entry_layouts(batch: BatchPlan, columns: Sequence[Column]):
    """Per job: the entry template (base entries, new keys after their namespace) and
    the (slot, column position) pairs a device fills in."""
    out = []
    for job in batch.jobs:
        entries = list(job.entries)
        slots = []
        for position, col in enumerate(columns):
            if col.partition != job.name:
                continue
            slot = next((i for i, e in enumerate(entries)
                         if (e.namespace, e.key) == (col.namespace, col.key)), None)
            if slot is None:  # a new key: after the last entry of its namespace
                same = [i for i, e in enumerate(entries) if e.namespace == col.namespace]
                slot = same[-1] + 1 if same else len(entries)
                entries.insert(slot, NvsEntry(col.namespace, col.key, col.type, 0))
                slots = [(s + 1 if s >= slot else s, p) for s, p in slots]
            slots.append((slot, position))
        out.append((tuple(entries), tuple(slots)))
    return tuple(out)


def device_entries(template: tuple[NvsEntry, ...], slots, columns,
                   values) -> list[NvsEntry]:
    entries = list(template)
    for slot, position in slots:
        col = columns[position]
        entries[slot] = NvsEntry(col.namespace, col.key, col.type, values[position])
    return entries


def _size_key(columns: Sequence[Column], values: Sequence[Any]) -> tuple:
    """What decides an image's layout: the encoded lengths of the values."""
    return tuple(encoded_length(c.type, v) for c, v in zip(columns, values))


def load_devices(path: Path, batch: BatchPlan, *, display: str | None = None) -> DeviceTable:
    """Read and check a devices CSV against ``batch``: columns, every cell (type, range,
    files), unique device ids, and that every device's values fit their partitions.
    Errors name the CSV line."""
    name = display or str(path)
    text = read_input_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    columns: list[Column] = []
    rows = []
    seen: dict[str, int] = {}
    line = 1
    id_index = 0
    for record in reader:
        start, line = line, reader.line_num + 1
        if not record or all(not cell.strip() for cell in record):
            continue
        where = {"file": name, "line": start}
        if header is None:
            header = [h.strip() for h in record]
            if DEVICE_ID_COLUMN not in header:
                raise InputError(f"no {DEVICE_ID_COLUMN} column", **where,
                                 hint=f"the first line names the columns: {DEVICE_ID_COLUMN},"
                                      f" namespace.key, ...")
            id_index = header.index(DEVICE_ID_COLUMN)
            for i, h in enumerate(header):
                if i == id_index:
                    continue
                if h in header[:i]:
                    raise InputError(f"column {h!r} appears twice", **where)
                columns.append(_column(batch, h, i, where))
            continue
        if len(record) != len(header):
            raise InputError(f"{len(record)} cells, but the header has {len(header)} columns",
                             **where)
        device = record[id_index].strip()
        bad = control_character(record[id_index])
        if bad:
            raise InputError(f"device id {device!r} contains a control character ({bad})",
                             **where)
        if not _DEVICE_ID.fullmatch(device):
            raise InputError(f"device id {device!r} is not 1..64 letters, digits, '.', '_' "
                             f"or '-' (starting with a letter or digit)", **where)
        if device in seen:
            raise InputError(f"duplicate device id {device!r} (first on line {seen[device]})",
                             **where)
        seen[device] = start
        values = []
        for col in columns:
            cell = record[col.index]
            if cell == "":
                raise InputError(f"device {device}: column {col.header} is empty", **where,
                                 hint="every device needs a value; drop the column to keep "
                                      "the product's value")
            try:
                value = _cell(col, cell, Path(path).parent)
                validate_entry(NvsEntry(col.namespace, col.key, col.type, value))
            except ValueError as exc:
                raise InputError(f"device {device}: {exc}", **where) from None
            except InputError as exc:
                raise InputError(f"device {device}: column {col.header}: {exc.message}",
                                 **where, hint=exc.hint) from None
            values.append(value)
        rows.append((device, start, tuple(values)))
    if header is None:
        raise InputError("the devices CSV is empty", file=name)
    table = DeviceTable(name, tuple(columns), tuple(rows))
    _check_capacity(batch, table)
    return table


def _check_capacity(batch: BatchPlan, table: DeviceTable) -> None:
    """Build the plaintext images of one device per distinct value-length signature:
    a device whose values do not fit is reported at its line before anything is written."""
    layouts = entry_layouts(batch, table.columns)
    tried: set[tuple] = set()
    for device, line, values in table.rows:
        key = _size_key(table.columns, values)
        if key in tried:
            continue
        tried.add(key)
        for job, (template, slots) in zip(batch.jobs, layouts):
            try:
                build_nvs_image(device_entries(template, slots, table.columns, values), job.size,
                                version=job.version)
            except CapacityError as exc:
                raise CapacityError(f"device {device}: NVS partition '{job.name}': "
                                    f"{exc.message}", file=table.file, line=line,
                                    hint=exc.hint) from None

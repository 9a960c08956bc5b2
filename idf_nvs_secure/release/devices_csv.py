"""The devices CSV of a manufacturing batch, checked row by row before anything is built.

:func:`load_devices` reads the header and splits the rows into chunks (checking cell
counts and device ids, which need the whole table); workers read and check their own
chunks (:meth:`DeviceTable.read`, :func:`check_capacity`), so the table is never held
converted in memory and the work spreads over all processes.

``devices.csv`` has a ``device_id`` column and one column per per-device value, named
``namespace.key`` (``partition/namespace.key`` when several NVS partitions have that
key; ``namespace.key:type`` for a key the product's values do not have).  A column's
type is the product's; a blob column, or one whose base value comes from a file, names
a file relative to the CSV.  An empty cell is an error (drop the column to keep the
product's value for every device).  Every error names the CSV line.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import CapacityError, InputError
from ..formats.nvs_image import NVS_TYPES, NvsEntry, build_nvs_image, validate_entry
from ..formats.nvs_layout import INT_RANGES
from ..formats.nvs_template import encoded_length
from ..fsutil import read_input_bytes, read_input_text
from ..inputs.textcheck import control_character

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import BatchPlan

__all__ = ["DEVICE_ID_COLUMN", "Column", "Chunk", "DeviceTable", "parse_shard", "load_devices",
           "check_capacity", "entry_layouts", "device_entries"]

DEVICE_ID_COLUMN = "device_id"
#: A device id names a directory: letters, digits, '.', '_', '-'; 1..64 characters.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: ``[partition/]namespace.key[:type]``
_HEADER = re.compile(r"(?:(?P<part>[^/]+)/)?(?P<ns>[^.:/]+)\.(?P<key>[^:]+)"
                     r"(?::(?P<type>\w+))?")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # as textcheck.control_character
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")
#: Device rows per chunk: the unit a worker reads, checks and builds.
CHUNK_ROWS = 250


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
class Chunk:
    """Consecutive device rows of the CSV: ``text[start:end]``, its first line number,
    the CSV-order index of its first device row (0-based) and its number of rows."""

    start: int
    end: int
    line: int
    row: int
    count: int


@dataclass(frozen=True)
class DeviceTable:
    """A devices CSV whose header and device ids are checked: its rows, split into
    chunks that workers read and check themselves (:meth:`read`)."""

    file: str
    columns: tuple[Column, ...]
    text: str = field(repr=False)
    chunks: tuple[Chunk, ...]
    count: int
    base_dir: str = "."

    def read(self, chunk: Chunk, shard: tuple[int, int] = (1, 1)
             ) -> Iterator[tuple[str, int, tuple[Any, ...]]]:
        """``(device_id, line, values)`` of the chunk's rows in ``shard`` (K, N: rows
        K-1, K-1+N, ...), each value converted and checked; raises :class:`InputError`
        at the row's line for a bad cell."""
        k, n = shard
        cells = [_reader(c, self.base_dir) for c in self.columns]
        id_index = _id_index(self.columns)
        row = chunk.row
        for record, line, _, _ in _records(self.text[chunk.start:chunk.end], chunk.line):
            row += 1
            if n != 1 and (row - 1) % n != k - 1:
                continue
            device = record[id_index].strip()
            values = []
            for col, convert in zip(self.columns, cells):
                cell = record[col.index]
                if cell == "":
                    raise InputError(f"device {device}: column {col.header} is empty",
                                     file=self.file, line=line,
                                     hint="every device needs a value; drop the column to keep "
                                          "the product's value")
                try:
                    values.append(convert(cell))
                except ValueError as exc:
                    raise InputError(f"device {device}: {exc}", file=self.file,
                                     line=line) from None
                except InputError as exc:
                    raise InputError(f"device {device}: column {col.header}: {exc.message}",
                                     file=self.file, line=line, hint=exc.hint) from None
            yield device, line, tuple(values)

    @property
    def rows(self) -> tuple[tuple[str, int, tuple[Any, ...]], ...]:
        """Every row, read and checked (the whole table in memory: for small tables and
        tests; a batch reads chunk by chunk)."""
        return tuple(r for c in self.chunks for r in self.read(c))

    @property
    def supplied(self) -> dict[str, set[tuple[str, str]]]:
        """Per NVS partition, the (namespace, key) pairs every device gives (a column: an
        empty cell is an error), so the product's own value of them is never used."""
        out: dict[str, set[tuple[str, str]]] = {}
        for col in self.columns:
            out.setdefault(col.partition, set()).add((col.namespace, col.key))
        return out


def _id_index(columns: Sequence[Column]) -> int:
    """The device_id column's position: the one index no per-device column has."""
    used = {c.index for c in columns}
    return next(i for i in range(len(columns) + 1) if i not in used)


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
    try:  # the names: cells are checked for their values only
        validate_entry(NvsEntry(ns, key, type_, "" if type_ == "string" else b"" if
                                type_ == "blob" else 0.0 if type_ in ("float", "double") else 0))
    except InputError as exc:
        raise InputError(f"column {header!r}: {exc.message}", **where) from None
    if len(jobs) != 1:
        raise InputError(f"column {header!r}: which NVS partition?", **where,
                         hint="prefix it: " + " or ".join(f"{j.name}/{header}" for j in jobs))
    return Column(header, index, jobs[0].name, ns, key, type_, type_ == "blob")


def _cell(column: Column, text: str, base_dir: str) -> Any:
    """The value of one cell (files read relative to ``base_dir``); raises ValueError
    with a message for text that is not of the column's type."""
    if column.from_file:
        try:
            data = read_input_bytes(os.path.join(base_dir, text))
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
    if column.type in INT_RANGES:
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


def _reader(column: Column, base_dir: str) -> Callable[[str], Any]:
    """A function from a cell's text to its checked value (ValueError or InputError
    when it is not valid): in-range integers and short strings without NUL take a
    short path; everything else goes through :func:`~.formats.nvs_image.validate_entry`."""
    ns, key, kind = column.namespace, column.key, column.type

    def checked(text: str) -> Any:
        value = _cell(column, text, base_dir)
        validate_entry(NvsEntry(ns, key, kind, value))
        return value

    if column.from_file:
        return checked
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]

        def integer(text: str) -> Any:
            try:
                value = int(text, 10)
            except ValueError:
                try:
                    value = int(text, 0)
                except ValueError:
                    return checked(text)
            return value if low <= value <= high else checked(text)
        return integer
    if kind == "string":
        def string(text: str) -> Any:
            return text if len(text) < 1000 and "\x00" not in text else checked(text)
        return string
    return checked


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


def _records(text: str, first_line: int = 1):
    """``(record, first line, start offset, end offset)`` of each non-blank CSV record
    of ``text``; lines are numbered from ``first_line`` and offsets are ``text``'s (a
    record may span lines: a quoted cell can hold a line break)."""
    position = 0
    line = first_line - 1

    def lines():  # as io.StringIO(text, newline="") splits them, without its copy
        nonlocal position, line
        for match in _LINE.finditer(text):
            physical = match[0]
            if not physical:
                return
            position += len(physical)
            line += 1
            yield physical

    start, start_position = first_line, 0
    for record in csv.reader(lines()):
        if record and any(cell.strip() for cell in record):
            yield record, start, start_position, position
        start, start_position = line + 1, position


def load_devices(path: Path, batch: BatchPlan, *, display: str | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> DeviceTable:
    """Read a devices CSV's header and split its rows into chunks, checking what needs
    the whole table (columns, cell counts, device ids and their uniqueness).  Each row's
    cells are checked when a worker reads its chunk (:meth:`DeviceTable.read`), before
    anything is written.  Errors name the CSV line."""
    name = display or str(path)
    text = read_input_text(path)
    header: list[str] | None = None
    columns: list[Column] = []
    chunks: list[Chunk] = []
    seen: set[int] = set()
    id_index = 0
    last_end = 0
    count = 0
    chunk: list[int] | None = None  # [start offset, first line, first row, rows]
    for record, line, begin, end in _records(text):
        where = {"file": name, "line": line}
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
            last_end = end
            continue
        if len(record) != len(header):
            raise InputError(f"{len(record)} cells, but the header has {len(header)} columns",
                             **where)
        device = record[id_index].strip()
        bad = _CONTROL.search(record[id_index]) and control_character(record[id_index])
        if bad:
            raise InputError(f"device id {device!r} contains a control character ({bad})",
                             **where)
        if not _DEVICE_ID.fullmatch(device):
            raise InputError(f"device id {device!r} is not 1..64 letters, digits, '.', '_' "
                             f"or '-' (starting with a letter or digit)", **where)
        key = hash(device)  # ints, not the ids: less memory for big tables
        if key in seen:
            first = next(ln for rec, ln, _, _ in _records(text)
                         if len(rec) > id_index and rec[id_index].strip() == device)
            if first != line:  # (else two ids share a hash: no duplicate)
                raise InputError(f"duplicate device id {device!r} (first on line {first})",
                                 **where)
        seen.add(key)
        if chunk is None:  # from the record itself: no blank line before it
            chunk = [begin, line, count, 0]
        chunk[3] += 1
        count += 1
        last_end = end
        if chunk[3] == chunk_rows:
            chunks.append(Chunk(chunk[0], end, chunk[1], chunk[2], chunk[3]))
            chunk = None
    if header is None:
        raise InputError("the devices CSV is empty", file=name)
    if chunk is not None:
        chunks.append(Chunk(chunk[0], last_end, chunk[1], chunk[2], chunk[3]))
    return DeviceTable(name, tuple(columns), text, tuple(chunks), count,
                       str(Path(path).parent))


def check_capacity(batch: BatchPlan, table: DeviceTable, row: tuple, layouts,
                   tried: set) -> None:
    """Build the plaintext images of a device whose value lengths were not tried yet:
    a device whose values do not fit is reported at its line before anything is
    written."""
    device, line, values = row
    key = _size_key(table.columns, values)
    if key in tried:
        return
    tried.add(key)
    for job, (template, slots) in zip(batch.jobs, layouts):
        try:
            build_nvs_image(device_entries(template, slots, table.columns, values), job.size,
                            version=job.version)
        except CapacityError as exc:
            raise CapacityError(f"device {device}: NVS partition '{job.name}': "
                                f"{exc.message}", file=table.file, line=line,
                                hint=exc.hint) from None

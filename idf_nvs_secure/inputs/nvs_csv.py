"""The CSV input of ESP-IDF's nvs_partition_gen.py, read into :class:`NvsEntry` values.

Format (ESP-IDF docs, "NVS Partition Generator Utility")::

    key,type,encoding,value          <- header, required
    # lines starting with '#' are comments
    device,namespace,,               <- the following entries belong to 'device'
    serial,data,string,SN-000814
    count,data,u32,7
    cert,file,binary,certs/dev.der   <- file paths resolve against the CSV's folder

``type`` is ``namespace``, ``data`` or ``file``.  ``encoding`` is one of u8, i8, u16,
i16, u32, i32, u64, i64, string, hex2bin, base64, binary, ``blob_fill(N;0xHH)``,
``blob_sz_fill(N;0xHH)`` and, beyond the reference tool, float and double.  For ``file``
entries only string, hex2bin, base64 and binary apply: the value is a path and the
file's contents are the value.

``blob_fill(N;0xHH)`` stores the value's UTF-8 bytes padded with byte 0xHH to N bytes
(a C ``char[N]`` field; an empty value is N pad bytes); ``blob_sz_fill(N;0xHH)`` puts
the value's length as a little-endian u32 before them (N + 4 bytes), as ESP-IDF's Wi-Fi
configuration stores ``sta.ssid``.  Both are blobs; a value longer than N is an error.

Differences from the reference tool, on purpose: a value containing a comma must be
quoted (the tool silently cuts it at the comma; here an extra field is an error);
``file`` paths resolve relative to the CSV's own directory, not the working directory;
integers may be written in hex (``0x1f``); a namespace line followed by no entries
writes no namespace entry (namespace entries are written when first used); every
problem is an :class:`~idf_nvs_secure.errors.InputError` located at ``file:line``.
"""

from __future__ import annotations

import binascii
import csv
import io
import math
import re
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from ..errors import ErrorCollector, InputError, NvsSecureError
from ..formats.nvs_image import NvsEntry, validate_entry
from ..fsutil import read_input_bytes

__all__ = ["CSV_HEADER", "CSV_ENCODINGS", "parse_nvs_csv", "format_nvs_csv",
           "BlobFill", "parse_fill_encoding", "fill_blob"]

#: The header line every CSV starts with.
CSV_HEADER = ("key", "type", "encoding", "value")

_INT_ENCODINGS = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64")
_FLOAT_ENCODINGS = ("float", "double")
_BLOB_ENCODINGS = ("hex2bin", "base64", "binary")
#: encoding -> model type
CSV_ENCODINGS: dict[str, str] = {
    **{name: name for name in _INT_ENCODINGS},
    **{name: name for name in _FLOAT_ENCODINGS},
    "string": "string",
    **{name: "blob" for name in _BLOB_ENCODINGS},
}
_FILE_ENCODINGS = ("string", "hex2bin", "base64", "binary")

# nvs_partition_gen.py's spelling: a decimal size and a two-digit 0x byte.
_FILL_ENCODING = re.compile(r"(blob_fill|blob_sz_fill)\(([0-9]+);(0x[0-9a-fA-F]{2})\)", re.ASCII)
_FILL_LENGTH = struct.Struct("<I")  # blob_sz_fill's prefix: the value's length in bytes


class BlobFill(NamedTuple):
    """A fixed-size blob field: ``size`` bytes (the prefix not counted) padded with
    ``byte``; ``length_prefix`` puts the content's length first as a little-endian u32."""

    size: int
    byte: int
    length_prefix: bool = False


def parse_fill_encoding(encoding: str) -> BlobFill | None:
    """``blob_fill(N;0xHH)`` / ``blob_sz_fill(N;0xHH)`` as a :class:`BlobFill`, else None."""
    match = _FILL_ENCODING.fullmatch(encoding)
    if match is None:
        return None
    return BlobFill(int(match.group(2)), int(match.group(3), 16), match.group(1) == "blob_sz_fill")


def fill_blob(content: bytes, fill: BlobFill, where: str) -> bytes:
    """The blob nvs_partition_gen.py stores for ``content`` in the field ``fill``."""
    if len(content) > fill.size:
        raise InputError(f"{where}: the value is {len(content)} bytes, longer than the "
                         f"{fill.size}-byte field it fills",
                         hint=f"shorten it, or make the field at least {len(content)} bytes")
    padded = content + bytes((fill.byte,)) * (fill.size - len(content))
    return _FILL_LENGTH.pack(len(content)) + padded if fill.length_prefix else padded


class _Lines:
    """Feeds physical lines to csv.reader, dropping comment lines that start a row,
    and remembers which line each row began on (1-based)."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline=None)  # universal newlines, like 'rt'
        self.number = 0
        self.row_start = 0
        self._at_row_start = True

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.number += 1
            if self._at_row_start:
                if line.startswith("#"):
                    continue
                self.row_start = self.number
                self._at_row_start = False
            yield line

    def next_row(self) -> None:
        self._at_row_start = True


def _parse_int(text: str) -> int:
    body = text.strip()
    digits = body.lstrip("+-")
    if digits[:2].lower() == "0x":
        return int(body, 16)
    return int(body, 10)


def _entry_value(encoding: str, raw: str | bytes, where: str) -> int | float | str | bytes:
    """Turn the value cell (str) or file contents (bytes) into the model value."""
    if encoding in _INT_ENCODINGS:
        try:
            return _parse_int(raw)  # type: ignore[arg-type]
        except ValueError:
            raise InputError(f"{where}: {raw!r} is not an integer") from None
    if encoding in _FLOAT_ENCODINGS:
        try:
            value = float(raw)  # type: ignore[arg-type]
        except ValueError:
            raise InputError(f"{where}: {raw!r} is not a number") from None
        if math.isnan(value):
            raise InputError(f"{where}: NaN cannot be stored in NVS")
        return value
    if encoding == "string":
        if isinstance(raw, bytes):
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: file is not UTF-8 text (byte {exc.start})") from None
        return raw
    if encoding == "hex2bin":
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if len(text) % 2:
            raise InputError(f"{where}: hex data has an odd number of digits ({len(text)})")
        try:
            return binascii.a2b_hex(text)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: not hex data (only 0-9, a-f allowed)") from None
    if encoding == "base64":
        try:
            return binascii.a2b_base64(raw)
        except (binascii.Error, ValueError):
            raise InputError(f"{where}: not valid base64 data (check its length and "
                             "padding)") from None
    # binary: the file's bytes, or the cell's text as UTF-8
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


def parse_nvs_csv(text: str, *, filename: str, base_dir: Path,
                  read_file: Callable[[Path], bytes] = read_input_bytes) -> list[NvsEntry]:
    """Read the reference tool's CSV format into validated entries, in file order.

    ``filename`` names the CSV in messages (``values.csv:7: ...``); ``file`` entries are
    read with ``read_file(base_dir / path)`` (absolute paths are kept as they are).
    Raises :class:`InputError` located at the offending line.
    """
    # csv refuses fields over 128 KiB by default; a hex blob may be up to ~1 MB.  The
    # limit is process-wide, so it is only ever raised, to what this text could need.
    if csv.field_size_limit() <= len(text):
        csv.field_size_limit(len(text) + 1)
    lines = _Lines(text)
    reader = csv.reader(lines)
    base_dir = Path(base_dir)

    def fail(message: str, hint: str | None = None) -> InputError:
        return InputError(message, file=filename, line=lines.row_start, hint=hint)

    entries: list[NvsEntry] = []
    namespace: str | None = None
    header_seen = False
    errors = ErrorCollector()

    def add_row(row: list[str]) -> None:
        """Check one entry row and add its entry (raises for this row only)."""
        nonlocal namespace
        if len(row) > 4:
            raise fail(
                f"{len(row)} fields; expected 4 (key,type,encoding,value)",
                hint="quote a value that contains a comma: key,data,string,\"a,b\"")
        if len(row) < 4 and not (len(row) >= 2 and row[1].strip().lower() == "namespace"):
            raise fail(f"{len(row)} fields; expected 4 (key,type,encoding,value)")
        key = row[0]  # not stripped: the reference tool keeps spaces in keys
        kind = row[1].strip().lower()
        if kind == "namespace":
            # A bad name is one error, not one per row: its rows are checked under a
            # stand-in name (the file is refused anyway).
            namespace = "-"
            _check_namespace(key, fail)
            namespace = key
            return
        encoding = row[2].strip().lower()
        value_cell = row[3]
        where = f"key {key!r}"
        if kind not in ("data", "file"):
            raise fail(f"{where}: unknown type {row[1]!r}; expected namespace, data or file")
        fill = parse_fill_encoding(encoding)
        if encoding not in CSV_ENCODINGS and fill is None:
            if encoding.startswith(("blob_fill", "blob_sz_fill")):
                raise fail(f"{where}: invalid encoding {row[2].strip()!r}",
                           hint="write blob_fill(SIZE;0xHH) or blob_sz_fill(SIZE;0xHH): a "
                                "decimal size and a two-digit hex pad byte, e.g. "
                                "blob_fill(64;0x00)")
            raise fail(f"{where}: unknown encoding {row[2]!r}",
                       hint="use one of " + ", ".join(CSV_ENCODINGS)
                       + ", blob_fill(N;0xHH), blob_sz_fill(N;0xHH)")
        if namespace is None:
            raise fail(f"{where}: entry before any namespace line",
                       hint="start with a line like: my_namespace,namespace,,")
        if fill is not None:
            if kind == "file":
                raise fail(f"{where}: a file entry must use one of "
                           f"{', '.join(_FILE_ENCODINGS)}, not {encoding}")
            try:
                entry = NvsEntry(namespace, key, "blob",
                                 fill_blob(value_cell.encode("utf-8"), fill, where),
                                 file=filename, line=lines.row_start)
                validate_entry(entry)
            except InputError as exc:
                raise exc.located(filename, lines.row_start) from None
            entries.append(entry)
            return
        raw: str | bytes = value_cell
        if kind == "file":
            if encoding not in _FILE_ENCODINGS:
                raise fail(f"{where}: a file entry must use one of "
                           f"{', '.join(_FILE_ENCODINGS)}, not {encoding}")
            path = Path(value_cell.strip())
            if not path.is_absolute():
                path = base_dir / path
            try:
                raw = read_file(path)
            except NvsSecureError as exc:
                raise fail(f"{where}: cannot read {value_cell.strip()}: {exc.message}") from None
        try:
            entry = NvsEntry(namespace, key, CSV_ENCODINGS[encoding],
                             _entry_value(encoding, raw, where),
                             file=filename, line=lines.row_start)
            validate_entry(entry)
        except InputError as exc:
            raise exc.located(filename, lines.row_start) from None
        entries.append(entry)

    while True:
        lines.next_row()
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the reader cannot go on: what came before, and this
            errors.raise_any(fail(f"malformed CSV: {exc}"))
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if not header_seen:
            if tuple(cell.strip().lower() for cell in row) != CSV_HEADER:
                raise fail(
                    f"the first line must be the header {','.join(CSV_HEADER)}, "
                    f"not {','.join(row)!r}")
            header_seen = True
            continue
        with errors.catch():
            add_row(row)
    if not header_seen:
        raise InputError(f"empty CSV: expected the header {','.join(CSV_HEADER)}",
                         file=filename)
    errors.raise_any()
    return entries


def _check_namespace(name: str, fail: Callable[..., InputError]) -> None:
    probe = NvsEntry(name, "k", "u8", 0)
    try:
        validate_entry(probe)
    except InputError as exc:
        raise fail(exc.message) from None


def format_nvs_csv(entries: Iterable[NvsEntry]) -> str:
    """Write entries in the reference CSV format (blobs as hex2bin, floats as float or
    double); :func:`parse_nvs_csv` reads the text back to equal entries."""
    out = io.StringIO()
    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def write(row: list[str]) -> None:
        # a row starting with '#' would read as a comment: quote it
        (quoted if row[0].startswith("#") else plain).writerow(row)

    plain.writerow(CSV_HEADER)
    current: str | None = None
    for entry in entries:
        if entry.namespace != current:
            current = entry.namespace
            write([entry.namespace, "namespace", "", ""])
        value = entry.value
        if isinstance(value, (bytes, bytearray)):
            write([entry.key, "data", "hex2bin", value.hex()])
        elif entry.type in _FLOAT_ENCODINGS:
            write([entry.key, "data", entry.type, repr(float(value))])
        else:
            write([entry.key, "data", entry.type, str(value)])
    return out.getvalue()

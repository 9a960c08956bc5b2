"""NVS partition images: the entry model, the writer, and (re-exported) the reader.

:func:`build_nvs_image` lays entries out exactly as ESP-IDF's nvs_partition_gen.py
(esp-idf-nvs-partition-gen 0.3.0) does, so that for the same entries in the same order
the bytes are identical, plain and encrypted, except where that tool is wrong:

* strings of 3969..4000 bytes (NUL included) are written on an empty page (the tool
  raises PageFullError; ESP-IDF stores any variable-length item of up to 125 data
  entries, nvs_page.cpp ``Page::writeItem``);
* each entry goes into the namespace it names, also when it returns to an earlier
  namespace (the tool puts it into the namespace it created last);
* keys named ``sta.ssid``, ``sta.pswd`` or ``ap.*`` are written as given (the tool adds
  hidden Wi-Fi entries after them);
* names longer than 15 bytes, out-of-range integers, duplicate keys and data that does
  not fit are errors with the entry's location, not tracebacks or silent damage.

Layout rules shared with the tool (they are what ESP-IDF's own writer would produce,
one item after another): a namespace entry (``nsIndex`` 0, type U8, the namespace name
as key, its index as value) precedes the first entry of each namespace; a string or a
version-1 blob never spans pages and goes to a new page unless it ends before the page's
last entry; a version-2 blob is split into BLOB_DATA chunks that fill each page, followed
by a BLOB_IDX.  Every page but the one written last is FULL; that one stays ACTIVE;
the rest of the partition is erased flash (0xFF), the last page of it reserved for
NVS's garbage collection.  Partitions under 0x3000 bytes are laid out as read-only NVS
(no reserved page), and the image stops after the last page used, as the tool does.

Encryption (``keys``) is AES-XTS-256 of each written entry with its byte offset as the
tweak; page headers, bitmaps and unwritten entries stay in clear (0xFF).
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from typing import TYPE_CHECKING, Sequence

from ..errors import CapacityError, InputError
from .nvs_layout import (
    BLOB_MAX_CHUNKS,
    BLOB_MAX_SIZE,
    BLOB_MAX_SIZE_V1,
    CHUNK_ANY,
    ENTRIES_PER_PAGE,
    ENTRY_DATA_OFFSET,
    ENTRY_SIZE,
    ENTRY_TABLE_OFFSET,
    INT_RANGES,
    ITEM,
    ITEM_BLOB_INDEX,
    ITEM_TYPE_BLOB,
    ITEM_TYPE_BLOB_DATA,
    ITEM_TYPE_BLOB_IDX,
    ITEM_TYPE_SZ,
    ITEM_TYPE_U8,
    ITEM_VARLEN,
    MAX_KEY_LEN,
    MAX_NAMESPACES,
    NS_INDEX,
    NVS_TYPES,
    NVS_VERSION_1,
    NVS_VERSION_2,
    PAGE_HEADER,
    PAGE_SIZE,
    PAGE_STATE_ACTIVE,
    PAGE_STATE_FULL,
    PRIMITIVE_FORMATS,
    STR_LEN_MAX_SIZE,
    NvsEntry,
    entry_bitmap,
)
from .xts import xts_encrypt_runs

if TYPE_CHECKING:  # pragma: no cover
    from .nvs_keys import NvsKeys

__all__ = [
    "NVS_TYPES",
    "PAGE_SIZE",
    "ENTRY_SIZE",
    "ENTRIES_PER_PAGE",
    "MAX_KEY_LEN",
    "MIN_PARTITION_SIZE",
    "MIN_READ_WRITE_SIZE",
    "NvsEntry",
    "validate_entry",
    "usable_pages",
    "build_nvs_image",
]

#: Smallest partition: one page (read-only NVS, as nvs_partition_gen.py's check_size).
MIN_PARTITION_SIZE = PAGE_SIZE
#: Smallest read/write partition: two data pages plus the reserved page.
MIN_READ_WRITE_SIZE = 3 * PAGE_SIZE


def _error(entry: NvsEntry, message: str, cls: type[InputError] = InputError,
           hint: str | None = None) -> InputError:
    return cls(message, file=entry.file, line=entry.line, col=entry.col, hint=hint)


def _check_name(entry: NvsEntry, what: str, name: object) -> bytes:
    if not isinstance(name, str):
        raise _error(entry, f"{what} must be text, not {type(name).__name__}")
    encoded = name.encode("utf-8")
    if not encoded:
        raise _error(entry, f"{what} is empty")
    if len(encoded) > MAX_KEY_LEN:
        raise _error(
            entry,
            f"{what} {name!r} is {len(encoded)} bytes; NVS allows at most {MAX_KEY_LEN}",
        )
    if b"\x00" in encoded:
        raise _error(entry, f"{what} {name!r} contains a NUL character")
    return encoded


#: Stands for a secret value in messages.
SECRET_NOT_SHOWN = "(secret, not shown)"


def _encode_value(entry: NvsEntry, secret: bool = False) -> bytes:
    """The stored bytes: the 8-byte data field of a fixed-size type, the string with its
    NUL, or the blob; raises InputError (with the entry's location) when invalid.  With
    ``secret`` no message shows the value (only its type, size or range)."""
    kind = entry.type
    value = entry.value
    fmt = PRIMITIVE_FORMATS.get(kind)
    label = f"key {entry.key!r}"
    shown = SECRET_NOT_SHOWN if secret else repr(value)
    if fmt is not None:
        if kind in INT_RANGES:
            if not isinstance(value, int) or isinstance(value, bool):
                raise _error(entry, f"{label}: {kind} value must be an integer, not {shown}")
            low, high = INT_RANGES[kind]
            if not low <= value <= high:
                raise _error(entry, f"{label}: value {shown} does not fit {kind} ({low}..{high})")
        else:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _error(entry, f"{label}: {kind} value must be a number, not {shown}")
            if math.isnan(value):
                raise _error(entry, f"{label}: {kind} value is NaN, which NVS rejects")
            try:
                fmt.pack(value)
            except (OverflowError, struct.error):
                raise _error(entry, f"{label}: value {shown} does not fit {kind}") from None
        return fmt.pack(value).ljust(8, b"\xff")
    if kind == "string":
        if not isinstance(value, str):
            raise _error(entry, f"{label}: string value must be text, not {type(value).__name__}")
        data = value.encode("utf-8") + b"\x00"
        if b"\x00" in data[:-1]:
            raise _error(entry, f"{label}: string contains a NUL character")
        if len(data) > STR_LEN_MAX_SIZE:
            raise _error(
                entry,
                f"{label}: string is {len(data)} bytes with its NUL; NVS allows at most "
                f"{STR_LEN_MAX_SIZE}",
                hint="store longer data as a blob",
            )
        return data
    if kind == "blob":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _error(entry, f"{label}: blob value must be bytes, not {type(value).__name__}")
        data = bytes(value)
        if len(data) > BLOB_MAX_SIZE:
            raise _error(
                entry, f"{label}: blob is {len(data)} bytes; NVS allows at most {BLOB_MAX_SIZE}"
            )
        return data
    raise _error(
        entry,
        f"{label}: unknown type {kind!r}; expected one of {', '.join(NVS_TYPES)}",
    )


def validate_entry(entry: NvsEntry, *, secret: bool = False) -> None:
    """Check names (1..15 bytes of UTF-8, no NUL), the type, and the value's range and
    size (strings at most 4000 bytes with their NUL, blobs at most 508000 bytes).

    Raises :class:`InputError` located at the entry; for a ``secret`` entry the message
    names what is wrong but never shows the value.  Limits that depend on the format
    version or the partition size are checked by :func:`build_nvs_image` (their
    messages give sizes, never values).
    """
    _check_name(entry, "namespace", entry.namespace)
    _check_name(entry, "key", entry.key)
    _encode_value(entry, secret)


def usable_pages(size: int) -> int:
    """Pages that may hold data in a partition of ``size`` bytes (a multiple of 4096).

    All but the last one, which NVS keeps free for garbage collection; partitions under
    0x3000 bytes are read-only NVS and use all their pages.
    """
    pages = size // PAGE_SIZE
    return pages if size < MIN_READ_WRITE_SIZE else pages - 1


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool):
        raise InputError(f"partition size must be an integer number of bytes, not {size!r}")
    if size < MIN_PARTITION_SIZE or size % PAGE_SIZE:
        raise InputError(
            f"partition size 0x{size:x} ({size} bytes) must be a positive multiple of "
            f"0x{PAGE_SIZE:x} bytes",
            hint=f"a read/write NVS partition needs at least 0x{MIN_READ_WRITE_SIZE:x} bytes",
        )


_pack_item = ITEM.pack_into
_pack_header = PAGE_HEADER.pack
_varlen = ITEM_VARLEN.pack
_blob_index = ITEM_BLOB_INDEX.pack
_crc32 = zlib.crc32
_head = struct.Struct("<BBBB").pack  # the first four bytes of ITEM, for its CRC
_RESERVED = b"\xff" * 19
_EMPTY_PAGE = b"\xff" * PAGE_SIZE
_LAST_ENTRY = ENTRIES_PER_PAGE - 1
#: mState of a FULL page, little-endian
_FULL = PAGE_STATE_FULL.to_bytes(4, "little")
#: Integer types: ItemType, struct, 0xFF padding of the 8-byte data field.
_INT_FAST = {
    kind: (NVS_TYPES[kind], PRIMITIVE_FORMATS[kind].pack,
           b"\xff" * (8 - PRIMITIVE_FORMATS[kind].size))
    for kind in INT_RANGES
}

# Caches of pure functions of their keys, to keep the per-entry work small when many
# images share names and layouts.  Bounded: when one is full its oldest quarter goes
# (dicts keep insertion order), so an image with more keys than the bound does not
# empty the cache at every key.
_names: dict[str, bytes] = {}  # validated name -> NUL-padded 16 bytes
_heads: dict[tuple[int, int, int, int], int] = {}  # first four item bytes -> CRC state
_prefixes: dict[tuple[int, int, bytes], int] = {}  # (ns, type, key16) -> CRC state
_headers: dict[tuple[int, int, int], bytes] = {}  # (page, version byte, state) -> header
_CACHE_LIMIT = 1 << 16


def _make_room(cache: dict) -> None:
    if len(cache) >= _CACHE_LIMIT:
        for key in list(itertools.islice(cache, _CACHE_LIMIT // 4)):
            del cache[key]


def _name16(entry: NvsEntry, what: str, name: str) -> bytes:
    padded = _names.get(name)
    if padded is None:
        padded = _check_name(entry, what, name).ljust(16, b"\x00")
        _make_room(_names)
        _names[name] = padded
    return padded


def _head_crc(ns: int, code: int, span: int, chunk: int) -> int:
    """CRC state after the first four bytes of an item (ns, type, span, chunkIndex)."""
    key = (ns, code, span, chunk)
    state = _heads.get(key)
    if state is None:
        state = _crc32(_head(ns, code, span, chunk), 0xFFFFFFFF)
        _make_room(_heads)
        _heads[key] = state
    return state


def _prefix_crc(ns: int, code: int, key16: bytes) -> int:
    """CRC state after the first 24 bytes of a one-entry item (all but its value)."""
    key = (ns, code, key16)
    state = _prefixes.get(key)
    if state is None:
        state = _crc32(key16, _head_crc(ns, code, 1, CHUNK_ANY))
        _make_room(_prefixes)
        _prefixes[key] = state
    return state


def _page_header(page: int, version_byte: int, state: int) -> bytes:
    key = (page, version_byte, state)
    header = _headers.get(key)
    if header is None:
        crc = _crc32(_pack_header(state, page, version_byte, _RESERVED, 0)[4:28], 0xFFFFFFFF)
        header = _pack_header(state, page, version_byte, _RESERVED, crc)
        _make_room(_headers)
        _headers[key] = header
    return header


def _open_page(buf: bytearray, used: list[int], openers: list[NvsEntry], n: int,
               entry: NvsEntry) -> int:
    """Close the current page (``n`` entries written; it becomes FULL), start the next
    one for ``entry`` and return the offset of the new page's entry 0.

    ``buf`` starts as the erased partition; it only grows when the entries need more
    pages than the partition has (the caller then raises CapacityError)."""
    start = len(used) * PAGE_SIZE
    used.append(n)
    buf[start: start + 4] = _FULL
    if len(buf) < start + 2 * PAGE_SIZE:
        buf += _EMPTY_PAGE
    openers.append(entry)
    return start + PAGE_SIZE + ENTRY_DATA_OFFSET


def build_nvs_image(entries: Sequence[NvsEntry], size: int, *, version: int = 2,
                    keys: "NvsKeys | None" = None) -> bytes:
    """The image of a ``size``-byte NVS partition holding ``entries`` in that order.

    ``size`` is in bytes, a multiple of 4096 (at least 0x3000 for read/write NVS).  The
    image is ``size`` bytes long, except under 0x3000 (read-only NVS), where it is, as
    nvs_partition_gen.py writes it, only the pages used: 4096 bytes per page, at least one.
    ``version`` is the NVS format version: 2 (multi-page blobs, ESP-IDF v3.2 and later:
    commit 5a27a635, first in v3.2-beta1) or 1, which cannot hold float or double
    entries (types of ESP-IDF v6.1 and later, which firmware that needs version 1 pages
    predates).  With ``keys`` the entries are encrypted as NVS encryption expects.

    Raises :class:`InputError` for an invalid entry (located at it) or size, and
    :class:`CapacityError` when the entries need more pages than the partition has.
    """
    _check_size(size)
    if version == 2:
        version_byte = NVS_VERSION_2
    elif version == 1:
        version_byte = NVS_VERSION_1
        for entry in entries:
            if entry.type in ("float", "double"):
                raise InputError(
                    f"{entry.type} value {entry.namespace}.{entry.key} cannot be written in "
                    f"format version 1: version 1 is for firmware before ESP-IDF v3.2, and "
                    f"{entry.type} values need ESP-IDF v6.1+", file=entry.file, line=entry.line,
                    col=entry.col, hint="use format version 2, or a u32 or string value")
    else:
        raise InputError(f"NVS format version must be 1 or 2, not {version!r}")
    multipage = version == 2

    buf = bytearray(b"\xff") * size  # erased flash
    used: list[int] = []  # entries written on each page before the current one
    openers: list[NvsEntry] = []  # the entry that opened each page after the first
    page_base = ENTRY_DATA_OFFSET  # offset of entry 0 of the current page
    n = 0  # next free entry on the current page
    namespaces: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    # local names for the per-entry path (this loop is the hot path of batch builds)
    seen_add = seen.add
    names_get = _names.get
    heads_get = _heads.get
    prefixes_get = _prefixes.get
    int_fast_get = _INT_FAST.get
    pack_item = _pack_item
    crc32 = _crc32
    entry_size = ENTRY_SIZE
    entries_per_page = ENTRIES_PER_PAGE
    chunk_any = CHUNK_ANY
    count = 0

    for entry in entries:
        namespace = entry.namespace
        key = entry.key
        kind = entry.type
        key16 = names_get(key) or _name16(entry, "key", key)
        seen_add((namespace, key))
        count += 1
        if len(seen) != count:
            raise _error(entry, f"key {key!r} appears twice in namespace {namespace!r}")

        ns = namespaces.get(namespace)
        if ns is None:  # first use: write the namespace entry
            name16 = names_get(namespace) or _name16(entry, "namespace", namespace)
            if len(namespaces) >= MAX_NAMESPACES:
                raise _error(entry, f"more than {MAX_NAMESPACES} namespaces")
            ns = namespaces[namespace] = len(namespaces) + 1
            if n >= entries_per_page:
                page_base = _open_page(buf, used, openers, n, entry)
                n = 0
            data = bytes((ns,)) + b"\xff" * 7
            crc = crc32(name16 + data, _head_crc(NS_INDEX, ITEM_TYPE_U8, 1, chunk_any))
            pack_item(buf, page_base + n * entry_size, NS_INDEX, ITEM_TYPE_U8, 1, chunk_any,
                      crc, name16, data)
            n += 1

        value = entry.value
        fast = int_fast_get(kind)
        if fast is not None:  # an integer: one entry
            code, pack, pad = fast
            try:
                if type(value) is not int:
                    raise TypeError
                data = pack(value) + pad
            except (TypeError, struct.error):
                data = _encode_value(entry)  # raises the precise error
            if n >= entries_per_page:
                page_base = _open_page(buf, used, openers, n, entry)
                n = 0
            state = prefixes_get((ns, code, key16)) or _prefix_crc(ns, code, key16)
            pack_item(buf, page_base + n * entry_size, ns, code, 1, chunk_any,
                      crc32(data, state), key16, data)
            n += 1
            continue

        if kind == "string" and type(value) is str and "\x00" not in value:
            data = value.encode("utf-8") + b"\x00"
            if len(data) > STR_LEN_MAX_SIZE:
                data = _encode_value(entry)  # raises
        elif kind == "blob" and type(value) is bytes and len(value) <= BLOB_MAX_SIZE:
            data = value
        else:
            data = _encode_value(entry)

        if kind in PRIMITIVE_FORMATS:  # float, double: one entry
            if n >= entries_per_page:
                page_base = _open_page(buf, used, openers, n, entry)
                n = 0
            code = NVS_TYPES[kind]
            crc = crc32(key16 + data, _head_crc(ns, code, 1, chunk_any))
            pack_item(buf, page_base + n * entry_size, ns, code, 1, chunk_any, crc, key16, data)
            n += 1
            continue

        length = len(data)
        if kind == "string" or not multipage:
            # one item: a header entry and its data entries, all on one page
            if not multipage and length > BLOB_MAX_SIZE_V1:
                raise _error(
                    entry,
                    f"key {key!r}: {kind} is {length} bytes; format version 1 allows at "
                    f"most {BLOB_MAX_SIZE_V1}",
                    hint="use format version 2 (ESP-IDF v3.2 and later)",
                )
            span = (length + entry_size - 1) // entry_size + 1
            # As the reference tool: move on unless the item ends before the page's last
            # entry; but an item that needs a whole page goes onto an empty one.
            if n + span >= entries_per_page and n:
                page_base = _open_page(buf, used, openers, n, entry)
                n = 0
            code = ITEM_TYPE_SZ if kind == "string" else ITEM_TYPE_BLOB
            varlen = _varlen(length, 0xFFFF, crc32(data, 0xFFFFFFFF))
            head = heads_get((ns, code, span, chunk_any)) or _head_crc(ns, code, span, chunk_any)
            offset = page_base + n * entry_size
            pack_item(buf, offset, ns, code, span, chunk_any, crc32(key16 + varlen, head),
                      key16, varlen)
            buf[offset + entry_size: offset + entry_size + length] = data
            n += span
            continue

        # version-2 blob: BLOB_DATA chunks that fill each page, then the BLOB_IDX
        if n >= entries_per_page:
            page_base = _open_page(buf, used, openers, n, entry)
            n = 0
        start = 0
        chunk_index = 0
        view = memoryview(data)  # chunks without copies
        while True:
            if chunk_index >= BLOB_MAX_CHUNKS:
                raise _error(entry, f"key {key!r}: blob of {length} bytes needs more than "
                                    f"{BLOB_MAX_CHUNKS} chunks")
            tailroom = (_LAST_ENTRY - n) * entry_size
            chunk_size = min(tailroom, length - start)
            chunk = view[start: start + chunk_size]
            span = (chunk_size + entry_size - 1) // entry_size + 1
            varlen = _varlen(chunk_size, 0xFFFF, crc32(chunk, 0xFFFFFFFF))
            head = (heads_get((ns, ITEM_TYPE_BLOB_DATA, span, chunk_index))
                    or _head_crc(ns, ITEM_TYPE_BLOB_DATA, span, chunk_index))
            offset = page_base + n * entry_size
            pack_item(buf, offset, ns, ITEM_TYPE_BLOB_DATA, span, chunk_index,
                      crc32(key16 + varlen, head), key16, varlen)
            buf[offset + entry_size: offset + entry_size + chunk_size] = chunk
            n += span
            start += chunk_size
            chunk_index += 1
            # a new page when data is left, or no entry is left for the index
            if start < length or tailroom - chunk_size < entry_size:
                page_base = _open_page(buf, used, openers, n, entry)
                n = 0
            if start >= length:
                break
        varlen = _blob_index(length, chunk_index, 0, 0xFFFF)
        crc = crc32(key16 + varlen, _head_crc(ns, ITEM_TYPE_BLOB_IDX, 1, chunk_any))
        pack_item(buf, page_base + n * entry_size, ns, ITEM_TYPE_BLOB_IDX, 1, chunk_any,
                  crc, key16, varlen)
        n += 1

    used.append(n)
    pages = len(used)
    capacity = usable_pages(size)
    if pages > capacity:
        _raise_capacity(openers[capacity - 1], pages, capacity, size)

    # page headers (the page written last stays ACTIVE) and entry state bitmaps
    last = pages - 1
    for page, written in enumerate(used):
        base = page * PAGE_SIZE
        state = PAGE_STATE_FULL if page < last else PAGE_STATE_ACTIVE
        buf[base: base + ENTRY_TABLE_OFFSET] = _page_header(page, version_byte, state)
        buf[base + ENTRY_TABLE_OFFSET: base + ENTRY_DATA_OFFSET] = entry_bitmap(written)

    if size < MIN_READ_WRITE_SIZE:
        # Read-only NVS: nvs_partition_gen.py writes only the pages it used (and, for no
        # entries, the one page it opened), not the whole partition.
        del buf[pages * PAGE_SIZE:]
    if keys is not None:
        _encrypt_written(buf, used, keys)
    return bytes(buf)


def _encrypt_written(buf: bytearray, used: list[int], keys: "NvsKeys") -> None:
    """Encrypt, in place, the first ``used[p]`` entries of each page p, in one batch."""
    runs = [(page * PAGE_SIZE + ENTRY_DATA_OFFSET, count)
            for page, count in enumerate(used) if count]
    plain = b"".join([buf[start: start + count * ENTRY_SIZE] for start, count in runs])
    cipher = xts_encrypt_runs(keys.data_key, keys.tweak_key, plain, runs)
    position = 0
    for start, count in runs:
        length = count * ENTRY_SIZE
        buf[start: start + length] = cipher[position: position + length]
        position += length


def _raise_capacity(overflow: NvsEntry, pages: int, capacity: int, size: int) -> None:
    missing = pages - capacity
    reserved = size >= MIN_READ_WRITE_SIZE
    needed = (pages + 1 if reserved else pages) * PAGE_SIZE
    room = f"{capacity} data pages plus one reserved page" if reserved else f"{capacity} pages"
    raise CapacityError(
        f"key {overflow.key!r} in namespace {overflow.namespace!r} does not fit: the "
        f"entries need {pages} data pages and the partition has room for {room}; needs "
        f"{missing} more page{'s' if missing != 1 else ''} ({missing * PAGE_SIZE} bytes); "
        f"partition is 0x{size:x}",
        file=overflow.file, line=overflow.line, col=overflow.col,
        hint=f"make the partition at least 0x{needed:x} bytes",
    )

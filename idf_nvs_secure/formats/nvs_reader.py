"""Reading NVS partition images: decrypt, check, reassemble, and report problems.

:func:`parse_nvs_image` never raises on corrupt content.  It reads what ESP-IDF would
read and reports everything else as :class:`NvsProblem` records with page and entry
numbers: page headers with a bad CRC, unknown page states or versions, entries whose
CRC, type, span or data CRC is wrong, data in entries the bitmap calls empty, strings
without their NUL, blobs with missing chunks or a wrong size, chunks without an index,
entries of unknown namespaces, and duplicate keys.  Keys that do not decrypt the image
(every entry fails its CRC while the page headers, which are never encrypted, are fine)
set :attr:`NvsImage.wrong_key`; an encrypted image read without keys sets
:attr:`NvsImage.looks_encrypted`.

Only an image whose length is not a positive multiple of 4096 bytes is refused, with a
:class:`~idf_nvs_secure.errors.FormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from ..errors import FormatError
from .nvs_layout import (
    BLOB_MAX_SIZE,
    CHUNK_ANY,
    ENTRIES_PER_PAGE,
    ENTRY_DATA_OFFSET,
    ENTRY_SIZE,
    ENTRY_STATE_EMPTY,
    ENTRY_STATE_ERASED,
    ENTRY_STATE_ILLEGAL,
    ENTRY_STATE_WRITTEN,
    ITEM,
    ITEM_BLOB_INDEX,
    ITEM_TYPE_BLOB,
    ITEM_TYPE_BLOB_DATA,
    ITEM_TYPE_BLOB_IDX,
    ITEM_TYPE_SZ,
    ITEM_TYPE_U8,
    ITEM_VARLEN,
    NS_ANY,
    NS_INDEX,
    NVS_VERSION_1,
    NVS_VERSION_2,
    PAGE_HEADER,
    PAGE_SIZE,
    PAGE_STATE_ACTIVE,
    PAGE_STATE_CORRUPT,
    PAGE_STATE_FREEING,
    PAGE_STATE_FULL,
    PAGE_STATE_NAMES,
    PAGE_STATE_UNINITIALIZED,
    PRIMITIVE_FORMATS,
    TYPE_NAMES,
    NvsEntry,
    item_crc,
    nvs_crc32,
    page_header_crc,
)
from .xts import xts_decrypt_units

if TYPE_CHECKING:  # pragma: no cover
    from .nvs_keys import NvsKeys

__all__ = [
    "NvsItem",
    "NvsPageInfo",
    "NvsProblem",
    "NvsImage",
    "parse_nvs_image",
    "image_to_json",
]

Value = Union[int, float, str, bytes]

#: ItemTypes of the fixed-size values that live in the 8-byte data field.
_FIXED_SIZE = frozenset(code for code, name in TYPE_NAMES.items() if name in PRIMITIVE_FORMATS)
_EMPTY_ENTRY = b"\xff" * ENTRY_SIZE
_READABLE_STATES = (PAGE_STATE_ACTIVE, PAGE_STATE_FULL, PAGE_STATE_FREEING)


@dataclass(frozen=True)
class NvsItem:
    """One key/value pair found in an image.

    ``page`` and ``entry`` locate the item that defines it (for a version-2 blob, its
    BLOB_IDX): ``page`` is the physical page number (offset // 4096), ``entry`` the
    entry number 0..125 within that page.
    """

    namespace: str
    key: str
    type: str
    value: Value
    page: int
    entry: int

    def to_entry(self) -> "NvsEntry":
        """The model entry this item stores (for round trips and rebuilding)."""
        return NvsEntry(self.namespace, self.key, self.type, self.value)


@dataclass(frozen=True)
class NvsPageInfo:
    """One page: its physical ``index``, ESP-IDF state name, header sequence number and
    format version (None for an erased page or a bad header), and entry counts by
    bitmap state (``used`` = WRITTEN, ``erased`` = ERASED, ``free`` = EMPTY)."""

    index: int
    state: str
    seq: int | None
    version: int | None
    used: int
    erased: int
    free: int


@dataclass(frozen=True)
class NvsProblem:
    """Something ESP-IDF would reject, repair or ignore.

    ``code`` is a stable identifier (e.g. ``entry-crc``, ``wrong-key``); ``page`` and
    ``entry`` locate it when it belongs to one place.
    """

    code: str
    message: str
    page: int | None = None
    entry: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.page is not None:
            where = f"page {self.page}"
            if self.entry is not None:
                where += f", entry {self.entry}"
            where += ": "
        return where + self.message


@dataclass
class NvsImage:
    """What :func:`parse_nvs_image` found: entries in image order, all pages, problems."""

    entries: list[NvsItem] = field(default_factory=list)
    pages: list[NvsPageInfo] = field(default_factory=list)
    problems: list[NvsProblem] = field(default_factory=list)
    #: namespace name -> index, in index order
    namespaces: dict[str, int] = field(default_factory=dict)
    #: NVS format version of the pages (1 or 2), None if no page is initialised
    version: int | None = None
    #: whether keys were given and used to decrypt the entries
    encrypted: bool = False
    #: keys were given but nothing decrypts with them
    wrong_key: bool = False
    #: no keys were given and nothing reads as plaintext: probably encrypted
    looks_encrypted: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


@dataclass
class _Walk:
    """Raw findings of one pass over the entries of the readable pages."""

    records: list = field(default_factory=list)  # (page, entry, ns, type, key, value)
    chunks: dict = field(default_factory=dict)  # (ns, key) -> {chunkIndex: (bytes, page, entry)}
    problems: list = field(default_factory=list)
    crc_ok: int = 0
    crc_bad: int = 0


def _states(bitmap: bytes) -> list[int]:
    bits = int.from_bytes(bitmap, "little")
    return [(bits >> (2 * index)) & 3 for index in range(ENTRIES_PER_PAGE)]


def _header_problem(code: int, span: int, chunk: int, size: int, index: int) -> str | None:
    """Item::checkHeaderConsistency, for an item whose CRC is right; None when fine."""
    if code in _FIXED_SIZE:
        return None if span == 1 else f"span {span} for a fixed-size item (must be 1)"
    if code == ITEM_TYPE_BLOB_IDX:
        if span != 1:
            return f"span {span} for a blob index (must be 1)"
        if chunk != CHUNK_ANY:
            return f"chunk index {chunk} for a blob index (must be 0xff)"
        return None
    if code in (ITEM_TYPE_SZ, ITEM_TYPE_BLOB, ITEM_TYPE_BLOB_DATA):
        if code == ITEM_TYPE_BLOB_DATA and chunk == CHUNK_ANY:
            return "blob chunk without a chunk index"
        room = (ENTRIES_PER_PAGE - index - 1) * ENTRY_SIZE
        if size > room:
            return f"data size {size} runs past the end of the page ({room} bytes left)"
        expected = (size + ENTRY_SIZE - 1) // ENTRY_SIZE + 1
        if span != expected:
            return f"span {span} does not match data size {size} (expected span {expected})"
        return None
    return f"unknown item type 0x{code:02x}"


def _walk(data: bytes | bytearray, readable: list[tuple[int, list[int]]]) -> _Walk:
    out = _Walk()
    problems = out.problems
    for page, states in readable:
        base = page * PAGE_SIZE + ENTRY_DATA_OFFSET
        index = 0
        while index < ENTRIES_PER_PAGE:
            state = states[index]
            offset = base + index * ENTRY_SIZE
            if state == ENTRY_STATE_EMPTY:
                if data[offset: offset + ENTRY_SIZE] != _EMPTY_ENTRY:
                    problems.append(NvsProblem(
                        "entry-unmarked",
                        "entry holds data but the bitmap says it is empty "
                        "(a write that did not finish)", page, index))
                index += 1
                continue
            if state == ENTRY_STATE_ERASED:
                index += 1
                continue
            if state == ENTRY_STATE_ILLEGAL:
                problems.append(NvsProblem("entry-state", "illegal entry state 0b01 in the bitmap",
                                           page, index))
                index += 1
                continue
            raw = data[offset: offset + ENTRY_SIZE]
            ns, code, span, chunk, crc, key_raw, value = ITEM.unpack(raw)
            if crc != item_crc(raw):
                out.crc_bad += 1
                problems.append(NvsProblem("entry-crc", "entry CRC mismatch", page, index))
                index += 1
                continue
            out.crc_ok += 1
            key = key_raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")
            varlen = code in (ITEM_TYPE_SZ, ITEM_TYPE_BLOB, ITEM_TYPE_BLOB_DATA)
            size, _reserved, data_crc = ITEM_VARLEN.unpack(value)
            trouble = _header_problem(code, span, chunk, size, index)
            if trouble:
                problems.append(NvsProblem("entry-header", f"key {key!r}: {trouble}", page, index))
                index += 1
                continue
            if not varlen:
                out.records.append((page, index, ns, code, key, value))
                index += 1
                continue
            unmarked = [i for i in range(index + 1, index + span)
                        if states[i] != ENTRY_STATE_WRITTEN]
            if unmarked:
                problems.append(NvsProblem(
                    "entry-span",
                    f"key {key!r}: spans {span} entries but entry {unmarked[0]} is not "
                    "marked written", page, index))
                index += 1
                continue
            payload = bytes(data[offset + ENTRY_SIZE: offset + ENTRY_SIZE + size])
            index += span
            if nvs_crc32(payload) != data_crc:
                problems.append(NvsProblem("data-crc", f"key {key!r}: data CRC mismatch",
                                           page, index - span))
                continue
            if code == ITEM_TYPE_BLOB_DATA:
                chunks = out.chunks.setdefault((ns, key), {})
                if chunk in chunks:
                    problems.append(NvsProblem(
                        "blob-chunk-duplicate", f"key {key!r}: blob chunk {chunk} appears twice",
                        page, index - span))
                chunks[chunk] = (payload, page, index - span)
                continue
            out.records.append((page, index - span, ns, code, key, payload))
    return out


def _read_pages(data: bytes, image: NvsImage) -> list[tuple[int, list[int]]]:
    """Fill ``image.pages``; return the readable pages (index, entry states) in seq order."""
    readable: list[tuple[int, int, list[int]]] = []
    versions: set[int] = set()
    seqs: dict[int, int] = {}
    problems = image.problems
    for page in range(len(data) // PAGE_SIZE):
        base = page * PAGE_SIZE
        header = data[base: base + 32]
        state, seq, version_byte, _reserved, crc = PAGE_HEADER.unpack(header)
        if state == PAGE_STATE_UNINITIALIZED:
            if data[base: base + PAGE_SIZE] != b"\xff" * PAGE_SIZE:
                problems.append(NvsProblem(
                    "page-not-empty", "page header says uninitialised but the page holds data",
                    page))
            image.pages.append(NvsPageInfo(page, "UNINITIALIZED", None, None, 0, 0,
                                           ENTRIES_PER_PAGE))
            continue
        states = _states(data[base + 32: base + 64])
        used = states.count(ENTRY_STATE_WRITTEN)
        erased = states.count(ENTRY_STATE_ERASED)
        free = states.count(ENTRY_STATE_EMPTY)
        if crc != page_header_crc(header):
            problems.append(NvsProblem("page-header-crc", "page header CRC mismatch", page))
            image.pages.append(NvsPageInfo(page, "CORRUPT", None, None, used, erased, free))
            continue
        name = PAGE_STATE_NAMES.get(state, f"0x{state:08x}")
        version = {NVS_VERSION_2: 2, NVS_VERSION_1: 1}.get(version_byte)
        image.pages.append(NvsPageInfo(page, name, seq, version, used, erased, free))
        if state not in _READABLE_STATES:
            if state == PAGE_STATE_CORRUPT:
                problems.append(NvsProblem("page-state", "page is marked CORRUPT", page))
            else:
                problems.append(NvsProblem("page-state", f"unknown page state 0x{state:08x}", page))
            continue
        if version is None:
            problems.append(NvsProblem(
                "page-version", f"unknown NVS format version byte 0x{version_byte:02x}", page))
            continue
        versions.add(version)
        if seq in seqs:
            problems.append(NvsProblem(
                "page-seq", f"sequence number {seq} also used by page {seqs[seq]}", page))
        seqs.setdefault(seq, page)
        readable.append((seq, page, states))
    if len(versions) > 1:
        problems.append(NvsProblem("page-version", "pages of format versions 1 and 2 are mixed"))
    image.version = max(versions) if versions else None
    readable.sort(key=lambda item: (item[0], item[1]))
    return [(page, states) for _seq, page, states in readable]


def _decrypt(data: bytes, readable: list[tuple[int, list[int]]], keys: "NvsKeys") -> bytes:
    """A copy of ``data`` with every non-empty entry of the readable pages decrypted."""
    offsets = []
    for page, states in readable:
        base = page * PAGE_SIZE + ENTRY_DATA_OFFSET
        offsets.extend(base + i * ENTRY_SIZE for i, s in enumerate(states)
                       if s != ENTRY_STATE_EMPTY)
    if not offsets:
        return data
    cipher = b"".join(data[o: o + ENTRY_SIZE] for o in offsets)
    plain = xts_decrypt_units(keys.data_key, keys.tweak_key, cipher, offsets)
    out = bytearray(data)
    for i, o in enumerate(offsets):
        out[o: o + ENTRY_SIZE] = plain[i * ENTRY_SIZE: (i + 1) * ENTRY_SIZE]
    return bytes(out)


def _decode(code: int, value: bytes, key: str, page: int, entry: int,
            problems: list[NvsProblem]) -> Value:
    if code == ITEM_TYPE_SZ:
        if not value.endswith(b"\x00"):
            problems.append(NvsProblem("string-unterminated",
                                       f"key {key!r}: string has no terminating NUL", page, entry))
        text = value.split(b"\x00", 1)[0]
        return text.decode("utf-8", "backslashreplace")
    if code == ITEM_TYPE_BLOB:
        return value
    name = TYPE_NAMES[code]
    return PRIMITIVE_FORMATS[name].unpack_from(value)[0]


def parse_nvs_image(data: bytes, *, keys: "NvsKeys | None" = None) -> NvsImage:
    """Read an NVS partition image (decrypting its entries with ``keys`` when given).

    Never raises for corrupt content: see the module docstring.  Raises FormatError only
    when ``len(data)`` is not a positive multiple of 4096.
    """
    if not data or len(data) % PAGE_SIZE:
        raise FormatError(
            f"an NVS image is a whole number of {PAGE_SIZE}-byte pages; this one is "
            f"{len(data)} bytes"
        )
    data = bytes(data)
    image = NvsImage(encrypted=keys is not None)
    readable = _read_pages(data, image)
    walk = _walk(_decrypt(data, readable, keys) if keys is not None else data, readable)
    if walk.crc_bad and not walk.crc_ok:
        if keys is not None:
            plain = _walk(data, readable)
            if plain.crc_ok:
                image.encrypted = False
                image.problems.append(NvsProblem(
                    "not-encrypted",
                    "the image is not encrypted: its entries read as plaintext; keys ignored"))
                walk = plain
            else:
                image.wrong_key = True
        else:
            image.looks_encrypted = True
        if image.wrong_key or image.looks_encrypted:
            other = [p for p in walk.problems if p.code != "entry-crc"]
            summary = (
                f"none of the {walk.crc_bad} written entries decrypts with these keys "
                "(page headers are fine): the keys look wrong"
                if image.wrong_key else
                f"none of the {walk.crc_bad} written entries has a valid CRC while the page "
                "headers are fine: the image looks encrypted (give its nvs_keys)"
            )
            image.problems.append(NvsProblem("wrong-key" if image.wrong_key
                                             else "looks-encrypted", summary))
            image.problems.extend(other)
            return image
    image.problems.extend(walk.problems)
    _assemble(walk, image)
    return image


def _assemble(walk: _Walk, image: NvsImage) -> None:
    problems = image.problems
    names: dict[int, str] = {}
    items: list[tuple[int, int, int, str, str, Value]] = []  # page, entry, ns, type, key, value
    used_chunks: set[tuple[int, str, int]] = set()
    for page, entry, ns, code, key, value in walk.records:
        if ns == NS_INDEX:
            if code != ITEM_TYPE_U8:
                problems.append(NvsProblem(
                    "namespace-entry", f"entry {key!r} in namespace index 0 is not a "
                    "namespace (type must be u8)", page, entry))
                continue
            index = value[0]
            if index in (NS_INDEX, NS_ANY):
                problems.append(NvsProblem(
                    "namespace-entry", f"namespace {key!r} has reserved index {index}",
                    page, entry))
            elif index in names or key in image.namespaces:
                problems.append(NvsProblem(
                    "namespace-duplicate", f"namespace {key!r} (index {index}) is defined twice",
                    page, entry))
            else:
                names[index] = key
                image.namespaces[key] = index
            continue
        if code == ITEM_TYPE_BLOB_IDX:
            size, count, start, _reserved = ITEM_BLOB_INDEX.unpack(value)
            chunks = walk.chunks.get((ns, key), {})
            parts = []
            missing = None
            for number in range(start, start + count):
                part = chunks.get(number & 0xFF)
                if part is None:
                    missing = number
                    break
                parts.append(part[0])
                used_chunks.add((ns, key, number & 0xFF))
            if missing is not None:
                problems.append(NvsProblem(
                    "blob-chunk-missing",
                    f"key {key!r}: blob chunk {missing} of {count} (from {start}) is missing",
                    page, entry))
                continue
            blob = b"".join(parts)
            if len(blob) != size or size > BLOB_MAX_SIZE:
                problems.append(NvsProblem(
                    "blob-size", f"key {key!r}: blob index says {size} bytes but its chunks "
                    f"hold {len(blob)}", page, entry))
                continue
            items.append((page, entry, ns, "blob", key, blob))
            continue
        decoded = _decode(code, value, key, page, entry, problems)
        items.append((page, entry, ns, TYPE_NAMES[code], key, decoded))
    for (ns, key), chunks in walk.chunks.items():
        for number, (_payload, page, entry) in sorted(chunks.items()):
            if (ns, key, number) not in used_chunks:
                problems.append(NvsProblem(
                    "blob-orphan-chunk", f"key {key!r}: blob chunk {number} belongs to no "
                    "blob index", page, entry))
    seen: dict[tuple[str, str], NvsItem] = {}
    for page, entry, ns, kind, key, value in items:
        namespace = names.get(ns)
        if namespace is None:
            problems.append(NvsProblem(
                "unknown-namespace", f"key {key!r} is in namespace index {ns}, which has no "
                "namespace entry", page, entry))
            continue
        item = NvsItem(namespace, key, kind, value, page, entry)
        earlier = seen.get((namespace, key))
        if earlier is not None:
            problems.append(NvsProblem(
                "duplicate-key", f"key {key!r} in namespace {namespace!r} also at page "
                f"{earlier.page}, entry {earlier.entry}", page, entry))
        seen[(namespace, key)] = item
        image.entries.append(item)


def image_to_json(image: NvsImage) -> dict:
    """``{namespace: {key: {"type": ..., "value": ...}}}`` for every namespace and entry.

    Integers and floats are JSON numbers, strings text, blobs lowercase hex.  A key that
    appears twice keeps its later value.
    """
    out: dict[str, dict] = {name: {} for name in image.namespaces}
    for item in image.entries:
        value = item.value.hex() if isinstance(item.value, bytes) else item.value
        out.setdefault(item.namespace, {})[item.key] = {"type": item.type, "value": value}
    return out


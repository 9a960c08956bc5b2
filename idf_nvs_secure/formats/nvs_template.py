"""NVS image templates: lay an image out once, then refill it with new values quickly.

A manufacturing batch builds thousands of images that differ only in a few values
(a serial number, a certificate, a password), each encrypted with the device's keys.
Where every entry sits in an NVS image depends only on the entries' order, types and
the lengths of their strings and blobs, never on the values themselves.  So
:func:`make_nvs_template` builds one plaintext image with :func:`~.nvs_image.build_nvs_image`
and records where each *variable* entry's items are; :func:`fill_nvs_template` copies
it, writes the new values and their CRCs into those items and encrypts the written
entries (:mod:`.xts`), which costs a few microseconds instead of a whole layout.

The result is byte-for-byte what :func:`~.nvs_image.build_nvs_image` gives for the same
entries (tests check it); a value whose encoded length differs from the template's is
refused, since it would need another layout.  Item layouts come from :mod:`.nvs_layout`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .nvs_image import NvsEntry, build_nvs_image
from .nvs_layout import (
    ENTRY_DATA_OFFSET,
    ENTRY_SIZE,
    ITEM,
    ITEM_TYPE_BLOB,
    ITEM_TYPE_BLOB_DATA,
    ITEM_TYPE_SZ,
    ITEM_VARLEN,
    NS_INDEX,
    NVS_TYPES,
    PAGE_SIZE,
    PRIMITIVE_FORMATS,
)
from .nvs_reader import parse_nvs_image
from .xts import xts_encrypt_units

if TYPE_CHECKING:  # pragma: no cover
    from .nvs_keys import NvsKeys

__all__ = ["NvsTemplate", "make_nvs_template", "fill_nvs_template", "encoded_length"]

_crc32 = zlib.crc32
_pack_crc = struct.Struct("<I").pack_into
_pack_varlen = ITEM_VARLEN.pack
_DATA = 24  # offset of an item's 8-byte data field
_HEAD = 8   # bytes 0..3 are covered by the CRC, 4..7 are the CRC itself


@dataclass(frozen=True)
class _Slot:
    """Where one variable entry lives: ``items`` are ``(item offset, CRC state after the
    item's bytes 0..3 and 8..23, data length)`` per item, BLOB_DATA chunks in order."""

    type: str
    length: int
    items: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class NvsTemplate:
    """A laid-out plaintext image and the places its variable entries are written.

    ``offsets``: the byte offset of every written entry (the XTS data units), and
    ``spans`` the same as ``(start, end)`` ranges of consecutive entries."""

    size: int
    plain: bytes
    slots: tuple[_Slot, ...]
    offsets: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def encoded_length(entry_type: str, value: Any) -> int:
    """Bytes the value occupies in the image: 8 for fixed-size types, the UTF-8 string
    with its NUL, the blob's length."""
    if entry_type == "string":
        return len(value.encode("utf-8")) + 1
    if entry_type == "blob":
        return len(value)
    return 8


def _state(buf: bytes, offset: int) -> int:
    """CRC state after an item's bytes 0..3 and 8..23 (all but its data field)."""
    return _crc32(buf[offset + _HEAD: offset + _DATA], _crc32(buf[offset: offset + 4],
                                                              0xFFFFFFFF))


def make_nvs_template(entries: Sequence[NvsEntry], size: int, *, version: int = 2,
                      variable: Sequence[int] = ()) -> NvsTemplate:
    """Lay out ``entries`` (as :func:`~.nvs_image.build_nvs_image` would, raising what it
    raises) and note where the entries at positions ``variable`` are written."""
    plain = build_nvs_image(entries, size, version=version)
    image = parse_nvs_image(plain)
    offsets: list[int] = []
    namespaces: dict[str, int] = {}
    items: dict[tuple[int, bytes], list[tuple[int, int, int, int]]] = {}
    for page in image.pages:
        base = page.index * PAGE_SIZE + ENTRY_DATA_OFFSET
        offsets.extend(range(base, base + page.used * ENTRY_SIZE, ENTRY_SIZE))
        entry = 0
        while entry < page.used:
            offset = base + entry * ENTRY_SIZE
            ns, code, span, chunk, _crc, key, data = ITEM.unpack_from(plain, offset)
            if ns == NS_INDEX:
                namespaces[key.rstrip(b"\x00").decode("utf-8")] = data[0]
            else:
                items.setdefault((ns, key), []).append((offset, code, chunk,
                                                        ITEM_VARLEN.unpack(data)[0]))
            entry += max(span, 1)
    slots = []
    for position in variable:
        e = entries[position]
        key16 = e.key.encode("utf-8").ljust(16, b"\x00")
        found = items[(namespaces[e.namespace], key16)]
        length = encoded_length(e.type, e.value)
        if e.type in PRIMITIVE_FORMATS:
            chosen = [(o, _state(plain, o), 8) for o, code, _, _ in found
                      if code == NVS_TYPES[e.type]]
        else:
            codes = (ITEM_TYPE_SZ,) if e.type == "string" else (ITEM_TYPE_BLOB,
                                                                 ITEM_TYPE_BLOB_DATA)
            chunks = sorted((chunk, o, n) for o, code, chunk, n in found if code in codes)
            chosen = [(o, _state(plain, o), n) for _, o, n in chunks]
        if sum(n for _, _, n in chosen) != (8 if e.type in PRIMITIVE_FORMATS else length):
            raise AssertionError(f"template: items of {e.namespace}.{e.key} not found")
        slots.append(_Slot(e.type, length, tuple(chosen)))
    spans: list[tuple[int, int]] = []
    for offset in offsets:
        if spans and spans[-1][1] == offset:
            spans[-1] = (spans[-1][0], offset + ENTRY_SIZE)
        else:
            spans.append((offset, offset + ENTRY_SIZE))
    return NvsTemplate(size, plain, tuple(slots), tuple(offsets), tuple(spans))


def fill_nvs_template(template: NvsTemplate, values: Sequence[Any], *,
                      keys: "NvsKeys | None" = None) -> bytes:
    """The image of the template's entries with the variable ones set to ``values`` (in
    the order of ``variable``), encrypted with ``keys`` when given.

    Values must be valid for their types (see :func:`~.nvs_image.validate_entry`) and
    strings and blobs as long as the template's; raises ValueError otherwise."""
    buf = bytearray(template.plain)
    for slot, value in zip(template.slots, values):
        kind = slot.type
        fmt = PRIMITIVE_FORMATS.get(kind)
        if fmt is not None:
            try:
                data = fmt.pack(value) + b"\xff" * (8 - fmt.size)
            except struct.error as exc:
                raise ValueError(f"{kind} value {value!r}: {exc}") from None
            offset, state, _ = slot.items[0]
            buf[offset + _DATA: offset + ENTRY_SIZE] = data
            _pack_crc(buf, offset + 4, _crc32(data, state))
            continue
        data = value.encode("utf-8") + b"\x00" if kind == "string" else bytes(value)
        if len(data) != slot.length:
            raise ValueError(f"{kind} of {len(data)} bytes where the template has "
                             f"{slot.length}: it needs its own layout")
        start = 0
        for offset, state, length in slot.items:
            chunk = data[start: start + length]
            varlen = _pack_varlen(length, 0xFFFF, _crc32(chunk, 0xFFFFFFFF))
            buf[offset + _DATA: offset + ENTRY_SIZE] = varlen
            _pack_crc(buf, offset + 4, _crc32(varlen, state))
            buf[offset + ENTRY_SIZE: offset + ENTRY_SIZE + length] = chunk
            start += length
    if keys is not None and template.offsets:
        spans = template.spans
        plain = b"".join([buf[a:b] for a, b in spans])
        cipher = xts_encrypt_units(keys.data_key, keys.tweak_key, plain, template.offsets)
        position = 0
        for a, b in spans:
            buf[a:b] = cipher[position: position + b - a]
            position += b - a
    return bytes(buf)

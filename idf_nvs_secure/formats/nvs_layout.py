"""The on-flash layout of an NVS partition: constants and the two binary structs.

Declared once here and used by both the writer (:mod:`.nvs_image`) and the reader
(:mod:`.nvs_reader`).  Names follow ESP-IDF (components/nvs_flash): ``nvs_constants.h``,
``nvs_page.hpp`` (``Page::Header``, ``PageState``, ``EntryState``), ``nvs_types.hpp``
(``Item``, ``VerOffset``), ``include/nvs.h`` (``nvs_type_t``) and
``include/nvs_handle.hpp`` (``ItemType``).

A partition is a sequence of 4096-byte pages.  Each page is::

    offset  size        what
    0       32          Page::Header (PAGE_HEADER)
    32      32          entry state bitmap: 2 bits per entry, entry i in bits 2i..2i+1
    64      126 x 32    entries (ITEM), entry i at 64 + 32 * i

All multi-byte fields are little-endian.  CRCs are ``esp_rom_crc32_le(0xFFFFFFFF, ...)``,
which is ``zlib.crc32(data, 0xFFFFFFFF)``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

__all__ = [
    "NvsEntry",
    "PAGE_SIZE",
    "ENTRY_SIZE",
    "ENTRIES_PER_PAGE",
    "ENTRY_TABLE_OFFSET",
    "ENTRY_DATA_OFFSET",
    "MAX_KEY_LEN",
    "CHUNK_MAX_SIZE",
    "STR_LEN_MAX_SIZE",
    "BLOB_MAX_SIZE_V1",
    "BLOB_MAX_CHUNKS",
    "BLOB_MAX_SIZE",
    "MAX_NAMESPACES",
    "CHUNK_ANY",
    "NS_INDEX",
    "NS_ANY",
    "NVS_VERSION_1",
    "NVS_VERSION_2",
    "PAGE_STATE_UNINITIALIZED",
    "PAGE_STATE_ACTIVE",
    "PAGE_STATE_FULL",
    "PAGE_STATE_FREEING",
    "PAGE_STATE_CORRUPT",
    "PAGE_STATE_INVALID",
    "PAGE_STATE_NAMES",
    "ENTRY_STATE_EMPTY",
    "ENTRY_STATE_WRITTEN",
    "ENTRY_STATE_ERASED",
    "ENTRY_STATE_ILLEGAL",
    "ITEM_TYPE_U8",
    "ITEM_TYPE_I8",
    "ITEM_TYPE_U16",
    "ITEM_TYPE_I16",
    "ITEM_TYPE_U32",
    "ITEM_TYPE_I32",
    "ITEM_TYPE_U64",
    "ITEM_TYPE_I64",
    "ITEM_TYPE_FLOAT",
    "ITEM_TYPE_DOUBLE",
    "ITEM_TYPE_SZ",
    "ITEM_TYPE_BLOB",
    "ITEM_TYPE_BLOB_DATA",
    "ITEM_TYPE_BLOB_IDX",
    "NVS_TYPES",
    "PRIMITIVE_FORMATS",
    "INT_RANGES",
    "TYPE_NAMES",
    "PAGE_HEADER",
    "ITEM",
    "ITEM_VARLEN",
    "ITEM_BLOB_INDEX",
    "nvs_crc32",
    "page_header_crc",
    "item_crc",
    "entry_bitmap",
]

# --- sizes (nvs_constants.h) ----------------------------------------------------------
#: NVS_CONST_PAGE_SIZE: one flash sector, in bytes.
PAGE_SIZE = 4096
#: NVS_CONST_ENTRY_SIZE: sizeof(Item), in bytes; also the XTS data unit.
ENTRY_SIZE = 32
#: NVS_CONST_ENTRY_COUNT: entries per page.
ENTRIES_PER_PAGE = 126
#: NVS_CONST_PAGE_ENTRY_TABLE_OFFSET: the entry state bitmap, bytes from the page start.
ENTRY_TABLE_OFFSET = 32
#: NVS_CONST_PAGE_ENTRY_DATA_OFFSET: entry 0, bytes from the page start.
ENTRY_DATA_OFFSET = 64
#: Item::MAX_KEY_LENGTH: key and namespace names, in bytes, without the NUL.
MAX_KEY_LEN = 15
#: NVS_CONST_CHUNK_MAX_SIZE: the most data one variable-length item holds (125 entries).
CHUNK_MAX_SIZE = ENTRY_SIZE * (ENTRIES_PER_PAGE - 1)
#: NVS_CONST_STR_LEN_MAX_SIZE: longest string, in bytes including its NUL.
STR_LEN_MAX_SIZE = CHUNK_MAX_SIZE
#: Page::BLOB_MAX_SIZE of format version 1 (ENTRY_SIZE * (ENTRY_COUNT / 2 - 1)); the
#: reference generator applies it to version-1 strings as well.
BLOB_MAX_SIZE_V1 = ENTRY_SIZE * (ENTRIES_PER_PAGE // 2 - 1)
#: Chunks of one version-2 blob: chunk indices of VerOffset::VER_0_OFFSET run 0..127.
BLOB_MAX_CHUNKS = 128
#: Item::checkHeaderConsistency: (UINT8_MAX / 2) * (ENTRY_COUNT - 1) * ENTRY_SIZE bytes.
BLOB_MAX_SIZE = (0xFF // 2) * CHUNK_MAX_SIZE
#: Namespace indices run 1..254 (0 is NS_INDEX, 255 is NS_ANY).
MAX_NAMESPACES = 254

# --- special values (nvs_types.hpp, nvs_page.hpp) -------------------------------------
#: Item::CHUNK_ANY: chunkIndex of every item that is not a BLOB_DATA chunk.
CHUNK_ANY = 0xFF
#: Page::NS_INDEX: namespace index of the namespace entries themselves.
NS_INDEX = 0
#: Page::NS_ANY.
NS_ANY = 0xFF
#: Page::Header::mVersion of format version 1 (single-page blobs).
NVS_VERSION_1 = 0xFF
#: NVS_CONST_NVS_VERSION: format version 2 (multi-page blobs).
NVS_VERSION_2 = 0xFE

# --- page and entry states (nvs_constants.h, Page::PageState / EntryState) ------------
PAGE_STATE_UNINITIALIZED = 0xFFFFFFFF
PAGE_STATE_ACTIVE = 0xFFFFFFFE
PAGE_STATE_FULL = 0xFFFFFFFC
PAGE_STATE_FREEING = 0xFFFFFFF8
PAGE_STATE_CORRUPT = 0xFFFFFFF0
PAGE_STATE_INVALID = 0
#: Page::pageStateToName.
PAGE_STATE_NAMES = {
    PAGE_STATE_UNINITIALIZED: "UNINITIALIZED",
    PAGE_STATE_ACTIVE: "ACTIVE",
    PAGE_STATE_FULL: "FULL",
    PAGE_STATE_FREEING: "FREEING",
    PAGE_STATE_CORRUPT: "CORRUPT",
    PAGE_STATE_INVALID: "INVALID",
}

ENTRY_STATE_EMPTY = 0b11
ENTRY_STATE_WRITTEN = 0b10
ENTRY_STATE_ERASED = 0b00
ENTRY_STATE_ILLEGAL = 0b01

# --- item types (nvs.h nvs_type_t, nvs_handle.hpp ItemType) ---------------------------
ITEM_TYPE_U8 = 0x01
ITEM_TYPE_I8 = 0x11
ITEM_TYPE_U16 = 0x02
ITEM_TYPE_I16 = 0x12
ITEM_TYPE_U32 = 0x04
ITEM_TYPE_I32 = 0x14
ITEM_TYPE_U64 = 0x08
ITEM_TYPE_I64 = 0x18
ITEM_TYPE_FLOAT = 0x24
ITEM_TYPE_DOUBLE = 0x28
ITEM_TYPE_SZ = 0x21
#: ItemType::BLOB: a single-page blob, format version 1.
ITEM_TYPE_BLOB = 0x41
#: ItemType::BLOB_DATA (NVS_TYPE_BLOB): one chunk of a version-2 blob.
ITEM_TYPE_BLOB_DATA = 0x42
#: ItemType::BLOB_IDX: the index item of a version-2 blob.
ITEM_TYPE_BLOB_IDX = 0x48

#: Value type names of the model -> ItemType.  ``blob`` is written as BLOB_DATA chunks
#: plus a BLOB_IDX in format version 2 and as one BLOB (0x41) item in version 1.
NVS_TYPES: dict[str, int] = {
    "u8": ITEM_TYPE_U8,
    "i8": ITEM_TYPE_I8,
    "u16": ITEM_TYPE_U16,
    "i16": ITEM_TYPE_I16,
    "u32": ITEM_TYPE_U32,
    "i32": ITEM_TYPE_I32,
    "u64": ITEM_TYPE_U64,
    "i64": ITEM_TYPE_I64,
    "float": ITEM_TYPE_FLOAT,
    "double": ITEM_TYPE_DOUBLE,
    "string": ITEM_TYPE_SZ,
    "blob": ITEM_TYPE_BLOB_DATA,
}

#: struct formats of the fixed-size types inside the 8-byte data field; the bytes after
#: the value stay 0xFF (Item's constructor fills ``data`` with 0xFF before the memcpy).
PRIMITIVE_FORMATS: dict[str, struct.Struct] = {
    "u8": struct.Struct("<B"),
    "i8": struct.Struct("<b"),
    "u16": struct.Struct("<H"),
    "i16": struct.Struct("<h"),
    "u32": struct.Struct("<I"),
    "i32": struct.Struct("<i"),
    "u64": struct.Struct("<Q"),
    "i64": struct.Struct("<q"),
    "float": struct.Struct("<f"),  # IEEE 754 binary32 (nvs_set_float)
    "double": struct.Struct("<d"),  # IEEE 754 binary64 (nvs_set_double)
}

#: Inclusive value range of each integer type.
INT_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 0xFF),
    "i8": (-0x80, 0x7F),
    "u16": (0, 0xFFFF),
    "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "i32": (-0x80000000, 0x7FFFFFFF),
    "u64": (0, 0xFFFFFFFFFFFFFFFF),
    "i64": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
}

#: ItemType -> model type name, for the reader (BLOB, BLOB_DATA and BLOB_IDX all
#: become "blob" once assembled).
TYPE_NAMES: dict[int, str] = {code: name for name, code in NVS_TYPES.items()}
TYPE_NAMES[ITEM_TYPE_BLOB] = "blob"

# --- binary layouts ---------------------------------------------------------------------
#: Page::Header (nvs_page.hpp), 32 bytes:
#:   uint32_t  mState        PageState; not covered by the CRC
#:   uint32_t  mSeqNumber    sequence number of the page
#:   uint8_t   mVersion      NVS_VERSION_2 (0xFE) or NVS_VERSION_1 (0xFF)
#:   uint8_t   mReserved[19] 0xFF
#:   uint32_t  mCrc32        CRC of bytes 4..27 (mSeqNumber..mReserved)
PAGE_HEADER = struct.Struct("<IIB19sI")

#: Item (nvs_types.hpp), 32 bytes:
#:   uint8_t   nsIndex       namespace index; 0 for the namespace entries themselves
#:   uint8_t   datatype      ItemType
#:   uint8_t   span          entries used by the item, this one included
#:   uint8_t   chunkIndex    BLOB_DATA chunk number, else CHUNK_ANY
#:   uint32_t  crc32         CRC of bytes 0..3 and 8..31 (Item::calculateCrc32)
#:   char      key[16]       NUL-padded key
#:   uint8_t   data[8]       the value, or ITEM_VARLEN / ITEM_BLOB_INDEX
ITEM = struct.Struct("<BBBBI16s8s")

#: Item::varLength, the data field of SZ, BLOB and BLOB_DATA items:
#:   uint16_t  dataSize      bytes of data in the following span - 1 entries
#:   uint16_t  reserved      0xFFFF
#:   uint32_t  dataCrc32     CRC of those dataSize bytes
ITEM_VARLEN = struct.Struct("<HHI")

#: Item::blobIndex, the data field of a BLOB_IDX item:
#:   uint32_t  dataSize      total bytes of the blob
#:   uint8_t   chunkCount    number of BLOB_DATA chunks
#:   uint8_t   chunkStart    VerOffset: chunk indices start here (0x00 or 0x80)
#:   uint16_t  reserved      0xFFFF
ITEM_BLOB_INDEX = struct.Struct("<IBBH")

_crc32 = zlib.crc32


def nvs_crc32(data: bytes) -> int:
    """``esp_rom_crc32_le(0xFFFFFFFF, data, len)`` as NVS computes every CRC."""
    return _crc32(data, 0xFFFFFFFF)


def page_header_crc(header: bytes) -> int:
    """Page::Header::calculateCrc32: CRC of bytes 4..27 of a 32-byte page header."""
    return _crc32(header[4:28], 0xFFFFFFFF)


def item_crc(item: bytes) -> int:
    """Item::calculateCrc32: CRC of bytes 0..3 and 8..31 of a 32-byte entry."""
    return _crc32(item[8:32], _crc32(item[0:4], 0xFFFFFFFF))


def _bitmap(written: int) -> bytes:
    value = (1 << 256) - 1  # all EMPTY (0b11)
    for index in range(written):
        value &= ~(1 << (2 * index))  # EMPTY 0b11 -> WRITTEN 0b10
    return value.to_bytes(32, "little")


_BITMAPS = tuple(_bitmap(n) for n in range(ENTRIES_PER_PAGE + 1))


def entry_bitmap(written: int) -> bytes:
    """The 32-byte state bitmap of a page whose first ``written`` entries are WRITTEN."""
    return _BITMAPS[written]


@dataclass(frozen=True, init=False)
class NvsEntry:
    """One key/value pair to store, in image order.

    ``type`` is a key of :data:`NVS_TYPES`; ``value`` is an ``int`` for u8..i64, a
    ``float`` (or ``int``) for float/double, a ``str`` for string (without the NUL the
    image adds) and ``bytes`` for blob.  ``file``/``line``/``col`` say where the entry
    was written in the user's input, for error messages; they take no part in equality.
    Construction does not validate: :func:`validate_entry` and the builder do.
    """

    namespace: str
    key: str
    type: str
    value: int | float | str | bytes
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)
    col: int | None = field(default=None, compare=False)

    def __init__(self, namespace: str, key: str, type: str,  # noqa: A002 - the field's name
                 value: int | float | str | bytes, file: str | None = None,
                 line: int | None = None, col: int | None = None) -> None:
        # The generated frozen __init__ calls object.__setattr__ once per field; writing
        # the instance dict directly is 2.5x faster, which matters for batch builds.
        fields = self.__dict__
        fields["namespace"] = namespace
        fields["key"] = key
        fields["type"] = type
        fields["value"] = value
        fields["file"] = file
        fields["line"] = line
        fields["col"] = col

"""The ESP-IDF partition table: model, binary format and validation.

Byte-exact with ``components/partition_table/gen_esp32part.py``.  The table sits in one
4096-byte flash sector at the table offset (``CONFIG_PARTITION_TABLE_OFFSET``, default
0x8000); its first 0xC00 bytes (``ESP_PARTITION_TABLE_MAX_LEN``) hold::

    offset     size  content
    0          32    entry 0 (esp_partition_info_t, see _ENTRY below)
    32 * i     32    entry i, in table order (not sorted)
    32 * n     32    MD5 entry: magic 0xEBEB, 14 x 0xFF, MD5 of the n entries (optional)
    ...        ...   0xFF up to 0xC00 (the first all-0xFF record ends the table)

The rest of the sector (0xC00-0xFFF) is left for a signature and is not part of the
blob that :func:`build_partition_table` writes.

Constants and names follow ESP-IDF: ``esp_flash_partitions.h`` (bootloader_support),
``esp_partition.h`` (``esp_partition_type_t`` / ``esp_partition_subtype_t``) and
gen_esp32part.py.  Everything here is pure: bytes in, models out, no files.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from ..errors import CapacityError, FormatError, InputError

__all__ = [
    "APP_TYPE", "DATA_TYPE", "BOOTLOADER_TYPE", "PARTITION_TABLE_TYPE", "TYPES", "SUBTYPES",
    "FACTORY_SUBTYPE", "TEST_SUBTYPE", "MIN_PARTITION_SUBTYPE_APP_OTA",
    "NUM_PARTITION_SUBTYPE_APP_OTA", "MIN_PARTITION_SUBTYPE_APP_TEE",
    "NUM_PARTITION_SUBTYPE_APP_TEE", "OTA_DATA_SUBTYPE", "PHY_SUBTYPE", "NVS_SUBTYPE",
    "COREDUMP_SUBTYPE", "NVS_KEYS_SUBTYPE", "EFUSE_SUBTYPE", "UNDEFINED_SUBTYPE",
    "ESPHTTPD_SUBTYPE", "FAT_SUBTYPE", "SPIFFS_SUBTYPE", "LITTLEFS_SUBTYPE",
    "TEE_OTA_SUBTYPE", "PRIMARY_SUBTYPE", "OTA_SUBTYPE", "RECOVERY_SUBTYPE",
    "ESP_PARTITION_MAGIC", "ESP_PARTITION_MAGIC_MD5", "PART_FLAG_ENCRYPTED",
    "PART_FLAG_READONLY", "FLAGS", "MAX_NAME_LEN", "ENTRY_SIZE", "TABLE_SIZE",
    "PARTITION_TABLE_SIZE", "DEFAULT_TABLE_OFFSET", "NVS_RW_MIN_PARTITION_SIZE",
    "OTA_DATA_PARTITION_SIZE", "ALIGNMENT", "APP_SIZE_ALIGNMENT", "MAX_TYPE",
    "Partition", "PartitionTable", "alignment_for_type", "has_fixed_location",
    "build_partition_table", "parse_partition_table", "validate_partition_table",
    "parse_flash_size", "format_size", "Problem", "find_problem",
    "SECURE_BOOT_V1", "SECURE_BOOT_V2", "SECURE_BOOT_VERSIONS", "app_size_alignment",
    "secure_boot_check", "NameWarning", "find_name_warnings", "has_md5_entry",
]

# --- types and subtypes (esp_partition.h, esp_flash_partitions.h) -------------------

APP_TYPE = 0x00  # ESP_PARTITION_TYPE_APP / PART_TYPE_APP
DATA_TYPE = 0x01  # ESP_PARTITION_TYPE_DATA / PART_TYPE_DATA
BOOTLOADER_TYPE = 0x02  # ESP_PARTITION_TYPE_BOOTLOADER / PART_TYPE_BOOTLOADER
PARTITION_TABLE_TYPE = 0x03  # ESP_PARTITION_TYPE_PARTITION_TABLE / PART_TYPE_PARTITION_TABLE
#: Largest usable type or subtype; 0xFF is PART_TYPE_END / ESP_PARTITION_TYPE_ANY.
MAX_TYPE = 0xFE

#: Type names as gen_esp32part.py spells them in CSV (case-insensitive on input).
TYPES: dict[str, int] = {
    "app": APP_TYPE,
    "data": DATA_TYPE,
    "bootloader": BOOTLOADER_TYPE,
    "partition_table": PARTITION_TABLE_TYPE,
}

FACTORY_SUBTYPE = 0x00  # ESP_PARTITION_SUBTYPE_APP_FACTORY
TEST_SUBTYPE = 0x20  # ESP_PARTITION_SUBTYPE_APP_TEST
MIN_PARTITION_SUBTYPE_APP_OTA = 0x10  # ESP_PARTITION_SUBTYPE_APP_OTA_MIN (ota_0)
NUM_PARTITION_SUBTYPE_APP_OTA = 16  # ota_0 .. ota_15
MIN_PARTITION_SUBTYPE_APP_TEE = 0x30  # ESP_PARTITION_SUBTYPE_APP_TEE_MIN (tee_0)
NUM_PARTITION_SUBTYPE_APP_TEE = 2  # tee_0, tee_1

OTA_DATA_SUBTYPE = 0x00  # ESP_PARTITION_SUBTYPE_DATA_OTA ("otadata")
PHY_SUBTYPE = 0x01  # ESP_PARTITION_SUBTYPE_DATA_PHY
NVS_SUBTYPE = 0x02  # ESP_PARTITION_SUBTYPE_DATA_NVS
COREDUMP_SUBTYPE = 0x03  # ESP_PARTITION_SUBTYPE_DATA_COREDUMP
NVS_KEYS_SUBTYPE = 0x04  # ESP_PARTITION_SUBTYPE_DATA_NVS_KEYS
EFUSE_SUBTYPE = 0x05  # ESP_PARTITION_SUBTYPE_DATA_EFUSE_EM
UNDEFINED_SUBTYPE = 0x06  # ESP_PARTITION_SUBTYPE_DATA_UNDEFINED (also the CSV default)
ESPHTTPD_SUBTYPE = 0x80  # ESP_PARTITION_SUBTYPE_DATA_ESPHTTPD
FAT_SUBTYPE = 0x81  # ESP_PARTITION_SUBTYPE_DATA_FAT
SPIFFS_SUBTYPE = 0x82  # ESP_PARTITION_SUBTYPE_DATA_SPIFFS
LITTLEFS_SUBTYPE = 0x83  # ESP_PARTITION_SUBTYPE_DATA_LITTLEFS
TEE_OTA_SUBTYPE = 0x90  # ESP_PARTITION_SUBTYPE_DATA_TEE_OTA

# bootloader (PART_SUBTYPE_BOOTLOADER_*) and partition_table (PART_SUBTYPE_PARTITION_TABLE_*)
PRIMARY_SUBTYPE = 0x00
OTA_SUBTYPE = 0x01
RECOVERY_SUBTYPE = 0x02  # bootloader only

#: Subtype names per type, every one gen_esp32part.py knows (lower case; names are
#: matched case-insensitively on input).  Values are unique within each type.
SUBTYPES: dict[int, dict[str, int]] = {
    BOOTLOADER_TYPE: {"primary": PRIMARY_SUBTYPE, "ota": OTA_SUBTYPE, "recovery": RECOVERY_SUBTYPE},
    PARTITION_TABLE_TYPE: {"primary": PRIMARY_SUBTYPE, "ota": OTA_SUBTYPE},
    APP_TYPE: {
        "factory": FACTORY_SUBTYPE,
        "test": TEST_SUBTYPE,
        **{f"ota_{i}": MIN_PARTITION_SUBTYPE_APP_OTA + i for i in range(NUM_PARTITION_SUBTYPE_APP_OTA)},
        **{f"tee_{i}": MIN_PARTITION_SUBTYPE_APP_TEE + i for i in range(NUM_PARTITION_SUBTYPE_APP_TEE)},
    },
    DATA_TYPE: {
        "ota": OTA_DATA_SUBTYPE,
        "phy": PHY_SUBTYPE,
        "nvs": NVS_SUBTYPE,
        "coredump": COREDUMP_SUBTYPE,
        "nvs_keys": NVS_KEYS_SUBTYPE,
        "efuse": EFUSE_SUBTYPE,
        "undefined": UNDEFINED_SUBTYPE,
        "esphttpd": ESPHTTPD_SUBTYPE,
        "fat": FAT_SUBTYPE,
        "spiffs": SPIFFS_SUBTYPE,
        "littlefs": LITTLEFS_SUBTYPE,
        "tee_ota": TEE_OTA_SUBTYPE,
    },
}

# --- binary layout (esp_flash_partitions.h) -----------------------------------------

ESP_PARTITION_MAGIC = 0x50AA  # stored little-endian: bytes AA 50
ESP_PARTITION_MAGIC_MD5 = 0xEBEB
PART_FLAG_ENCRYPTED = 1 << 0
PART_FLAG_READONLY = 1 << 1
#: Flag names (CSV spelling, ``Partition`` attribute) and their bits, in CSV order.
FLAGS: dict[str, int] = {"encrypted": PART_FLAG_ENCRYPTED, "readonly": PART_FLAG_READONLY}

MAX_NAME_LEN = 16  # sizeof(esp_partition_info_t.label), in UTF-8 bytes
ENTRY_SIZE = 32  # sizeof(esp_partition_info_t)
TABLE_SIZE = 0xC00  # ESP_PARTITION_TABLE_MAX_LEN: bytes of entries + MD5 + 0xFF padding
PARTITION_TABLE_SIZE = 0x1000  # ESP_PARTITION_TABLE_SIZE: the whole sector the table owns
DEFAULT_TABLE_OFFSET = 0x8000  # CONFIG_PARTITION_TABLE_OFFSET default

# esp_partition_info_t, packed, 32 bytes, little-endian (Xtensa and RISC-V both are).
_ENTRY = struct.Struct(
    "<"
    "H"  # uint16_t magic;         ESP_PARTITION_MAGIC
    "B"  # uint8_t  type;
    "B"  # uint8_t  subtype;
    "I"  # uint32_t pos.offset;    bytes from the start of flash
    "I"  # uint32_t pos.size;      bytes
    "16s"  # uint8_t label[16];    UTF-8, NUL-padded, not NUL-terminated when 16 long
    "I"  # uint32_t flags;         PART_FLAG_ENCRYPTED | PART_FLAG_READONLY
)
# The MD5 record that gen_esp32part.py appends after the entries
# (ESP_PARTITION_MD5_OFFSET = 16 in esp_flash_partitions.h).
_MD5_ENTRY = struct.Struct(
    "<"
    "H"  # uint16_t magic;         ESP_PARTITION_MAGIC_MD5
    "14s"  # 14 x 0xFF
    "16s"  # MD5 digest of all entries before this record
)
assert _ENTRY.size == _MD5_ENTRY.size == ENTRY_SIZE
_END_MARKER = b"\xff" * ENTRY_SIZE  # erased flash: PART_TYPE_END / PART_SUBTYPE_END

# --- placement and size rules (gen_esp32part.py) ------------------------------------

#: Offset alignment per type; any other (custom) type uses the data alignment.
ALIGNMENT: dict[int, int] = {
    APP_TYPE: 0x10000,
    DATA_TYPE: 0x1000,
    BOOTLOADER_TYPE: 0x1000,
    PARTITION_TABLE_TYPE: 0x1000,
}
#: App sizes must be whole flash sectors (without secure boot V1, which needs 0x10000).
APP_SIZE_ALIGNMENT = 0x1000
#: gen_esp32part.py ``--secure`` values: the app partition checks of each Secure Boot.
SECURE_BOOT_V1 = "v1"
SECURE_BOOT_V2 = "v2"
SECURE_BOOT_VERSIONS = (SECURE_BOOT_V1, SECURE_BOOT_V2)
#: App size alignment per ``--secure``: V1 puts its 68-byte signature block at the end of
#: a 64 KB block; V2 pads the image to 64 KB and appends a 4 KB signature sector, so its
#: app sizes only need whole sectors, as without secure boot (get_alignment_size_for_type).
_APP_SIZE_ALIGNMENT_SECURE = {None: APP_SIZE_ALIGNMENT, SECURE_BOOT_V1: 0x10000,
                              SECURE_BOOT_V2: APP_SIZE_ALIGNMENT}
NVS_RW_MIN_PARTITION_SIZE = 0x3000  # a read/write NVS partition needs 3 pages
OTA_DATA_PARTITION_SIZE = 0x2000  # data/ota and data/tee_ota: exactly two sectors

_MAX_U32 = 0xFFFFFFFF
_MiB = 1024 * 1024


def alignment_for_type(ptype: int) -> int:
    """Offset alignment in bytes that gen_esp32part.py requires for partitions of ``ptype``."""
    return ALIGNMENT.get(ptype, ALIGNMENT[DATA_TYPE])


def app_size_alignment(secure: str | None = None) -> int:
    """Bytes an app partition's size must be a multiple of, for ``secure`` (None, "v1", "v2")."""
    if secure not in _APP_SIZE_ALIGNMENT_SECURE:
        raise InputError(f"unknown secure boot version {secure!r}",
                         hint="use v1 or v2 (gen_esp32part.py --secure)")
    return _APP_SIZE_ALIGNMENT_SECURE[secure]


def secure_boot_check(config: Mapping[str, object]) -> str | None:
    """The ``--secure`` value ESP-IDF's build passes to gen_esp32part.py for ``config``.

    ``config`` maps sdkconfig names (``CONFIG_SECURE_BOOT``...) to values, True or ``"y"``
    for enabled.  As components/partition_table/CMakeLists.txt (v5.5 to master): with
    CONFIG_SECURE_BOOT and without CONFIG_SECURE_BOOT_ALLOW_SHORT_APP_PARTITION, "v2" when
    CONFIG_SECURE_BOOT_V2_ENABLED, else "v1"; otherwise None (no check).
    """
    def enabled(name: str) -> bool:
        return config.get(name) in (True, "y")

    if not enabled("CONFIG_SECURE_BOOT") or enabled("CONFIG_SECURE_BOOT_ALLOW_SHORT_APP_PARTITION"):
        return None
    return SECURE_BOOT_V2 if enabled("CONFIG_SECURE_BOOT_V2_ENABLED") else SECURE_BOOT_V1


def has_fixed_location(ptype: int, subtype: int) -> bool:
    """True for the primary bootloader and the primary partition table.

    ESP-IDF puts these at fixed offsets (``CONFIG_BOOTLOADER_OFFSET_IN_FLASH``, the table
    offset) below the first free offset; they are exempt from the below-the-table check.
    """
    return ptype in (BOOTLOADER_TYPE, PARTITION_TABLE_TYPE) and subtype == PRIMARY_SUBTYPE


def format_size(size: int) -> str:
    """A size for messages: ``24 KB``, ``2 MB`` when whole, else hex bytes."""
    if size > 0 and size % _MiB == 0:
        return f"{size // _MiB} MB"
    if size > 0 and size % 1024 == 0:
        return f"{size // 1024} KB"
    return f"0x{size:x} bytes"


# --- the model ----------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """One partition table entry.

    ``offset`` is in bytes from the start of flash, ``size`` in bytes; both fit in 32
    bits.  ``type`` and ``subtype`` are 0x00-0xFE (custom types are 0x40-0xFE).  The
    name is at most :data:`MAX_NAME_LEN` UTF-8 bytes.  Construction does not validate;
    :func:`validate_partition_table` does.
    """

    name: str
    type: int
    subtype: int
    offset: int
    size: int
    encrypted: bool = False
    readonly: bool = False

    @property
    def type_name(self) -> str | int:
        """The type's CSV name (``app``, ``data``, ...), or the number when it has none."""
        for name, value in TYPES.items():
            if value == self.type:
                return name
        return self.type

    @property
    def subtype_name(self) -> str | int:
        """The subtype's CSV name for this type (``nvs``, ``ota_0``, ...), or the number."""
        for name, value in SUBTYPES.get(self.type, {}).items():
            if value == self.subtype:
                return name
        return self.subtype

    @property
    def end(self) -> int:
        """First byte after the partition (``offset + size``)."""
        return self.offset + self.size

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the set flags, in CSV order (``encrypted``, ``readonly``)."""
        return tuple(name for name in FLAGS if getattr(self, name))

    @property
    def flag_bits(self) -> int:
        """The ``flags`` word as stored in flash."""
        return sum(bit for name, bit in FLAGS.items() if getattr(self, name))


@dataclass(frozen=True)
class PartitionTable:
    """A partition table: entries in table order, and where the table itself sits.

    ``offset`` is the flash offset of the table sector in bytes (a multiple of 0x1000);
    the first free offset for partitions is ``offset + 0x1000``.
    """

    partitions: tuple[Partition, ...]
    offset: int = DEFAULT_TABLE_OFFSET

    def __post_init__(self) -> None:
        object.__setattr__(self, "partitions", tuple(self.partitions))

    def find(self, name: str) -> Partition | None:
        """The partition called ``name``, or None."""
        for part in self.partitions:
            if part.name == name:
                return part
        return None

    def of_type(self, type: int, subtype: int | None = None) -> tuple[Partition, ...]:  # noqa: A002
        """Partitions of ``type`` (and ``subtype`` when given), in table order."""
        return tuple(p for p in self.partitions
                     if p.type == type and (subtype is None or p.subtype == subtype))

    @property
    def end(self) -> int:
        """End of the partition with the highest offset: the flash the table needs."""
        if not self.partitions:
            return 0
        return max(self.partitions, key=lambda p: p.offset).end


# --- binary build and parse ---------------------------------------------------------


def _encode_entry(part: Partition) -> bytes:
    label = part.name.encode("utf-8")
    if len(label) > MAX_NAME_LEN or "\0" in part.name:
        raise InputError(f"partition {part.name!r}: name does not fit the 16-byte label",
                         hint=f"use at most {MAX_NAME_LEN} UTF-8 bytes and no NUL")
    for what, value, top in (("type", part.type, 0xFF), ("subtype", part.subtype, 0xFF),
                             ("offset", part.offset, _MAX_U32), ("size", part.size, _MAX_U32)):
        if not isinstance(value, int) or not 0 <= value <= top:
            raise InputError(f"partition {part.name!r}: {what} {value!r} does not fit "
                             f"the entry (0..0x{top:x})")
    return _ENTRY.pack(ESP_PARTITION_MAGIC, part.type, part.subtype, part.offset, part.size,
                       label, part.flag_bits)


def build_partition_table(table: PartitionTable, *, md5: bool = True) -> bytes:
    """The 0xC00-byte partition table binary, exactly as gen_esp32part.py writes it.

    Entries in table order, then (when ``md5``, ``CONFIG_PARTITION_TABLE_MD5``) the MD5
    entry, then 0xFF.  Does not validate the table (see :func:`validate_partition_table`);
    raises :class:`InputError` only for values the entry cannot hold, and
    :class:`CapacityError` when there are too many entries (at most 94 with MD5, 95
    without: at least one all-0xFF record must end the table).
    """
    blob = b"".join(_encode_entry(part) for part in table.partitions)
    if md5:
        blob += _MD5_ENTRY.pack(ESP_PARTITION_MAGIC_MD5, b"\xff" * 14, hashlib.md5(blob).digest())
    if len(blob) >= TABLE_SIZE:
        most = TABLE_SIZE // ENTRY_SIZE - 1 - int(md5)
        raise CapacityError(f"{len(table.partitions)} partitions do not fit in the table "
                            f"(at most {most}{' with the MD5 entry' if md5 else ''})")
    return blob + b"\xff" * (TABLE_SIZE - len(blob))


def parse_partition_table(data: bytes, *, offset: int | None = None) -> PartitionTable:
    """Read a partition table binary: a 0xC00-byte blob or anything longer (a sector).

    Only the first 0xC00 bytes are read; the table ends at the first record with magic
    0xFFFF and type/subtype 0xFF, as the bootloader's ``esp_partition_table_verify``
    decides.  An MD5 entry, when present, must match.  ``offset`` is where the table sits
    in flash; by default it is taken from a ``partition_table``/``primary`` entry, else
    0x8000.  Raises :class:`FormatError` for anything that is not a valid table.
    """
    digest = hashlib.md5()
    md5_seen = False
    parts: list[Partition] = []
    for pos in range(0, TABLE_SIZE, ENTRY_SIZE):
        record = bytes(data[pos:pos + ENTRY_SIZE])
        index = pos // ENTRY_SIZE
        if len(record) < ENTRY_SIZE:
            raise FormatError(f"partition table truncated: {len(data)} bytes and no "
                              "end-of-table marker",
                              hint="a partition table binary is 0xC00 bytes long")
        magic, ptype, subtype = struct.unpack_from("<HBB", record)
        if magic == 0xFFFF and ptype == 0xFF and subtype == 0xFF:
            if pos == 0:
                raise FormatError("no partition table here: the first record is erased "
                                  "(0xFF)", hint="check the input file and --offset")
            return _table_with_offset(parts, offset)
        if magic == ESP_PARTITION_MAGIC_MD5:
            _, _, stored = _MD5_ENTRY.unpack(record)
            if md5_seen:
                raise FormatError(f"record {index}: a second MD5 entry (only one is allowed)")
            if stored != digest.digest():
                raise FormatError(f"record {index}: MD5 mismatch (computed "
                                  f"{digest.hexdigest()}, stored {stored.hex()})",
                                  hint="the table is corrupt or was edited by hand")
            md5_seen = True
            continue
        if magic != ESP_PARTITION_MAGIC:
            raise FormatError(f"record {index} (byte 0x{pos:x}): bad magic 0x{magic:04x}, "
                              f"expected 0x{ESP_PARTITION_MAGIC:04X}",
                              hint="is this a partition table binary?")
        digest.update(record)
        parts.append(_decode_entry(record, index))
    raise FormatError(f"no end-of-table marker in the first 0x{TABLE_SIZE:x} bytes")


def has_md5_entry(data: bytes) -> bool:
    """True when the table binary ``data`` has an MD5 entry (CONFIG_PARTITION_TABLE_MD5)."""
    for pos in range(0, min(len(data), TABLE_SIZE) - ENTRY_SIZE + 1, ENTRY_SIZE):
        magic = struct.unpack_from("<H", data, pos)[0]
        if magic == ESP_PARTITION_MAGIC_MD5:
            return True
        if magic != ESP_PARTITION_MAGIC:
            return False
    return False


def _decode_entry(record: bytes, index: int) -> Partition:
    _, ptype, subtype, offset, size, label, flags = _ENTRY.unpack(record)
    try:
        name = label.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"record {index}: label {label!r} is not UTF-8") from None
    unknown = flags & ~(PART_FLAG_ENCRYPTED | PART_FLAG_READONLY)
    if unknown:
        raise FormatError(f"partition {name!r}: unknown flag bits 0x{unknown:08x}",
                          hint="known flags: encrypted (0x1), readonly (0x2); "
                               "a newer ESP-IDF format?")
    return Partition(name, ptype, subtype, offset, size,
                     encrypted=bool(flags & PART_FLAG_ENCRYPTED),
                     readonly=bool(flags & PART_FLAG_READONLY))


def _table_with_offset(parts: list[Partition], offset: int | None) -> PartitionTable:
    if offset is None:
        offset = next((p.offset for p in parts
                       if p.type == PARTITION_TABLE_TYPE and p.subtype == PRIMARY_SUBTYPE),
                      DEFAULT_TABLE_OFFSET)
    return PartitionTable(tuple(parts), offset=offset)


# --- validation ---------------------------------------------------------------------


class Problem(NamedTuple):
    """The first thing wrong with a table: which entry, what, and how to fix it.

    ``index`` is the entry the message is about (None: the whole table); ``other`` an
    entry it conflicts with (duplicate name, overlap), so that callers holding source
    locations can point at both.
    """

    index: int | None
    message: str
    hint: str | None = None
    other: int | None = None
    capacity: bool = False


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _kind(part: Partition) -> str:
    name = part.type_name
    return f"{name} partitions" if isinstance(name, str) else f"partitions of type 0x{name:x}"


def _check_partition(part: Partition, secure: str | None) -> tuple[str, str | None] | None:
    """gen_esp32part.py's PartitionDefinition.verify, plus the range checks it leaves to
    struct.pack.  Returns (reason, hint) or None."""
    label = part.name.encode("utf-8")
    if not part.name:
        return "the name is empty", None
    if len(label) > MAX_NAME_LEN:
        return (f"the name is {len(label)} bytes long, longer than the {MAX_NAME_LEN}-byte "
                "label (gen_esp32part.py would silently truncate it)",
                f"shorten it to at most {MAX_NAME_LEN} bytes")
    if re.search(r"[\x00-\x1f\x7f]", part.name):
        return "the name contains a control character", None
    if not 0 <= part.type <= MAX_TYPE:
        return f"type 0x{part.type:x} is out of range (0x00-0xFE)", None
    # A subtype may be 0xFF (ESP-IDF's examples/security/flash_encryption uses data/0xff);
    # only type 0xFF is reserved, as the end-of-table marker.
    if not 0 <= part.subtype <= 0xFF:
        return f"subtype 0x{part.subtype:x} is out of range (0x00-0xFF)", None
    if not 0 <= part.offset <= _MAX_U32:
        return f"offset 0x{part.offset:x} is out of range (32 bits)", None
    if part.size <= 0:
        return f"size {part.size:#x} is not positive", None
    if part.end > _MAX_U32 + 1:
        return f"it ends at 0x{part.end:x}, beyond the 4 GB address space", None
    align = alignment_for_type(part.type)
    if part.offset % align:
        return (f"offset 0x{part.offset:x} is not aligned to 0x{align:x} "
                f"({_kind(part)} need {format_size(align)} alignment)",
                f"use 0x{_align_up(part.offset, align):x}, or leave the offset empty "
                "to place it automatically")
    size_align = app_size_alignment(secure)
    if part.type == APP_TYPE and part.size % size_align:
        why = ("app partitions are whole 4 KB flash sectors" if size_align == APP_SIZE_ALIGNMENT
               else "Secure Boot V1 signs app partitions in whole 64 KB blocks")
        return (f"size 0x{part.size:x} is not a multiple of 0x{size_align:x} ({why})",
                f"use 0x{_align_up(part.size, size_align):x}")
    if part.type == DATA_TYPE and part.subtype in (OTA_DATA_SUBTYPE, COREDUMP_SUBTYPE) \
            and part.readonly:
        return (f"data/{part.subtype_name} partitions are always read-write and cannot be "
                "flagged 'readonly'", "remove the readonly flag")
    if part.type == DATA_TYPE and part.subtype == NVS_SUBTYPE and not part.readonly \
            and part.size < NVS_RW_MIN_PARTITION_SIZE:
        return (f"a read/write NVS partition needs at least 0x{NVS_RW_MIN_PARTITION_SIZE:x} "
                f"bytes ({format_size(NVS_RW_MIN_PARTITION_SIZE)}), this one has "
                f"0x{part.size:x}",
                f"make it 0x{NVS_RW_MIN_PARTITION_SIZE:x} or larger, or flag it 'readonly'")
    return None


def find_problem(table: PartitionTable, *, flash_size: int | None = None,
                 secure: str | None = None) -> Problem | None:
    """The first problem :func:`validate_partition_table` would raise, or None.

    For callers that map entries back to source lines (the CSV and YAML readers).
    """
    app_size_alignment(secure)  # an unknown version is an error even without apps
    parts = table.partitions
    if not parts:
        return Problem(None, "the partition table has no partitions")
    for index, part in enumerate(parts):
        found = _check_partition(part, secure)
        if found:
            return Problem(index, f"partition {part.name!r}: {found[0]}", found[1])
    seen: dict[str, int] = {}
    for index, part in enumerate(parts):
        if part.name in seen:
            return Problem(index, f"partition {part.name!r}: the name is used twice "
                           "(names must be unique)", "rename one of them", seen[part.name])
        seen[part.name] = index
    first_free = table.offset + PARTITION_TABLE_SIZE
    previous: int | None = None
    for index in sorted(range(len(parts)), key=lambda i: parts[i].offset):
        part = parts[index]
        fixed = has_fixed_location(part.type, part.subtype)
        if part.offset < first_free and not fixed:
            return Problem(index, f"partition {part.name!r}: offset 0x{part.offset:x} is "
                           f"below 0x{first_free:x}, the end of the partition table sector "
                           f"0x{table.offset:x}-0x{first_free - 1:x}",
                           f"use offset 0x{first_free:x} or higher, or leave it empty")
        if previous is not None and part.offset < parts[previous].end:
            prev = parts[previous]
            return Problem(index, f"partition {part.name!r}: 0x{part.offset:x}-"
                           f"0x{part.end - 1:x} overlaps partition {prev.name!r} "
                           f"(0x{prev.offset:x}-0x{prev.end - 1:x})",
                           f"start it at 0x{prev.end:x} or later", previous)
        previous = index
    for index, part in enumerate(parts):
        if part.type == PARTITION_TABLE_TYPE and part.subtype == PRIMARY_SUBTYPE and \
                (part.offset, part.size) != (table.offset, PARTITION_TABLE_SIZE):
            return Problem(index, f"partition {part.name!r}: the primary partition table "
                           f"entry must be at 0x{table.offset:x} with size "
                           f"0x{PARTITION_TABLE_SIZE:x}, not 0x{part.offset:x} size "
                           f"0x{part.size:x}", "check the table offset (--offset)")
    for subtype, what in ((OTA_DATA_SUBTYPE, "otadata (data/ota)"),
                          (TEE_OTA_SUBTYPE, "TEE otadata (data/tee_ota)")):
        found_at = [i for i, p in enumerate(parts) if p.type == DATA_TYPE and p.subtype == subtype]
        if len(found_at) > 1:
            return Problem(found_at[1], f"partition {parts[found_at[1]].name!r}: a second "
                           f"{what} partition (only one is allowed)", None, found_at[0])
        if found_at and parts[found_at[0]].size != OTA_DATA_PARTITION_SIZE:
            part = parts[found_at[0]]
            return Problem(found_at[0], f"partition {part.name!r}: an {what} partition must "
                           f"be exactly 0x{OTA_DATA_PARTITION_SIZE:x} bytes "
                           f"({format_size(OTA_DATA_PARTITION_SIZE)}), this one has "
                           f"0x{part.size:x}", f"set its size to 0x{OTA_DATA_PARTITION_SIZE:x}")
    if flash_size is not None:
        for index in sorted(range(len(parts)), key=lambda i: parts[i].offset):
            part = parts[index]
            if part.end > flash_size:
                return Problem(index, f"partition {part.name!r}: it ends at 0x{part.end:x} "
                               f"({part.end / _MiB:.1f} MB), beyond the end of the "
                               f"{format_size(flash_size)} flash (0x{flash_size:x})",
                               "shrink the partitions, or raise the flash size "
                               "(CONFIG_ESPTOOLPY_FLASHSIZE)", capacity=True)
    return None


def validate_partition_table(table: PartitionTable, *, flash_size: int | None = None,
                             secure: str | None = None) -> None:
    """Run every check gen_esp32part.py runs, and a few it misses; raise the first failure.

    Per entry: a name of 1-16 bytes, type and subtype 0x00-0xFE, a positive size,
    offset alignment (app 0x10000, others 0x1000), app sizes in 4 KB sectors (64 KB with
    ``secure="v1"``, gen_esp32part.py ``--secure v1``; "v2" needs 4 KB, as none), no
    ``readonly`` on data/ota or data/coredump, read/write NVS at least 0x3000 bytes.
    Across entries: unique names, nothing below the table sector's end except the primary
    bootloader and table, no overlaps, at most one otadata and one TEE otadata of exactly
    0x2000 bytes, and, when ``flash_size`` (bytes) is given, everything inside the flash.

    Raises :class:`InputError` (:class:`CapacityError` for the flash size) naming the
    partition and the reason.
    """
    problem = find_problem(table, flash_size=flash_size, secure=secure)
    if problem is not None:
        error = CapacityError if problem.capacity else InputError
        raise error(problem.message, hint=problem.hint)


class NameWarning(NamedTuple):
    """A partition whose name is a type or subtype name that does not describe it.

    ``index`` is the entry in table order; ``message`` says what it looks like.
    """

    index: int
    message: str


def find_name_warnings(table: PartitionTable) -> list[NameWarning]:
    """gen_esp32part.py's "Mistake in partition table?" warnings, as data, in table order.

    Its rule, matched exactly (names compared case-sensitively): a name that is a type
    name (``app``, ``data``, ``bootloader``, ``partition_table``) other than the entry's
    type; a name that is any type's subtype name (``nvs``, ``ota_0``, ``primary``...)
    but not the entry's own subtype under its type.  Both can apply to one entry.
    """
    subtype_names = {name for names in SUBTYPES.values() for name in names}
    warnings = []
    for index, part in enumerate(table.partitions):
        name = part.name
        if name in TYPES and TYPES[name] != part.type:
            warnings.append(NameWarning(index, f"partition {name!r}: the name is the partition "
                                        f"type '{name}', but the partition is {_kind_of(part)}; "
                                        "a mistake in the table?"))
        if name in subtype_names and SUBTYPES.get(part.type, {}).get(name) != part.subtype:
            owners = ", ".join(f"{_type_label(t)}/{name}" for t, names in SUBTYPES.items()
                               if name in names)
            warnings.append(NameWarning(index, f"partition {name!r}: the name is a subtype "
                                        f"name ({owners}), but the partition is {_kind_of(part)}; "
                                        "a mistake in the table?"))
    return warnings


def _type_label(ptype: int) -> str:
    name = next((n for n, v in TYPES.items() if v == ptype), None)
    return name if name is not None else f"0x{ptype:02x}"


def _kind_of(part: Partition) -> str:
    subtype = part.subtype_name
    return f"{_type_label(part.type)}/{subtype if isinstance(subtype, str) else f'0x{subtype:02x}'}"


_FLASH_SIZE = re.compile(r"(?i)\s*(\d+)\s*(mb|m|kb|k)?\s*")


def parse_flash_size(text: str) -> int:
    """A flash size as in ``CONFIG_ESPTOOLPY_FLASHSIZE`` (``"4MB"``, ``"16MB"``) in bytes.

    Also accepts ``M``, ``KB``/``K`` and a plain byte count (decimal or 0x hex).
    """
    match = _FLASH_SIZE.fullmatch(text)
    value: int | None = None
    if match:
        unit = (match.group(2) or "").lower()
        value = int(match.group(1)) * {"": 1, "k": 1024, "kb": 1024, "m": _MiB, "mb": _MiB}[unit]
    else:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            value = None
    if not value or value <= 0:
        raise InputError(f"invalid flash size {text!r}",
                         hint="give it as in CONFIG_ESPTOOLPY_FLASHSIZE, e.g. 4MB")
    return value

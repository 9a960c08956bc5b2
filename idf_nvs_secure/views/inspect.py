"""Looking at NVS images and flash dumps: integrity checks, diffs, a dump tree.

Everything here sits on top of :func:`~idf_nvs_secure.formats.nvs_reader.parse_nvs_image`
and is pure (bytes in, models out; no files, no printing):

* :func:`check_nvs_image` runs the reader's checks (page header and entry CRCs, bitmap
  states, blob indexes against their chunks, duplicate keys, wrong keys) and adds the
  bitmap-order check ESP-IDF applies when it loads a page.
* :func:`diff_nvs_images` compares two images value by value.
* :func:`dump_tree` turns an image into a small tree of labels for a terminal listing.
* :func:`locate_in_flash` finds the partition table in a whole flash dump and the NVS
  partition (and its nvs_keys partition) in it; :func:`keys_from_flash` reads the keys
  when they are readable on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from ..errors import FormatError, InputError, KeyMaterialError
from ..formats.nvs_layout import (
    ENTRIES_PER_PAGE,
    ENTRY_STATE_EMPTY,
    PAGE_SIZE,
)
from ..formats.nvs_reader import NvsImage, NvsItem, NvsProblem, parse_nvs_image
from ..formats.partition_table import (
    DATA_TYPE,
    DEFAULT_TABLE_OFFSET,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    TABLE_SIZE,
    Partition,
    PartitionTable,
    parse_partition_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.nvs_keys import NvsKeys

__all__ = [
    "NvsCheck",
    "NvsChange",
    "TreeNode",
    "FlashNvs",
    "check_nvs_image",
    "diff_nvs_images",
    "diff_to_json",
    "format_value",
    "dump_tree",
    "locate_in_flash",
    "keys_from_flash",
]

Value = Union[int, float, str, bytes]
_READABLE = ("ACTIVE", "FULL", "FREEING")


# --- check ----------------------------------------------------------------------------


@dataclass
class NvsCheck:
    """The result of :func:`check_nvs_image`: the parsed image and every problem found.

    ``problems`` holds the reader's problems followed by this module's own checks,
    ordered by page and entry (problems about the whole image first).
    """

    image: NvsImage
    problems: list[NvsProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def wrong_key(self) -> bool:
        """Keys were given but do not decrypt the image."""
        return self.image.wrong_key


def _bitmap_order_problems(data: bytes, image: NvsImage) -> list[NvsProblem]:
    """Entries in use after the first EMPTY entry of a page.

    ESP-IDF writes a page's entries in order, so ``Page::load`` treats anything after
    the first EMPTY entry as the remains of an interrupted write and erases it.
    """
    out = []
    for info in image.pages:
        if info.state not in _READABLE:
            continue
        base = info.index * PAGE_SIZE + 32
        bits = int.from_bytes(data[base: base + 32], "little")
        states = [(bits >> (2 * i)) & 3 for i in range(ENTRIES_PER_PAGE)]
        try:
            first_empty = states.index(ENTRY_STATE_EMPTY)
        except ValueError:
            continue
        for index in range(first_empty + 1, ENTRIES_PER_PAGE):
            if states[index] != ENTRY_STATE_EMPTY:
                out.append(NvsProblem(
                    "bitmap-order",
                    f"entry marked in use after the first empty entry ({first_empty}); "
                    "ESP-IDF erases it when it loads the page", info.index, index))
                break
    return out


def _sort_key(problem: NvsProblem) -> tuple:
    return (problem.page is not None, problem.page or 0,
            problem.entry is not None, problem.entry or 0)


def check_nvs_image(data: bytes, *, keys: "NvsKeys | None" = None) -> NvsCheck:
    """Check an NVS partition image (decrypting with ``keys`` when given).

    Never raises for corrupt content; raises :class:`FormatError` only when ``data`` is
    not a whole number of 4096-byte pages.  An image that does not decrypt with ``keys``
    is reported as one ``wrong-key`` problem, not as a list of bad entries.
    """
    image = parse_nvs_image(data, keys=keys)
    problems = list(image.problems)
    if not (image.wrong_key or image.looks_encrypted):
        problems.extend(_bitmap_order_problems(bytes(data), image))
    problems.sort(key=_sort_key)
    return NvsCheck(image, problems)


# --- diff -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NvsChange:
    """One difference between two images.

    ``kind`` is ``added`` (only in B), ``removed`` (only in A), ``changed`` (same type,
    other value) or ``type-changed``.  ``old``/``new`` are (type, value) or None.
    """

    kind: str
    namespace: str
    key: str
    old: tuple[str, Value] | None
    new: tuple[str, Value] | None


def _values(image: NvsImage) -> dict[tuple[str, str], tuple[str, Value]]:
    out: dict[tuple[str, str], tuple[str, Value]] = {}
    for item in image.entries:  # a duplicated key keeps its later value, as image_to_json
        out[(item.namespace, item.key)] = (item.type, item.value)
    return out


def diff_nvs_images(a: NvsImage, b: NvsImage) -> list[NvsChange]:
    """The value-by-value differences from image ``a`` to image ``b``, sorted by
    namespace and key.  Empty when both hold the same values (page layout, entry order
    and encryption are ignored)."""
    old, new = _values(a), _values(b)
    changes = []
    for ns, key in sorted(set(old) | set(new)):
        before, after = old.get((ns, key)), new.get((ns, key))
        if before == after:
            continue
        if before is None:
            kind = "added"
        elif after is None:
            kind = "removed"
        elif before[0] != after[0]:
            kind = "type-changed"
        else:
            kind = "changed"
        changes.append(NvsChange(kind, ns, key, before, after))
    return changes


def _json_value(pair: tuple[str, Value] | None) -> dict | None:
    if pair is None:
        return None
    kind, value = pair
    return {"type": kind, "value": value.hex() if isinstance(value, bytes) else value}


def diff_to_json(changes: list[NvsChange]) -> list[dict]:
    """``[{"change", "namespace", "key", "old", "new"}]``; old/new are
    ``{"type", "value"}`` (blobs as lowercase hex) or null."""
    return [{"change": c.kind, "namespace": c.namespace, "key": c.key,
             "old": _json_value(c.old), "new": _json_value(c.new)} for c in changes]


# --- dump tree ------------------------------------------------------------------------


def format_value(kind: str, value: Value, *, limit: int = 48) -> str:
    """A one-line rendering of a value: strings quoted and shortened to ``limit``
    characters, blobs as hex (shortened) with their length in bytes."""
    if isinstance(value, bytes):
        shown = value[: max(1, limit // 2)].hex()
        more = "…" if len(shown) < 2 * len(value) else ""
        return f"{shown}{more} ({len(value)} bytes)"
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 1] + "…"
        return repr(text)
    return repr(value)


def _size(kind: str, value: Value) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 1  # stored with its NUL
    return {"u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4,
            "float": 4}.get(kind, 8)


@dataclass
class TreeNode:
    """A label and its children: what a dump shows, independent of how it is drawn."""

    label: str
    children: list["TreeNode"] = field(default_factory=list)

    def lines(self, indent: str = "  ") -> list[str]:
        """Plain indented text, one line per node."""
        out = [self.label]
        for child in self.children:
            out.extend(indent + line for line in child.lines(indent))
        return out


def _item_labels(items: list[NvsItem], limit: int) -> list[str]:
    """One label per item: key, type, size and value in columns aligned across ``items``."""
    rows = [(item.key, item.type, f"{_size(item.type, item.value)} B",
             format_value(item.type, item.value, limit=limit)) for item in items]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    return [f"{k:<{widths[0]}}  {t:<{widths[1]}}  {n:>{widths[2]}}  {v}" for k, t, n, v in rows]


def dump_tree(image: NvsImage, *, title: str = "NVS", pages: bool = False,
              limit: int = 48) -> TreeNode:
    """Namespace -> key (type, size in bytes, value) and, with ``pages``, one node per
    page with its state, sequence number and used/erased/free entry counts."""
    root = TreeNode(title)
    grouped: dict[str, list[NvsItem]] = {name: [] for name in image.namespaces}
    for item in image.entries:
        grouped.setdefault(item.namespace, []).append(item)
    for name, items in grouped.items():
        node = TreeNode(f"namespace {name}")
        node.children.extend(TreeNode(label) for label in _item_labels(items, limit))
        root.children.append(node)
    if pages:
        page_root = TreeNode(f"pages ({len(image.pages)} x {PAGE_SIZE} bytes)")
        for info in image.pages:
            seq = "-" if info.seq is None else str(info.seq)
            page_root.children.append(TreeNode(
                f"page {info.index}: {info.state}, seq {seq}, used {info.used}, "
                f"erased {info.erased}, free {info.free}"))
        root.children.append(page_root)
    return root


# --- flash dumps ----------------------------------------------------------------------


@dataclass(frozen=True)
class FlashNvs:
    """An NVS partition found in a flash dump: the table, the partition, its bytes, and
    the nvs_keys partition beside it (None when the table has none)."""

    table: PartitionTable
    partition: Partition
    data: bytes
    keys_partition: Partition | None
    keys_data: bytes | None


def _slice(flash: bytes, part: Partition) -> bytes:
    if part.offset + part.size > len(flash):
        raise FormatError(
            f"partition {part.name!r} (0x{part.offset:x}..0x{part.end:x}) runs past the end "
            f"of the flash dump ({len(flash)} bytes = 0x{len(flash):x})",
            hint="read back the whole flash (esptool read_flash 0 ALL)")
    return bytes(flash[part.offset: part.offset + part.size])


def locate_in_flash(flash: bytes, *, table_offset: int = DEFAULT_TABLE_OFFSET,
                    partition: str | None = None) -> FlashNvs:
    """Find the partition table at ``table_offset`` (bytes) in a whole flash dump and
    the NVS partition called ``partition`` (default: ``nvs``, else the only data/nvs
    partition) and the first nvs_keys partition.

    Raises :class:`FormatError` when no valid table is there and :class:`InputError` when
    the partition is missing or ambiguous.
    """
    if len(flash) < table_offset + TABLE_SIZE:
        raise FormatError(
            f"the flash dump is {len(flash)} bytes: too short for a partition table at "
            f"0x{table_offset:x}", hint="is this a whole flash dump? (--table-offset)")
    try:
        table = parse_partition_table(flash[table_offset: table_offset + TABLE_SIZE],
                                      offset=table_offset)
    except FormatError as exc:
        raise FormatError(f"no valid partition table at 0x{table_offset:x}: {exc.message}",
                          hint="give the table's offset with --table-offset "
                               "(CONFIG_PARTITION_TABLE_OFFSET)") from None
    nvs_parts = table.of_type(DATA_TYPE, NVS_SUBTYPE)
    if partition is not None:
        part = table.find(partition)
        if part is None:
            names = ", ".join(p.name for p in table.partitions)
            raise InputError(f"no partition {partition!r} in the flash's table ({names})")
        if part.type != DATA_TYPE or part.subtype != NVS_SUBTYPE:
            raise InputError(f"partition {partition!r} is not a data/nvs partition")
    elif table.find("nvs") in nvs_parts:
        part = table.find("nvs")
    elif len(nvs_parts) == 1:
        part = nvs_parts[0]
    elif not nvs_parts:
        raise InputError("the flash's partition table has no data/nvs partition")
    else:
        raise InputError("the flash has several NVS partitions: "
                         + ", ".join(p.name for p in nvs_parts),
                         hint="choose one with --partition NAME")
    key_parts = table.of_type(DATA_TYPE, NVS_KEYS_SUBTYPE)
    key_part = key_parts[0] if key_parts else None
    return FlashNvs(table, part, _slice(flash, part), key_part,
                    _slice(flash, key_part) if key_part else None)


def keys_from_flash(found: FlashNvs) -> "NvsKeys":
    """The keys in the dump's nvs_keys partition.

    Raises :class:`KeyMaterialError` when there is none, it is erased, or its CRC fails
    (usually because flash encryption keeps it encrypted, unreadable on the host).
    """
    from ..formats.nvs_keys import parse_nvs_keys

    part = found.keys_partition
    if part is None or found.keys_data is None:
        raise KeyMaterialError("the flash's partition table has no nvs_keys partition",
                               hint="give the keys with --keys NVS_KEYS.bin")
    try:
        return parse_nvs_keys(found.keys_data)
    except FormatError:
        raise KeyMaterialError(
            f"the nvs_keys partition {part.name!r} at 0x{part.offset:x} fails its CRC: it is "
            "most likely encrypted by flash encryption, which the host cannot read",
            hint="give the plaintext keys with --keys NVS_KEYS.bin") from None
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            f"the nvs_keys partition {part.name!r} at 0x{part.offset:x} is erased: "
            "it holds no keys", hint=exc.hint) from None

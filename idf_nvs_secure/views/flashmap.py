"""The flash map: where everything sits in flash, laid out for a picture.

:func:`layout_flash_map` turns a :class:`~.formats.partition_table.PartitionTable` into a
:class:`FlashMap`: one :class:`MapBox` per region in flash order (the bootloader region
before the table, the table sector, each partition, and every free gap), each with a
vertical position and height in SVG pixels.  Heights are proportional to size, except
that no box is shorter than ``min_height``: such boxes are marked ``enlarged`` and the
legend says so, so a 4 KiB nvs_keys partition stays legible beside a 1 MiB app.

:func:`render_flash_map_svg` renders the model with ``templates/flash_map.svg.j2``.
Nothing here reads files or prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..formats.partition_table import (
    APP_TYPE,
    DATA_TYPE,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    PARTITION_TABLE_SIZE,
    PartitionTable,
    format_size,
)

__all__ = ["MapBox", "FlashMap", "layout_flash_map", "render_flash_map_svg",
           "template_environment"]

#: Pixel geometry of the picture (the template reads these from the FlashMap).
WIDTH = 760
BOX_X = 110
BOX_WIDTH = 470
TOP = 44


@dataclass(frozen=True)
class MapBox:
    """One region of flash.

    ``kind`` is ``bootloader``, ``table``, ``app``, ``nvs``, ``nvs_keys``, ``data`` or
    ``free``; ``offset``/``size`` in bytes; ``y``/``height`` in pixels; ``enlarged`` when
    the box is drawn taller than its size alone would make it; ``encryption`` is the
    marker text (``flash-encrypted``, ``NVS-encrypted``) or None.
    """

    kind: str
    name: str
    detail: str
    offset: int
    size: int
    y: float
    height: float
    enlarged: bool = False
    encryption: str | None = None

    @property
    def end(self) -> int:
        """First byte after the region."""
        return self.offset + self.size

    @property
    def size_text(self) -> str:
        """``24K``, ``1M``, ... as ESP-IDF writes sizes."""
        return format_size(self.size)


@dataclass(frozen=True)
class FlashMap:
    """The laid-out picture: boxes in flash order and the scale used."""

    title: str
    boxes: tuple[MapBox, ...]
    flash_size: int
    bytes_per_px: float
    min_height: float
    width: int = WIDTH
    box_x: int = BOX_X
    box_width: int = BOX_WIDTH
    top: int = TOP

    @property
    def bottom(self) -> float:
        """y of the end of the last box."""
        return self.boxes[-1].y + self.boxes[-1].height if self.boxes else self.top

    @property
    def height(self) -> int:
        """Height of the whole picture, legend included."""
        return int(self.bottom + 150)

    @property
    def any_enlarged(self) -> bool:
        """Whether some box is not to scale (the legend then explains it)."""
        return any(box.enlarged for box in self.boxes)

    @property
    def scale_text(self) -> str:
        """The scale in words for the legend."""
        kib = self.bytes_per_px / 1024
        return f"1 px ≈ {kib:.1f} KB of flash" if kib < 1024 else f"1 px ≈ {kib / 1024:.1f} MB of flash"


def _kind(ptype: int, subtype: int) -> str:
    if ptype == APP_TYPE:
        return "app"
    if ptype == DATA_TYPE and subtype == NVS_SUBTYPE:
        return "nvs"
    if ptype == DATA_TYPE and subtype == NVS_KEYS_SUBTYPE:
        return "nvs_keys"
    return "data"


def layout_flash_map(table: PartitionTable, *, flash_size: int | None = None,
                     nvs_encrypted: Mapping[str, str] | frozenset[str] = frozenset(),
                     flash_encryption: bool = False,
                     title: str = "Flash map", scale_height: float = 900,
                     min_height: float = 26) -> FlashMap:
    """Lay out ``table`` in a flash of ``flash_size`` bytes (default: up to the end of
    the last partition).

    ``nvs_encrypted`` names the partitions NVS encryption protects (a set, or a mapping
    name -> marker text); partitions with the ``encrypted`` flag are marked
    ``flash-encrypted``, and with ``flash_encryption`` (on in sdkconfig) so is everything
    the bootloader stores encrypted: the bootloader, the table and the app partitions
    (:func:`~..build.flash_encrypt.stored_encrypted`).  ``scale_height`` is the pixel height the whole flash would
    take at a linear scale; ``min_height`` the smallest box height in pixels.
    """
    end = max(table.end, table.offset + PARTITION_TABLE_SIZE)
    total = max(flash_size or 0, end)
    from ..build.flash_encrypt import stored_encrypted

    fe_mark = "flash-encrypted" if flash_encryption else None
    regions: list[tuple[str, str, str, int, int, str | None]] = [
        ("bootloader", "bootloader", "second-stage bootloader (and reserved)", 0, table.offset,
         fe_mark),
        ("table", "partition table", "partition table sector", table.offset,
         PARTITION_TABLE_SIZE, fe_mark),
    ]
    if not isinstance(nvs_encrypted, Mapping):
        nvs_encrypted = {name: "NVS-encrypted" for name in nvs_encrypted}
    for part in sorted(table.partitions, key=lambda p: (p.offset, p.name)):
        marks = []
        if part.encrypted or (flash_encryption and stored_encrypted(part.offset, table)):
            marks.append("flash-encrypted")
        if part.name in nvs_encrypted:
            marks.append(nvs_encrypted[part.name])
        regions.append((_kind(part.type, part.subtype), part.name,
                        f"{part.type_name}/{part.subtype_name}", part.offset, part.size,
                        ", ".join(marks) or None))
    regions = [r for r in regions if r[4] > 0]
    # Free gaps between regions, and after the last one up to the flash size.
    filled: list[tuple[str, str, str, int, int, str | None]] = []
    cursor = 0
    for region in regions:
        if region[3] > cursor:
            filled.append(("free", "free", "unused flash", cursor, region[3] - cursor, None))
        filled.append(region)
        cursor = max(cursor, region[3] + region[4])
    if total > cursor:
        filled.append(("free", "free", "unused flash", cursor, total - cursor, None))
    bytes_per_px = total / scale_height
    boxes = []
    y = float(TOP)
    for kind, name, detail, offset, size, mark in filled:
        natural = size / bytes_per_px
        height = max(min_height, natural)
        boxes.append(MapBox(kind, name, detail, offset, size, round(y, 1), round(height, 1),
                            enlarged=natural < min_height, encryption=mark))
        y += height
    return FlashMap(title, tuple(boxes), total, bytes_per_px, min_height)


def render_flash_map_svg(flash_map: FlashMap, *, standalone: bool = True) -> str:
    """The SVG text of ``flash_map`` (with an XML declaration when ``standalone``)."""
    return template_environment().get_template("flash_map.svg.j2").render(
        map=flash_map, standalone=standalone)


def template_environment():
    """The jinja2 environment of the shipped templates (``idf_nvs_secure.templates``):
    StrictUndefined, autoescaping for .svg/.html templates."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("idf_nvs_secure.templates", ""),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "svg", "j2"]),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )

"""The flash map: layout model, SVG structure, `partitions show --svg`, optional PNG render."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.formats.partition_table import (
    APP_TYPE,
    DATA_TYPE,
    FACTORY_SUBTYPE,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    Partition,
    PartitionTable,
)
from idf_nvs_secure.views.flashmap import layout_flash_map, render_flash_map_svg

SVG = "{http://www.w3.org/2000/svg}"
MIB = 1024 * 1024

TABLE = PartitionTable((
    Partition("nvs", DATA_TYPE, NVS_SUBTYPE, 0x9000, 0x6000),
    Partition("factory", APP_TYPE, FACTORY_SUBTYPE, 0x10000, MIB),
    Partition("nvs_key", DATA_TYPE, NVS_KEYS_SUBTYPE, 0x120000, 0x1000, encrypted=True),
), 0x8000)

CSV = """# Name, Type, SubType, Offset, Size, Flags
nvs, data, nvs, , 0x6000,
phy_init, data, phy, , 0x1000,
factory, app, factory, , 1M,
nvs_key, data, nvs_keys, , 0x1000, encrypted
"""


def _regions(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    return {g.get("data-name") + "@" + g.get("data-offset"): g
            for g in root.iter(f"{SVG}g") if "region" in (g.get("class") or "").split()}


def test_layout_regions_in_flash_order():
    flash_map = layout_flash_map(TABLE, flash_size=4 * MIB, nvs_encrypted={"nvs"})
    kinds = [(b.kind, b.name, b.offset, b.size) for b in flash_map.boxes]
    assert kinds == [
        ("bootloader", "bootloader", 0, 0x8000),
        ("table", "partition table", 0x8000, 0x1000),
        ("nvs", "nvs", 0x9000, 0x6000),
        ("free", "free", 0xF000, 0x1000),
        ("app", "factory", 0x10000, MIB),
        ("free", "free", 0x110000, 0x10000),
        ("nvs_keys", "nvs_key", 0x120000, 0x1000),
        ("free", "free", 0x121000, 4 * MIB - 0x121000),
    ]
    # Boxes touch, small ones keep the minimum height, big ones are proportional.
    for above, below in zip(flash_map.boxes, flash_map.boxes[1:]):
        assert below.y == pytest.approx(above.y + above.height, abs=0.2)
    small = [b for b in flash_map.boxes if b.enlarged]
    assert small and all(b.height == flash_map.min_height for b in small)
    app = flash_map.boxes[4]
    assert not app.enlarged and app.height == pytest.approx(MIB / flash_map.bytes_per_px, abs=0.1)
    marks = {b.name: b.encryption for b in flash_map.boxes}
    assert marks["nvs"] == "NVS-encrypted" and marks["nvs_key"] == "flash-encrypted"
    assert marks["factory"] is None


def test_layout_without_flash_size_ends_at_last_partition():
    flash_map = layout_flash_map(TABLE)
    assert flash_map.flash_size == 0x121000
    assert flash_map.boxes[-1].name == "nvs_key"


def test_svg_structure():
    svg = render_flash_map_svg(layout_flash_map(TABLE, flash_size=4 * MIB, nvs_encrypted={"nvs"}))
    regions = _regions(svg)
    for name, offset in (("nvs", "0x9000"), ("factory", "0x10000"), ("nvs_key", "0x120000"),
                         ("bootloader", "0x0"), ("partition table", "0x8000")):
        group = regions[f"{name}@{offset}"]
        assert group.find(f"{SVG}rect") is not None
        texts = ["".join(t.itertext()) for t in group.iter(f"{SVG}text")]
        assert name in texts
    free = [g for key, g in regions.items() if key.startswith("free@")]
    assert len(free) == 3 and all("free" in g.get("class") for g in free)
    assert "unused flash" in "".join(free[-1].itertext())
    for name in ("nvs@0x9000", "nvs_key@0x120000"):
        assert regions[name].find(f"{SVG}g[@class='encrypted-marker']") is not None
    assert regions["factory@0x10000"].find(f"{SVG}g[@class='encrypted-marker']") is None
    assert "drawn at least 26 px tall" in svg  # the legend explains enlarged boxes
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_svg_escapes_names():
    table = PartitionTable((Partition("a<b&c", DATA_TYPE, NVS_SUBTYPE, 0x9000, 0x3000),), 0x8000)
    regions = _regions(render_flash_map_svg(layout_flash_map(table)))
    assert "a<b&c@0x9000" in regions


def test_cli_show_svg(tmp_path):
    source = tmp_path / "partitions.csv"
    source.write_text(CSV)
    out = tmp_path / "map.svg"
    result = CliRunner().invoke(cli, ["partitions", "show", str(source), "--svg", str(out),
                                      "--flash-size", "4MB"])
    assert result.exit_code == 0, result.output
    regions = _regions(out.read_text())
    assert {key.split("@")[0] for key in regions} >= {"nvs", "phy_init", "factory", "nvs_key", "free"}
    assert regions["nvs_key@0x110000"].find(f"{SVG}g[@class='encrypted-marker']") is not None


def _converter():
    for tool in ("rsvg-convert", "inkscape"):
        if shutil.which(tool):
            return tool
    try:
        import cairosvg  # noqa: F401
        return "cairosvg"
    except ImportError:
        return None


@pytest.mark.skipif(_converter() is None, reason="no SVG converter (rsvg-convert, inkscape, cairosvg)")
def test_svg_renders_to_png(tmp_path):
    svg = tmp_path / "map.svg"
    svg.write_text(render_flash_map_svg(layout_flash_map(TABLE, flash_size=4 * MIB)))
    png = tmp_path / "map.png"
    tool = _converter()
    if tool == "rsvg-convert":
        subprocess.run([tool, str(svg), "-o", str(png)], check=True, timeout=60)
    elif tool == "inkscape":
        subprocess.run([tool, str(svg), "--export-filename", str(png)], check=True, timeout=120)
    else:
        import cairosvg
        cairosvg.svg2png(url=str(svg), write_to=str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Issue 15, finding 2: the flash map of a built table is drawn where the table is.

The example's ``pro`` table sits at 0xd000 (sdkconfig.defaults); its .bin does not say
so, and ``partitions show`` drew it at 0x8000 with 0x9000-0xe000 as "free 20 KB".  Now a
.bin takes ``--table-offset`` (and a note says the offset is not recorded when it is not
given), and a project folder takes ``--product``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli

from fixture_projects import copy_example_project


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A copy of example_project with its ``pro`` product built into ``out``."""
    root = tmp_path_factory.mktemp("map")
    project = copy_example_project(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("EXAMPLE_WIFI_PASSWORD", "map-test")
    mp.delenv("IDF_TARGET", raising=False)
    try:
        result = CliRunner().invoke(cli, ["build", str(project), "--product", "pro",
                                          "-o", str(root / "out" / "pro")])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    return root


def _regions(svg: str) -> dict[str, str]:
    """name -> data-offset of every region the map draws (free ones as free@offset)."""
    found = re.findall(r'data-name="([^"]+)"\s+data-offset="(0x[0-9a-f]+)"', svg)
    return {(f"free@{off}" if name == "free" else name): off for name, off in found}


def _show(*args: str):
    return CliRunner().invoke(cli, ["partitions", "show", *map(str, args)])


def test_a_bin_without_offset_says_where_it_is_drawn(built):
    result = _show(built / "out/pro/partition-table.bin", "--svg", built / "a.svg")
    assert result.exit_code == 0, result.output
    assert ("does not record the flash offset it is written at: shown at 0x8000 "
            "(CONFIG_PARTITION_TABLE_OFFSET's default); give --table-offset") in result.stderr


def test_a_bin_with_its_table_offset_is_drawn_there(built):
    result = _show(built / "out/pro/partition-table.bin", "--table-offset", "0xd000",
                   "--svg", built / "b.svg")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    assert result.stdout.startswith("Partition table at 0xd000")
    regions = _regions((built / "b.svg").read_text())
    assert regions["partition table"] == "0xd000"
    assert "free@0x9000" not in regions  # the table's real place is not "free 20 KB"


def test_a_project_shows_the_products_table(built):
    result = _show(built / "project", "--product", "pro", "--svg", built / "c.svg")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Partition table at 0xd000")
    regions = _regions((built / "c.svg").read_text())
    assert regions["partition table"] == "0xd000" and regions["nvs_keys"] == "0x21000"
    assert "Flash map: project (pro)" in (built / "c.svg").read_text()
    # the same map as the built binary at its real offset
    assert regions == _regions((built / "b.svg").read_text())


def test_product_needs_a_project(built):
    result = _show(built / "project/partitions.yaml", "--product", "pro")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: {built / 'project/partitions.yaml'}: --product needs a project folder "
        "(with nvs_secure.yaml), not a partitions file")


def test_a_folder_without_a_project_file_says_what_to_give(tmp_path):
    result = _show(tmp_path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}: a folder without nvs_secure.yaml",
        "hint: give a partitions file (.csv, .yaml), a built table (.bin) or a project "
        "folder with nvs_secure.yaml"]



def test_the_map_writes_offsets_as_every_other_command_does(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path)
    out = tmp_path / "m.svg"
    result = CliRunner().invoke(cli, ["partitions", "show", str(project / "partitions.yaml"),
                                      "--svg", str(out)])
    assert result.exit_code == 0, result.output
    offsets = re.findall(r'class="offset[^"]*"[^>]*>(0x[0-9a-f]+)<', out.read_text())
    assert "0xe000" in offsets and not any(re.fullmatch("0x0[0-9a-f]+", o) for o in offsets)


def test_a_project_map_marks_what_its_plan_encrypts(tmp_path: Path) -> None:
    # The same marks as the report's map: with flash encryption on (the example's esp32
    # defaults) the bootloader, table, otadata, apps and nvs_keys; nvs under NVS encryption.
    project = copy_example_project(tmp_path)
    out = tmp_path / "m.svg"
    result = CliRunner().invoke(cli, ["partitions", "show", str(project), "--product", "pro",
                                      "--svg", str(out)])
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    marked = set(re.findall(r'<g class="region [^"]*\bencrypted\b[^"]*" data-name="([^"]+)"', svg))
    assert marked == {"bootloader", "partition table", "nvs", "otadata", "nvs_keys",
                      "ota_0", "ota_1"}, marked
    assert svg.count(">NVS-encrypted<") == 1

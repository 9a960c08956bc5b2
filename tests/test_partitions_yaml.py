"""partitions.yaml: same model and binary as CSV, extras (rest, align, nvs_keys_for),
lossless conversion, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.partition_table import build_partition_table
from idf_nvs_secure.inputs.partition_csv import (
    parse_partition_csv,
    parse_partition_csv_specs,
)
from idf_nvs_secure.inputs.partitions_yaml import (
    format_partitions_yaml,
    pair_nvs_keys,
    parse_partitions_yaml,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "partition_tables"
CASES = sorted(p for p in GOLDEN.glob("0*.csv") if not p.name.endswith(".roundtrip.csv"))


def _offset(csv: Path) -> int:
    return 0x10000 if csv.name.startswith("05_") else 0x8000


@pytest.mark.parametrize("csv", CASES, ids=lambda p: p.stem)
def test_yaml_equivalent_of_every_golden_csv_gives_the_same_binary(csv):
    specs = parse_partition_csv_specs(csv.read_text(), filename=csv.name)
    text = format_partitions_yaml(specs, table_offset=_offset(csv))
    parsed = parse_partitions_yaml(text, filename="p.yaml")
    assert build_partition_table(parsed.table) == csv.with_suffix(".bin").read_bytes()
    # and back: YAML -> placed table is the same table the CSV gives
    assert parsed.table == parse_partition_csv(csv.read_text(), filename=csv.name,
                                               table_offset=_offset(csv))


def test_handwritten_yaml_with_rest_align_and_pairing():
    text = """\
table: {offset: 0x8000, flash_size: 4MB}
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 24K}
  - {name: factory_nvs, type: data, subtype: nvs, size: 0x3000}
  - name: keys
    type: data
    subtype: nvs_keys
    size: 4K
    flags: [encrypted]
    nvs_keys_for: factory_nvs
  - {name: factory, type: app, subtype: factory, size: 1M}
  - {name: big, type: data, subtype: fat, size: 64K, align: 0x40000}
  - {name: storage, type: data, subtype: spiffs, size: rest}
"""
    parsed = parse_partitions_yaml(text, filename="p.yaml")
    table = parsed.table
    assert table.find("big").offset % 0x40000 == 0
    assert table.find("storage").end == 4 * 1024 * 1024
    assert parsed.nvs_keys_for == {"keys": "factory_nvs"}
    assert pair_nvs_keys(table, parsed.nvs_keys_for) == {"factory_nvs": "keys"}


def test_default_pairing_is_the_nvs_partition():
    text = """\
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 24K}
  - {name: other, type: data, subtype: nvs, size: 24K}
  - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted]}
"""
    table = parse_partitions_yaml(text, filename="p.yaml").table
    assert pair_nvs_keys(table) == {"nvs": "nvs_keys"}


@pytest.mark.parametrize("text, where, message", [
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 24K, flagz: [x]}\n",
     "p.yaml:2:", "unknown field 'flagz'"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nosuch, size: 24K}\n",
     "p.yaml:2:", "unknown subtype 'nosuch'"),
    ("partitions:\n  - {name: nvs, type: dat, subtype: nvs, size: 24K}\n",
     "p.yaml:2:", "unknown partition type 'dat'"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: lots}\n",
     "p.yaml:2:", "size 'lots'"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 24K}\n"
     "  - {name: k, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted],"
     " nvs_keys_for: nope}\n", "p.yaml:3:", "not an NVS partition"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 24K, nvs_keys_for: x}\n",
     "p.yaml:2:", "nvs_keys_for belongs on an nvs_keys partition"),
    ("partitions:\n  - {name: a_name_longer_than_16, type: data, subtype: nvs, size: 24K}\n",
     "p.yaml:2", "a_name_longer_than_16"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: rest}\n",
     "p.yaml:2", "flash"),
    ("partitions: [\n", "p.yaml:2:", "YAML syntax error"),
    ("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 24K}\n"
     "partitions: []\n", "p.yaml:3:1", "duplicate key 'partitions'"),
])
def test_errors_are_located(text, where, message):
    with pytest.raises(InputError) as info:
        parse_partitions_yaml(text, filename="p.yaml")
    assert str(info.value).startswith(where), str(info.value)
    assert message in str(info.value)


# --- CLI: build from YAML, convert both ways --------------------------------------------

from click.testing import CliRunner  # noqa: E402

from idf_nvs_secure.app.cli import cli  # noqa: E402


@pytest.mark.parametrize("csv", CASES, ids=lambda p: p.stem)
def test_cli_convert_is_lossless_both_ways(tmp_path, csv):
    runner = CliRunner()
    yaml_file, bin_file, back = tmp_path / "p.yaml", tmp_path / "p.bin", tmp_path / "back.csv"
    args = ["--offset", "0x10000"] if csv.name.startswith("05_") else []
    result = runner.invoke(cli, ["partitions", "convert", str(csv), "-o", str(yaml_file), *args])
    assert result.exit_code == 0, result.output
    first = yaml_file.read_text().splitlines()[0]
    assert first.startswith("# Schema: idf_nvs_secure/inputs/schemas/partitions.schema.json")
    assert "$schema" not in yaml_file.read_text() and str(Path.home()) not in first
    result = runner.invoke(cli, ["partitions", "build", str(yaml_file), "-o", str(bin_file)])
    assert result.exit_code == 0, result.output
    assert bin_file.read_bytes() == csv.with_suffix(".bin").read_bytes()
    result = runner.invoke(cli, ["partitions", "convert", str(yaml_file), "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert back.read_text() == csv.with_name(csv.stem + ".roundtrip.csv").read_text()


def test_cli_yaml_error_is_one_located_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 2K}\n")
    out = tmp_path / "p.bin"
    result = CliRunner().invoke(cli, ["partitions", "build", str(bad), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}:2")
    assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(cli, ["partitions", "convert", str(bad), "-o", str(tmp_path / "x.txt")])
    assert result.exit_code == 2

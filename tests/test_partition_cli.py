"""``idf-nvs-secure partitions`` in-process: exit codes, files, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli

GOLDEN = Path(__file__).resolve().parent / "golden" / "partition_tables"


def run(*args: str):
    return CliRunner().invoke(cli, ["partitions", *map(str, args)])


def assert_user_error(result, location: str):
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {location}"), lines
    assert [line for line in lines if line.startswith("error: ")] == [lines[0]]
    assert all(line.startswith("hint: ") for line in lines[1:]), lines
    assert "Traceback" not in result.output


@pytest.fixture
def work(tmp_path) -> Path:
    shutil.copytree(GOLDEN, tmp_path / "golden")
    return tmp_path


@pytest.mark.parametrize("stem", ["01_single_app_encrypted_nvs", "05_table_offset_0x10000",
                                  "08_negative_size_fill"])
def test_build_writes_golden_bin_and_csv(work, stem):
    offset = "0x10000" if stem.startswith("05") else "0x8000"
    out, csv = work / "out" / "t.bin", work / "t.csv"
    result = run("build", work / "golden" / f"{stem}.csv", "-o", out, "--csv", csv,
                 "--offset", offset, "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (GOLDEN / f"{stem}.bin").read_bytes()
    assert csv.read_text() == (GOLDEN / f"{stem}.roundtrip.csv").read_text()
    assert "wrote" in result.stdout


def test_build_without_md5(work):
    out = work / "t.bin"
    result = run("build", work / "golden" / "02_two_ota_encrypted_nvs.csv", "-o", out, "--no-md5")
    assert result.exit_code == 0
    assert b"\xeb\xeb" not in out.read_bytes()


@pytest.mark.parametrize("name, line, extra", [
    ("app_misaligned.csv", 2, []),
    ("overlap.csv", 2, []),
    ("unknown_subtype.csv", "1:12", []),
    ("too_big_for_2MB.csv", 1, ["--flash-size", "2MB"]),
])
def test_build_rejects_invalid_and_writes_nothing(work, name, line, extra):
    source = work / "golden" / "invalid" / name
    out, csv = work / "out.bin", work / "out.csv"
    result = run("build", source, "-o", out, "--csv", csv, *extra)
    assert_user_error(result, f"{source}:{line}: partition '")
    assert not out.exists() and not csv.exists()
    assert sorted(p.name for p in work.iterdir()) == ["golden"]  # no temporary files either


def test_build_rejects_bin_input(work):
    out = work / "out.bin"
    result = run("build", work / "golden" / "01_single_app_encrypted_nvs.bin", "-o", out)
    assert_user_error(result, f"{work / 'golden' / '01_single_app_encrypted_nvs.bin'}: ")
    assert "already built" in result.stderr and not out.exists()


def test_build_missing_input(work):
    result = run("build", work / "nope.csv", "-o", work / "out.bin")
    assert_user_error(result, f"{work / 'nope.csv'}: no such file")


def test_build_bad_flash_size(work):
    result = run("build", work / "golden" / "01_single_app_encrypted_nvs.csv",
                 "-o", work / "o.bin", "--flash-size", "huge")
    assert_user_error(result, "invalid flash size 'huge'")
    assert not (work / "o.bin").exists()


def test_build_too_many_partitions_names_the_file(work):
    rows = "".join(f"p{i}, data, fat, , 4K\n" for i in range(95))
    source = work / "many.csv"
    source.write_text(rows)
    result = run("build", source, "-o", work / "o.bin")
    assert_user_error(result, f"{source}: 95 partitions do not fit")
    assert run("build", source, "-o", work / "o.bin", "--no-md5").exit_code == 0


def test_bad_offset_option_is_a_usage_error(work):
    result = run("build", work / "golden" / "01_single_app_encrypted_nvs.csv",
                 "-o", work / "o.bin", "--offset", "eight")
    assert result.exit_code == 2 and "not a number" in result.output


def test_show_text(work):
    result = run("show", work / "golden" / "03_units_and_flags.csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Partition table at 0x8000, 9 partitions, ending at 0x3f2000"
    assert lines[1].split() == ["Name", "Type", "SubType", "Offset", "Size", "Flags"]
    assert lines[3].split() == ["fctry", "data", "nvs", "0xf000", "0x3000", "(12", "KB)",
                                "readonly"]


@pytest.mark.parametrize("stem", ["04_custom_types", "05_table_offset_0x10000"])
def test_show_json_same_for_csv_and_bin(work, stem):
    offset = ["--offset", "0x10000"] if stem.startswith("05") else []
    from_csv = run("show", work / "golden" / f"{stem}.csv", "--json", *offset)
    from_bin = run("show", work / "golden" / f"{stem}.bin", "--json", *offset)
    assert from_csv.exit_code == from_bin.exit_code == 0, from_csv.output + from_bin.output
    data = json.loads(from_csv.stdout)
    assert data == json.loads(from_bin.stdout)
    if stem.startswith("04"):
        assert data["table_offset"] == 0x8000
        assert data["partitions"][0] == {"name": "nvs", "type": "data", "subtype": "nvs",
                                         "offset": 0x9000, "size": 0x6000, "flags": []}
        assert data["partitions"][4] == {"name": "custom", "type": 64, "subtype": 1,
                                         "offset": 0x190000, "size": 0x4000, "flags": []}
    else:
        assert data["table_offset"] == 0x10000
        assert data["partitions"][1]["flags"] == ["encrypted"]


def test_show_corrupt_bin(work):
    blob = bytearray((GOLDEN / "01_single_app_encrypted_nvs.bin").read_bytes())
    blob[40] ^= 0xFF
    source = work / "bad.bin"
    source.write_bytes(bytes(blob))
    result = run("show", source)
    assert_user_error(result, f"{source}: record 4: MD5 mismatch")


def test_show_bin_checks_flash_size(work):
    result = run("show", work / "golden" / "06_many_ota.bin", "--flash-size", "4MB")
    assert_user_error(result, f"{work / 'golden' / '06_many_ota.bin'}: partition 'ota_3'")


def test_show_invalid_csv(work):
    source = work / "golden" / "invalid" / "duplicate_name.csv"
    assert_user_error(run("show", source), f"{source}:2: partition 'nvs'")


# --- --secure and the name warnings ---------------------------------------------------

SHORT_APP = "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x11000,\n"


@pytest.mark.parametrize("secure", [["--secure", "v1"], ["--secure"]])
def test_secure_v1_refuses_a_4k_app_and_writes_nothing(tmp_path, secure):
    src, out = tmp_path / "p.csv", tmp_path / "p.bin"
    src.write_text(SHORT_APP)
    result = run("build", src, "-o", out, *secure)
    assert_user_error(result, f"{src}:2: partition 'factory': size 0x11000 is not a multiple "
                              "of 0x10000 (Secure Boot V1")
    assert "use 0x20000" in result.stderr
    assert not out.exists()


def test_secure_v2_and_none_accept_whole_sectors(tmp_path):
    src = tmp_path / "p.csv"
    src.write_text(SHORT_APP)
    for extra in ([], ["--secure", "v2"]):
        result = run("build", src, "-o", tmp_path / "p.bin", *extra)
        assert result.exit_code == 0, result.output


def test_secure_checks_a_built_bin_and_yaml(tmp_path):
    src, out = tmp_path / "p.csv", tmp_path / "p.bin"
    src.write_text(SHORT_APP)
    assert run("build", src, "-o", out).exit_code == 0
    assert_user_error(run("show", out, "--secure", "v1"), f"{out}: partition 'factory'")
    yaml_src = tmp_path / "p.yaml"
    yaml_src.write_text("partitions:\n  - {name: nvs, type: data, subtype: nvs, size: 24K}\n"
                        "  - {name: factory, type: app, subtype: factory, size: 0x11000}\n")
    assert_user_error(run("build", yaml_src, "-o", tmp_path / "y.bin", "--secure", "v1"),
                      f"{yaml_src}:3")


def test_name_warnings_are_printed_at_the_row_and_do_not_fail(tmp_path):
    src, out = tmp_path / "p.csv", tmp_path / "p.bin"
    src.write_text("phy, data, nvs, , 0x6000,\ndata, app, factory, , 1M,\n")
    result = run("build", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {src}:1: partition 'phy': the name is a subtype name (data/phy), but the "
        "partition is data/nvs; a mistake in the table?",
        f"warning: {src}:2: partition 'data': the name is the partition type 'data', but the "
        "partition is app/factory; a mistake in the table?",
    ]
    assert out.exists()
    shown = run("show", out)
    assert shown.exit_code == 0
    assert f"warning: {out}: partition 'phy'" in shown.stderr


# --- convert TABLE.bin -o table.csv|.yaml ------------------------------------------------

@pytest.mark.parametrize("stem", sorted(p.stem for p in GOLDEN.glob("*.bin")))
def test_convert_bin_to_csv_and_yaml_builds_back_byte_identical(tmp_path, stem):
    binary = GOLDEN / f"{stem}.bin"
    offset = ["--offset", "0x10000"] if stem.startswith("05") else []
    csv, yaml_out = tmp_path / "t.csv", tmp_path / "t.yaml"
    assert run("convert", binary, "-o", csv).exit_code == 0
    # the CSV is what gen_esp32part.py writes for the .bin
    assert csv.read_text() == (GOLDEN / f"{stem}.roundtrip.csv").read_text()
    result = run("convert", binary, "-o", yaml_out, *offset)
    assert result.exit_code == 0, result.output
    for source in (csv, yaml_out):
        out = tmp_path / f"{source.suffix[1:]}.bin"
        result = run("build", source, "-o", out, *offset)
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == binary.read_bytes()


def test_convert_bin_without_md5_says_how_to_rebuild(tmp_path):
    binary = tmp_path / "t.bin"
    assert run("build", GOLDEN / "02_two_ota_encrypted_nvs.csv", "-o", binary,
               "--no-md5").exit_code == 0
    result = run("convert", binary, "-o", tmp_path / "t.yaml")
    assert result.exit_code == 0
    assert f"note: {binary} has no MD5 entry: build it back with --no-md5" in result.stderr
    again = tmp_path / "again.bin"
    assert run("build", tmp_path / "t.yaml", "-o", again, "--no-md5").exit_code == 0
    assert again.read_bytes() == binary.read_bytes()


def test_convert_corrupt_bin_is_one_line_and_writes_nothing(tmp_path):
    binary = tmp_path / "bad.bin"
    binary.write_bytes(b"\x00" * 0xC00)
    result = run("convert", binary, "-o", tmp_path / "t.csv")
    assert_user_error(result, f"{binary}: record 0")
    assert not (tmp_path / "t.csv").exists()


def test_convert_bin_with_bootloader_entries_builds_back_from_yaml(tmp_path):
    src, binary = tmp_path / "bl.csv", tmp_path / "bl.bin"
    src.write_text("bootloader, bootloader, primary, N/A, N/A\n"
                   "partition_table, partition_table, primary, N/A, N/A\n"
                   "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 1M\n")
    boot = ["--primary-bootloader-offset", "0x1000"]
    assert run("build", src, "-o", binary, *boot).exit_code == 0
    for suffix in ("yaml", "csv"):
        converted = tmp_path / f"t.{suffix}"
        assert run("convert", binary, "-o", converted).exit_code == 0
        again = tmp_path / f"{suffix}.bin"
        result = run("build", converted, "-o", again, *boot)
        assert result.exit_code == 0, result.output
        assert again.read_bytes() == binary.read_bytes()

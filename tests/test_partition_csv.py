"""ESP-IDF partition CSV: the dialect, placement, and the invalid-table folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from idf_nvs_secure.errors import CapacityError, InputError
from idf_nvs_secure.formats.partition_table import (
    APP_TYPE,
    BOOTLOADER_TYPE,
    DATA_TYPE,
    PARTITION_TABLE_TYPE,
    TEE_OTA_SUBTYPE,
    UNDEFINED_SUBTYPE,
    Partition,
    build_partition_table,
    parse_partition_table,
)
from idf_nvs_secure.inputs.partition_csv import (
    PartitionSpec,
    parse_partition_csv,
    parse_partition_csv_specs,
    parse_partition_specs,
    parse_size,
    place_partitions,
)

INVALID = Path(__file__).resolve().parent / "golden" / "partition_tables" / "invalid"


def _csv(text: str, **kw):
    kw.setdefault("variables", {})
    return parse_partition_csv(text, filename="p.csv", **kw)


def _error(text: str, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        _csv(text, **kw)
    return info.value


# --- the invalid folder: every file, its line, and what the message must say ---------

# file -> (line, col, substrings of the message, substring of the hint or None)
INVALID_EXPECTED = {
    "app_misaligned.csv": (2, None, ["partition 'factory'", "offset 0x11000 is not aligned to "
                                     "0x10000", "app partitions need 64 KB alignment"],
                           "use 0x20000"),
    "below_table.csv": (1, None, ["partition 'nvs'", "offset 0x7000",
                                  "partition table sector 0x8000-0x8fff"], "0x9000 or higher"),
    "data_misaligned.csv": (1, None, ["partition 'nvs'", "offset 0x9001 is not aligned to 0x1000",
                                      "data partitions need 4 KB alignment"], "0xa000"),
    "duplicate_name.csv": (2, None, ["partition 'nvs'", "name is used twice", "see line 1"],
                           "rename"),
    "name_too_long.csv": (1, None, ["partition 'a_name_longer_than_16'", "21 bytes",
                                    "16-byte label"], "at most 16"),
    "nvs_too_small.csv": (1, None, ["partition 'nvs'", "read/write NVS partition needs at least "
                                    "0x3000", "has 0x2000"], "readonly"),
    "otadata_size.csv": (2, None, ["partition 'otadata'", "exactly 0x2000", "has 0x1000"],
                         "0x2000"),
    "overlap.csv": (2, None, ["partition 'phy'", "offset 0xe000 overlaps the previous partition "
                              "'nvs', which ends at 0xf000"], "0xf000 or higher"),
    "too_big_for_2MB.csv": (1, None, ["partition 'factory'", "ends at 0x410000",
                                      "2 MB flash (0x200000)"], "flash size"),
    "unknown_subtype.csv": (1, 12, ["partition 'nvs'", "unknown data subtype 'nosuchsubtype'"],
                            "nvs_keys"),
}


def test_every_invalid_file_has_expectations():
    assert {p.name for p in INVALID.glob("*.csv")} == set(INVALID_EXPECTED)


@pytest.mark.parametrize("name", sorted(INVALID_EXPECTED))
def test_invalid_tables_are_rejected(name):
    line, col, parts, hint = INVALID_EXPECTED[name]
    flash = 2 * 1024 * 1024 if "2MB" in name else None
    with pytest.raises(InputError) as info:
        parse_partition_csv((INVALID / name).read_text(), filename=name, flash_size=flash,
                            variables={})
    error = info.value
    assert (error.file, error.line, error.col) == (name, line, col)
    for part in parts:
        assert part in error.message
    assert str(error).startswith(f"{name}:{line}")
    if hint:
        assert hint in error.hint
    if flash:
        assert isinstance(error, CapacityError)


def test_too_big_fits_in_a_larger_flash():
    table = _csv((INVALID / "too_big_for_2MB.csv").read_text(), flash_size=8 << 20)
    assert table.find("nvs").end == 0x416000


# --- numbers ------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("0x1000", 0x1000), ("4096", 4096), ("4K", 4096), ("4k", 4096), ("1M", 1 << 20),
    ("1m", 1 << 20), ("0x10K", 0x4000), ("-0x200000", -0x200000), ("-2M", -(2 << 20)),
    (" 12K ", 12288), ("0o10", 8), ("0b100", 4),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "1.5M", "4KB", "abc", "0x", "010"])
def test_parse_size_rejects(text):
    with pytest.raises(InputError, match="invalid number"):
        parse_size(text)


def test_sizes_in_every_notation_give_the_same_table():
    forms = ["0x6000", "24576", "24K", "24k", "0x18K"]
    tables = {_csv(f"nvs, data, nvs, , {f}\n") for f in forms}
    assert len(tables) == 1
    assert tables.pop().partitions[0].size == 0x6000


# --- the dialect --------------------------------------------------------------------

def test_comments_blank_lines_and_line_numbers():
    text = ("# header comment\n\n   \n  # indented comment\n"
            "nvs, data, nvs, , 0x6000\n\n# between\nbad, data, nvs, , 0x1000\n")
    error = _error(text)
    assert error.line == 8 and "partition 'bad'" in error.message


def test_short_rows_and_defaults():
    specs = parse_partition_csv_specs("blob, data, , , 4K\nx, 0x40,,,4K\n", variables={})
    assert specs[0].subtype == UNDEFINED_SUBTYPE and specs[1].subtype == UNDEFINED_SUBTYPE
    error = _error("blob, data\n")
    assert "size is empty" in error.message and error.line == 1


@pytest.mark.parametrize("row, match, col", [
    (", data, nvs, , 0x6000", "name is empty", 1),
    ("nvs, , nvs, , 0x6000", "type is empty", 6),
    ("nvs, dada, nvs, , 0x6000", "unknown type 'dada'", 6),
    ("nvs, 0xff, 1, , 0x6000", "type 0xff is out of range", 6),
    ("f, app, , , 1M", "app partition needs a subtype", 9),
    ("f, app, nvs, , 1M", "unknown app subtype 'nvs'", 9),
    ("c, 0x40, foo, , 4K", "unknown type 0x40 subtype 'foo'", 10),
    ("c, 0x40, 0x100, , 4K", "subtype 0x100 is out of range", 10),
    ("nvs, data, nvs, zz, 0x6000", "offset: invalid number 'zz'", 17),
    ("nvs, data, nvs, -0x1000, 0x6000", "offset -0x1000 is negative", 17),
    ("nvs, data, nvs, , 1.5M", "size: invalid number '1.5M'", 19),
    ("nvs, data, nvs, , 0x6000, secret", "unknown flag 'secret'", 27),
    ("nvs, data, nvs, , 0x6000, encrypted, readonly", "unexpected seventh column 'readonly'", 38),
])
def test_row_errors_carry_line_and_column(row, match, col):
    error = _error("# a comment\n" + row + "\n")
    assert match in error.message
    assert (error.file, error.line, error.col) == ("p.csv", 2, col)


def test_flags_column():
    table = _csv("a, data, nvs, , 0x6000, encrypted:readonly\n"
                 "b, data, nvs, , 0x6000,  readonly:encrypted \n"
                 "c, data, nvs, , 0x6000, encrypted,\n"
                 "d, data, nvs, , 0x6000,\n")
    flags = [p.flags for p in table.partitions]
    assert flags == [("encrypted", "readonly"), ("encrypted", "readonly"), ("encrypted",), ()]


def test_spaces_around_the_flag_colon_are_refused_at_the_piece():
    error = _error("nvs, data, nvs, , 0x6000, encrypted : readonly\n")
    assert "unknown flag 'encrypted '" in error.message
    assert error.col == 27
    assert "no spaces around ':'" in error.hint
    error = _error("nvs, data, nvs, , 0x6000, encrypted: readonly\n")
    assert "unknown flag ' readonly'" in error.message
    assert error.col == 37


def test_type_and_subtype_names_are_case_insensitive_and_numbers_work():
    table = _csv("a, DATA, NVS, , 0x6000\nb, Data, 0x99, , 4K\nc, 1, 2, , 0x3000\n"
                 "f, App, Factory, , 1M\ng, 0, 0x20, , 1M\nh, 254, 254, , 4K\n")
    got = [(p.type, p.subtype) for p in table.partitions]
    assert got == [(1, 2), (1, 0x99), (1, 2), (0, 0), (0, 0x20), (0xFE, 0xFE)]
    assert [p.subtype_name for p in table.partitions][4] == "test"


def test_variables_expand_like_expandvars():
    text = "$NAME, data, nvs, , ${SIZE}\nkeys, data, nvs_keys, , $KEYSIZE, encrypted\n"
    table = _csv(text, variables={"NAME": "store", "SIZE": "24K", "KEYSIZE": "0x1000"})
    assert [(p.name, p.size) for p in table.partitions] == [("store", 0x6000), ("keys", 0x1000)]


def test_variables_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("IDF_NVS_SECURE_TEST_SIZE", "0x5000")
    table = parse_partition_csv("nvs, data, nvs, , $IDF_NVS_SECURE_TEST_SIZE\n")
    assert table.partitions[0].size == 0x5000


def test_unknown_variable_is_an_error_with_its_column():
    error = _error("# $NOT_A_PROBLEM in a comment\nnvs, data, nvs, , ${MISSING}\n")
    assert error.message == "unknown variable $MISSING"
    assert (error.line, error.col) == (2, 19)
    assert "set MISSING" in error.hint


def test_variable_can_comment_out_a_row():
    table = _csv("${OFF}junk, data, nvs, , 4K\nnvs, data, nvs, , 24K\n", variables={"OFF": "#"})
    assert [p.name for p in table.partitions] == ["nvs"]


def test_error_in_a_row_with_variables_has_no_column():
    error = _error("nvs, data, $SUB, , 24K\n", variables={"SUB": "nope"})
    assert "unknown data subtype 'nope'" in error.message and error.col is None


def test_empty_csv_has_no_partitions():
    assert "no partitions" in _error("# nothing\n\n").message


# --- placement ----------------------------------------------------------------------

def test_placement_alignment_and_explicit_offsets():
    table = _csv("nvs, data, nvs, , 0x5000\nphy, data, phy, , 4K\nf, app, factory, , 1M\n"
                 "late, data, fat, 0x200000, 64K\nnext, data, fat, , 4K\nt, app, test, , 4K\n")
    assert [hex(p.offset) for p in table.partitions] == [
        "0x9000", "0xe000", "0x10000", "0x200000", "0x210000", "0x220000"]


def test_negative_size_means_up_to_an_end_offset():
    table = _csv("nvs, data, nvs, , 24K\nf, app, factory, , -0x200000\n")
    assert table.find("f") == Partition("f", APP_TYPE, 0, 0x10000, 0x1F0000)
    error = _error("nvs, data, nvs, 0x300000, -0x200000\n")
    assert "partition 'nvs': size -0x200000 means 'up to offset 0x200000'" in error.message
    assert error.line == 1


def test_table_offset_moves_automatic_offsets():
    text = "nvs, data, nvs, , 24K\nf, app, factory, , 1M\n"
    assert [p.offset for p in _csv(text, table_offset=0xF000).partitions] == [0x10000, 0x20000]
    with pytest.raises(InputError, match="not a multiple of 0x1000"):
        _csv(text, table_offset=0x8800)


def test_rest_size_and_align_from_specs():
    specs = [PartitionSpec("nvs", DATA_TYPE, 2, None, 0x6000, file="t.yaml", line=3),
             PartitionSpec("big", DATA_TYPE, 0x81, None, "rest", align=0x10000,
                           file="t.yaml", line=4)]
    table = place_partitions(specs, flash_size=4 << 20)
    assert table.find("big") == Partition("big", DATA_TYPE, 0x81, 0x10000, (4 << 20) - 0x10000)
    with pytest.raises(InputError, match="'rest' needs the flash size") as info:
        place_partitions(specs)
    assert (info.value.file, info.value.line) == ("t.yaml", 4)
    odd = PartitionSpec("odd", DATA_TYPE, 0x81, 0x11000, 0x1000, align=0x10000, line=9)
    with pytest.raises(InputError, match="not aligned to 0x10000 \\(its align setting\\)"):
        place_partitions([odd])


def test_model_errors_point_at_the_spec_line():
    specs = [PartitionSpec("a", DATA_TYPE, 0x81, 0x20000, 0x1000, file="t.yaml", line=5),
             PartitionSpec("b", DATA_TYPE, 0x81, None, 0x1000, file="t.yaml", line=6, col=3),
             PartitionSpec("b", DATA_TYPE, 0x81, None, 0x1000, file="t.yaml", line=7, col=3)]
    with pytest.raises(InputError) as info:
        place_partitions(specs)
    assert str(info.value).startswith("t.yaml:7:3: partition 'b': the name is used twice")
    assert "(see line 6)" in info.value.message


# --- bootloader, partition_table, TEE -----------------------------------------------

BOOTLOADER_CSV = """\
bootloader,       bootloader,       primary, N/A, N/A
partition_table,  partition_table,  primary, N/A, N/A
FactoryApp,       app,              factory, ,    1M
OtaBTLDR,         bootloader,       ota,     ,    N/A
OtaPrtTable,      partition_table,  ota,     ,    N/A
RecoveryBTLDR,    bootloader,       recovery, N/A, N/A
"""


def test_bootloader_and_partition_table_entries_like_esp_idf():
    # The same case as ESP-IDF's test_bootloader_and_part_table_partitions.
    table = _csv(BOOTLOADER_CSV, table_offset=0x9000, primary_bootloader_offset=0x1000,
                 recovery_bootloader_offset=0x200000)
    got = [(p.type, p.subtype, p.offset, p.size) for p in table.partitions]
    assert got == [(BOOTLOADER_TYPE, 0, 0x1000, 0x8000), (PARTITION_TABLE_TYPE, 0, 0x9000, 0x1000),
                   (APP_TYPE, 0, 0x10000, 0x100000), (BOOTLOADER_TYPE, 1, 0x110000, 0x8000),
                   (PARTITION_TABLE_TYPE, 1, 0x118000, 0x1000),
                   (BOOTLOADER_TYPE, 2, 0x200000, 0x8000)]
    assert len(build_partition_table(table)) == 0xC00


def test_bootloader_entries_need_the_bootloader_offset():
    error = _error(BOOTLOADER_CSV, table_offset=0x9000)
    assert error.line == 1 and "partition 'bootloader'" in error.message
    assert "--primary-bootloader-offset" in error.hint
    error = _error(BOOTLOADER_CSV, table_offset=0x9000, primary_bootloader_offset=0x1000)
    assert error.line == 6 and "recovery bootloader" in error.message
    with pytest.raises(InputError, match="not below the partition table offset"):
        _csv(BOOTLOADER_CSV, table_offset=0x9000, primary_bootloader_offset=0x9000)


def test_partition_table_entry_alone_needs_no_bootloader_offset():
    table = _csv("pt, partition_table, primary, , \nnvs, data, nvs, , 24K\n")
    assert [(p.offset, p.size) for p in table.partitions] == [(0x8000, 0x1000), (0x9000, 0x6000)]


def test_tee_partitions():
    text = ("tee_0, app, tee_0, , 256K\ntee_1, app, tee_1, , 256K\n"
            "tee_otadata, data, tee_ota, , 8K\nnvs, data, nvs, , 24K\n")
    table = _csv(text)
    assert [p.subtype for p in table.partitions] == [0x30, 0x31, TEE_OTA_SUBTYPE, 2]
    assert table.find("tee_otadata").offset == 0x90000
    error = _error(text.replace("8K", "4K"))
    assert error.line == 3 and "TEE otadata" in error.message and "exactly 0x2000" in error.message
    error = _error(text + "tee_otadata2, data, tee_ota, , 8K\n")
    assert error.line == 5 and "second TEE otadata" in error.message and "see line 3" in error.message


def test_readonly_otadata_and_coredump_are_rejected():
    error = _error("nvs, data, nvs, , 24K\notadata, data, ota, , 8K, readonly\n")
    assert error.line == 2 and "always read-write" in error.message
    error = _error("cd, data, coredump, , 64K, readonly\n")
    assert "partition 'cd'" in error.message and "always read-write" in error.message


def test_app_size_must_be_whole_sectors():
    error = _error("f, app, factory, , 0x1800\n")
    assert "partition 'f': size 0x1800 is not a multiple of 0x1000" in error.message


def test_zero_size_is_rejected():
    assert "size 0x0 is not positive" in _error("x, data, fat, , 0\n").message


# --- choosing a reader by extension --------------------------------------------------

def test_parse_partition_specs_by_extension():
    specs = parse_partition_specs("nvs, data, nvs, , 24K\n", filename="dir/t.CSV", variables={})
    assert specs[0].name == "nvs" and specs[0].file == "dir/t.CSV" and specs[0].line == 1
    with pytest.raises(InputError, match="binary partition table") as info:
        parse_partition_specs("", filename="t.bin")
    assert info.value.file == "t.bin" and "partitions show" in info.value.hint
    with pytest.raises(InputError, match="unknown partition source type '.txt'"):
        parse_partition_specs("", filename="t.txt")


def test_data_subtype_0xff_is_accepted_as_gen_esp32part_does():
    # ESP-IDF's flash-encryption example declares a raw data partition with subtype 0xff;
    # only *type* 0xff is reserved (the end-of-table marker).
    table = parse_partition_csv("nvs, data, nvs, , 0x6000,\nstorage, data, 0xff, , 0x1000, encrypted\n")
    assert table.find("storage").subtype == 0xFF and table.find("storage").encrypted
    assert parse_partition_table(build_partition_table(table)) == table

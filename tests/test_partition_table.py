"""Partition table binary format: goldens from gen_esp32part.py, round trips, errors."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idf_nvs_secure.errors import CapacityError, FormatError, InputError
from idf_nvs_secure.formats.partition_table import (
    APP_TYPE,
    DATA_TYPE,
    ENTRY_SIZE,
    MAX_NAME_LEN,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    OTA_DATA_SUBTYPE,
    PARTITION_TABLE_TYPE,
    SUBTYPES,
    TABLE_SIZE,
    TEE_OTA_SUBTYPE,
    TYPES,
    Partition,
    PartitionTable,
    build_partition_table,
    parse_flash_size,
    parse_partition_table,
    validate_partition_table,
)
from idf_nvs_secure.inputs.partition_csv import (
    PartitionSpec,
    format_partition_csv,
    parse_partition_csv,
    place_partitions,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "partition_tables"
GOLDEN_CSVS = sorted(p for p in GOLDEN.glob("[0-9][0-9]_*.csv")
                     if not p.name.endswith(".roundtrip.csv"))


def _table_offset(csv: Path) -> int:
    return 0x10000 if csv.name.startswith("05_") else 0x8000


def _from_csv(csv: Path) -> PartitionTable:
    return parse_partition_csv(csv.read_text(), filename=csv.name,
                               table_offset=_table_offset(csv), variables={})


def test_goldens_present():
    assert len(GOLDEN_CSVS) >= 8
    assert all(p.with_suffix(".bin").is_file() for p in GOLDEN_CSVS)
    assert all((GOLDEN / f"{p.stem}.roundtrip.csv").is_file() for p in GOLDEN_CSVS)


# --- goldens ------------------------------------------------------------------------

@pytest.mark.parametrize("csv", GOLDEN_CSVS, ids=lambda p: p.stem)
def test_golden_csv_builds_byte_exact(csv):
    assert build_partition_table(_from_csv(csv)) == csv.with_suffix(".bin").read_bytes()


@pytest.mark.parametrize("csv", GOLDEN_CSVS, ids=lambda p: p.stem)
def test_golden_bin_parses_to_csv_partitions(csv):
    blob = csv.with_suffix(".bin").read_bytes()
    parsed = parse_partition_table(blob, offset=_table_offset(csv))
    assert parsed == _from_csv(csv)
    assert build_partition_table(parsed) == blob
    roundtrip = GOLDEN / f"{csv.stem}.roundtrip.csv"
    assert format_partition_csv(parsed) == roundtrip.read_text()


@pytest.mark.parametrize("csv", GOLDEN_CSVS, ids=lambda p: p.stem)
def test_roundtrip_csv_reads_back_to_same_table(csv):
    roundtrip = (GOLDEN / f"{csv.stem}.roundtrip.csv").read_text()
    again = parse_partition_csv(roundtrip, table_offset=_table_offset(csv), variables={})
    assert again == _from_csv(csv)


def test_golden_01_decoded_fields():
    table = parse_partition_table((GOLDEN / "01_single_app_encrypted_nvs.bin").read_bytes())
    assert table.offset == 0x8000
    assert [p.name for p in table.partitions] == ["nvs", "phy_init", "factory", "nvs_key"]
    key = table.find("nvs_key")
    assert key == Partition("nvs_key", DATA_TYPE, NVS_KEYS_SUBTYPE, 0x110000, 0x1000,
                            encrypted=True)
    assert table.of_type(DATA_TYPE, NVS_SUBTYPE) == (table.partitions[0],)
    assert len(table.of_type(DATA_TYPE)) == 3
    assert table.find("nope") is None


def test_parse_accepts_a_whole_sector():
    blob = (GOLDEN / "02_two_ota_encrypted_nvs.bin").read_bytes()
    sector = blob + b"\xa5" * (0x1000 - len(blob))  # e.g. a signature after 0xC00
    assert parse_partition_table(sector) == parse_partition_table(blob)


# --- binary layout ------------------------------------------------------------------

def test_entry_layout_matches_esp_partition_info_t():
    part = Partition("first", 0x40, 0xEE, 0x100400, 0x300000, encrypted=True, readonly=True)
    blob = build_partition_table(PartitionTable((part,)), md5=True)
    assert len(blob) == TABLE_SIZE == 0xC00
    assert blob[0:2] == b"\xaa\x50"  # ESP_PARTITION_MAGIC 0x50AA little-endian
    assert blob[2:4] == b"\x40\xee"
    assert struct.unpack("<II", blob[4:12]) == (0x100400, 0x300000)
    assert blob[12:28] == b"first" + b"\0" * 11
    assert struct.unpack("<I", blob[28:32]) == (3,)
    assert blob[32:48] == b"\xeb\xeb" + b"\xff" * 14
    assert blob[48:64] == hashlib.md5(blob[:32]).digest()
    assert blob[64:] == b"\xff" * (TABLE_SIZE - 64)


def test_sixteen_byte_name_has_no_terminator():
    part = Partition("x" * MAX_NAME_LEN, DATA_TYPE, NVS_SUBTYPE, 0x9000, 0x6000)
    blob = build_partition_table(PartitionTable((part,)))
    assert blob[12:28] == b"x" * 16
    assert parse_partition_table(blob).partitions == (part,)


def test_without_md5():
    table = _from_csv(GOLDEN_CSVS[0])
    blob = build_partition_table(table, md5=False)
    assert b"\xeb\xeb" not in blob
    assert blob[:4 * ENTRY_SIZE] == build_partition_table(table)[:4 * ENTRY_SIZE]
    assert blob[4 * ENTRY_SIZE:] == b"\xff" * (TABLE_SIZE - 4 * ENTRY_SIZE)
    assert parse_partition_table(blob) == table


def _many(count: int) -> PartitionTable:
    return PartitionTable(tuple(Partition(f"p{i}", DATA_TYPE, 0x99, 0x9000 + i * 0x1000, 0x1000)
                                for i in range(count)))


def test_capacity_94_with_md5_95_without():
    assert len(parse_partition_table(build_partition_table(_many(94))).partitions) == 94
    with pytest.raises(CapacityError, match="at most 94"):
        build_partition_table(_many(95))
    assert len(parse_partition_table(build_partition_table(_many(95), md5=False)).partitions) == 95
    with pytest.raises(CapacityError, match="at most 95"):
        build_partition_table(_many(96), md5=False)


@pytest.mark.parametrize("part, match", [
    (Partition("a" * 17, DATA_TYPE, 0x99, 0x9000, 0x1000), "16-byte label"),
    (Partition("a\0b", DATA_TYPE, 0x99, 0x9000, 0x1000), "16-byte label"),
    (Partition("a", 0x100, 0x99, 0x9000, 0x1000), "type 256"),
    (Partition("a", DATA_TYPE, -1, 0x9000, 0x1000), "subtype -1"),
    (Partition("a", DATA_TYPE, 0x99, 1 << 32, 0x1000), "offset"),
    (Partition("a", DATA_TYPE, 0x99, 0x9000, -0x1000), "size"),
])
def test_build_rejects_unencodable(part, match):
    with pytest.raises(InputError, match=match):
        build_partition_table(PartitionTable((part,)))


def _golden_blob() -> bytearray:
    return bytearray((GOLDEN / "01_single_app_encrypted_nvs.bin").read_bytes())


def test_parse_md5_mismatch():
    blob = _golden_blob()
    blob[4] ^= 1
    with pytest.raises(FormatError, match="MD5 mismatch"):
        parse_partition_table(bytes(blob))


def test_parse_bad_magic():
    blob = _golden_blob()
    blob[32] = 0x00
    with pytest.raises(FormatError, match=r"record 1 \(byte 0x20\): bad magic"):
        parse_partition_table(bytes(blob))


def test_parse_erased_and_empty_inputs():
    with pytest.raises(FormatError, match="erased"):
        parse_partition_table(b"\xff" * TABLE_SIZE)
    with pytest.raises(FormatError, match="truncated"):
        parse_partition_table(b"")
    with pytest.raises(FormatError, match="truncated"):
        parse_partition_table(bytes(_golden_blob()[:64]))


def test_parse_no_end_marker():
    records = build_partition_table(_many(95), md5=False)[:95 * ENTRY_SIZE]
    extra = build_partition_table(_many(1), md5=False)[:ENTRY_SIZE]  # 96 records, no end
    with pytest.raises(FormatError, match="no end-of-table marker"):
        parse_partition_table(records + extra)


def test_parse_unknown_flag_bits():
    blob = bytearray(build_partition_table(_many(1), md5=False))
    blob[28] = 0x05
    with pytest.raises(FormatError, match="unknown flag bits 0x00000004"):
        parse_partition_table(bytes(blob))


def test_parse_label_not_utf8():
    blob = bytearray(build_partition_table(_many(1), md5=False))
    blob[12] = 0xC3  # a lone UTF-8 lead byte followed by the '0' of "p0"
    blob[13] = 0x28
    with pytest.raises(FormatError, match="not UTF-8"):
        parse_partition_table(bytes(blob))


def test_parse_second_md5_entry():
    blob = build_partition_table(_many(1))
    twice = blob[:64] + blob[32:64] + b"\xff" * (TABLE_SIZE - 96)
    with pytest.raises(FormatError, match="second MD5"):
        parse_partition_table(twice)


def test_parse_md5_only_table_is_empty():
    blob = build_partition_table(PartitionTable(()))
    assert parse_partition_table(blob).partitions == ()


def test_parse_takes_offset_from_primary_table_entry():
    table = PartitionTable((Partition("pt", PARTITION_TABLE_TYPE, 0, 0x10000, 0x1000),
                            Partition("nvs", DATA_TYPE, NVS_SUBTYPE, 0x11000, 0x6000)),
                           offset=0x10000)
    blob = build_partition_table(table)
    assert parse_partition_table(blob) == table
    assert parse_partition_table(blob, offset=0x9000).offset == 0x9000


# --- model --------------------------------------------------------------------------

def test_names_and_properties():
    assert TYPES == {"app": 0, "data": 1, "bootloader": 2, "partition_table": 3}
    assert SUBTYPES[APP_TYPE]["ota_15"] == 0x1F and SUBTYPES[APP_TYPE]["tee_1"] == 0x31
    assert SUBTYPES[DATA_TYPE]["tee_ota"] == TEE_OTA_SUBTYPE == 0x90
    assert SUBTYPES[2] == {"primary": 0, "ota": 1, "recovery": 2}
    assert SUBTYPES[3] == {"primary": 0, "ota": 1}
    part = Partition("c", 0x40, 7, 0x9000, 0x1000, readonly=True)
    assert (part.type_name, part.subtype_name, part.end, part.flags) == (0x40, 7, 0xA000,
                                                                         ("readonly",))
    ota = Partition("ota_3", APP_TYPE, 0x13, 0x10000, 0x1000)
    assert (ota.type_name, ota.subtype_name) == ("app", "ota_3")
    assert PartitionTable([ota]).partitions == (ota,)  # lists become tuples


# --- validation of models -----------------------------------------------------------

def _nvs(name="nvs", offset=0x9000, size=0x6000, **kw):
    return Partition(name, DATA_TYPE, NVS_SUBTYPE, offset, size, **kw)


@pytest.mark.parametrize("parts, flash, match", [
    ((), None, "no partitions"),
    ((_nvs(name=""),), None, "name is empty"),
    ((_nvs(name="a\tb"),), None, "control character"),
    ((_nvs(size=0),), None, "size 0x0 is not positive"),
    ((Partition("x", 0xFF, 0, 0x9000, 0x1000),), None, "type 0xff is out of range"),
    ((_nvs(offset=0x9000), _nvs("b", offset=0x4000)), None, "'b': offset 0x4000 is below 0x9000"),
    ((_nvs(offset=0x20000), _nvs("b", offset=0x1e000)), None,
     r"'nvs': 0x20000-0x25fff overlaps partition 'b' \(0x1e000-0x23fff\)"),
    ((Partition("f", APP_TYPE, 0, 0x10000, 0x1800),), None, "not a multiple of 0x1000"),
    ((Partition("o", DATA_TYPE, OTA_DATA_SUBTYPE, 0x9000, 0x2000, readonly=True),), None,
     "always read-write"),
    ((Partition("c", DATA_TYPE, 3, 0x9000, 0x2000, readonly=True),), None, "always read-write"),
    ((Partition("t", DATA_TYPE, TEE_OTA_SUBTYPE, 0x9000, 0x1000),), None,
     "TEE otadata .* exactly 0x2000"),
    ((Partition("o", DATA_TYPE, 0, 0x9000, 0x2000), Partition("p", DATA_TYPE, 0, 0xb000, 0x2000)),
     None, "'p': a second otadata"),
    ((Partition("pt", PARTITION_TABLE_TYPE, 0, 0x9000, 0x1000),), None,
     "primary partition table entry must be at 0x8000"),
    ((_nvs(size=0x400000),), 0x400000, "ends at 0x409000"),
])
def test_validate_rejects(parts, flash, match):
    with pytest.raises(InputError, match=match):
        validate_partition_table(PartitionTable(parts), flash_size=flash)


def test_validate_flash_fit_is_a_capacity_error():
    with pytest.raises(CapacityError):
        validate_partition_table(PartitionTable((_nvs(size=0x200000),)), flash_size=0x200000)
    validate_partition_table(PartitionTable((_nvs(size=0x200000 - 0x9000),)),
                             flash_size=0x200000)


def test_validate_accepts_small_readonly_nvs():
    validate_partition_table(PartitionTable((_nvs(size=0x1000, readonly=True),)))


@pytest.mark.parametrize("text, value", [
    ("4MB", 4 << 20), ("2MB", 2 << 20), ("16MB", 16 << 20), ("128MB", 128 << 20),
    ("4M", 4 << 20), ("512KB", 512 << 10), ("4mb", 4 << 20), ("0x400000", 4 << 20),
])
def test_parse_flash_size(text, value):
    assert parse_flash_size(text) == value


@pytest.mark.parametrize("text", ["", "0MB", "4 GB", "four", "-4MB"])
def test_parse_flash_size_rejects(text):
    with pytest.raises(InputError, match="invalid flash size"):
        parse_flash_size(text)


# --- properties ---------------------------------------------------------------------

_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                 max_size=16).filter(lambda s: len(s.encode("utf-8")) <= MAX_NAME_LEN)
_partitions = st.builds(Partition, _names, st.integers(0, 0xFF), st.integers(0, 0xFF),
                        st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
                        st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(_partitions, min_size=1, max_size=94), st.booleans(),
       st.integers(0, 0xFFFFF).map(lambda n: n * 0x1000))
def test_property_parse_build_roundtrip(parts, md5, offset):
    table = PartitionTable(tuple(parts), offset=offset)
    blob = build_partition_table(table, md5=md5)
    assert len(blob) == TABLE_SIZE
    assert parse_partition_table(blob, offset=offset) == table
    assert build_partition_table(parse_partition_table(blob), md5=md5) == blob


# Valid tables made the way users make them: specs placed automatically.
_kinds = st.sampled_from([
    (APP_TYPE, 0x00, 0x10000), (APP_TYPE, 0x10, 0x1000), (APP_TYPE, 0x20, 0x1000),
    (DATA_TYPE, NVS_SUBTYPE, 0x3000), (DATA_TYPE, NVS_KEYS_SUBTYPE, 0x1000),
    (DATA_TYPE, 0x81, 0x1000), (DATA_TYPE, 0x06, 0x1000), (0x40, 0x01, 0x1000),
    (0xFE, 0x00, 0x1000),
])
_spec_rows = st.lists(st.tuples(_kinds, st.integers(1, 64), st.booleans(), st.booleans()),
                      min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(_spec_rows, st.sampled_from([0x8000, 0x9000, 0x10000]))
def test_property_placed_tables_roundtrip(rows, table_offset):
    specs = [PartitionSpec(f"p{i}", t, s, None, unit * count,
                           encrypted=enc, readonly=ro and t == DATA_TYPE)
             for i, ((t, s, unit), count, enc, ro) in enumerate(rows)]
    table = place_partitions(specs, table_offset=table_offset)
    blob = build_partition_table(table)
    parsed = parse_partition_table(blob, offset=table_offset)
    assert parsed == table
    again = parse_partition_csv(format_partition_csv(parsed), table_offset=table_offset,
                                variables={})
    assert again == table
    offsets = [p.offset for p in table.partitions]
    assert offsets == sorted(offsets) and offsets[0] >= table_offset + 0x1000


# --- Secure Boot checks and name warnings (library side) -----------------------------

def test_secure_boot_check_follows_esp_idf_partition_table_cmake():
    from idf_nvs_secure.formats.partition_table import secure_boot_check

    assert secure_boot_check({}) is None
    assert secure_boot_check({"CONFIG_SECURE_BOOT": "y"}) == "v1"
    assert secure_boot_check({"CONFIG_SECURE_BOOT": True, "CONFIG_SECURE_BOOT_V1_ENABLED": True}) == "v1"
    assert secure_boot_check({"CONFIG_SECURE_BOOT": "y", "CONFIG_SECURE_BOOT_V2_ENABLED": "y"}) == "v2"
    assert secure_boot_check({"CONFIG_SECURE_BOOT": "y",
                              "CONFIG_SECURE_BOOT_ALLOW_SHORT_APP_PARTITION": "y"}) is None
    assert secure_boot_check({"CONFIG_SECURE_BOOT_V1_ENABLED": "y"}) is None  # not on


def test_validate_with_secure_v1_and_unknown_version():
    from idf_nvs_secure.errors import InputError
    from idf_nvs_secure.formats.partition_table import (
        APP_TYPE, Partition, PartitionTable, validate_partition_table)

    table = PartitionTable((Partition("factory", APP_TYPE, 0, 0x10000, 0x11000),))
    validate_partition_table(table)
    validate_partition_table(table, secure="v2")
    with pytest.raises(InputError, match="not a multiple of 0x10000"):
        validate_partition_table(table, secure="v1")
    with pytest.raises(InputError, match="unknown secure boot version 'v3'"):
        validate_partition_table(table, secure="v3")


def test_name_warnings_are_data_not_output(capsys):
    from idf_nvs_secure.formats.partition_table import (
        APP_TYPE, DATA_TYPE, NameWarning, Partition, PartitionTable, find_name_warnings)

    table = PartitionTable((Partition("nvs", DATA_TYPE, 2, 0x9000, 0x6000),
                            Partition("app", DATA_TYPE, 1, 0xF000, 0x1000),
                            Partition("ota_1", APP_TYPE, 0x10, 0x10000, 0x100000)))
    warnings = find_name_warnings(table)
    assert [w.index for w in warnings] == [1, 2]
    assert all(isinstance(w, NameWarning) for w in warnings)
    assert "app/ota_1" in warnings[1].message
    assert capsys.readouterr() == ("", "")

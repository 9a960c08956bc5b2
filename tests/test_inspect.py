"""nvs check / diff / dump tree / flash dumps: the library (idf_nvs_secure.views.inspect) and CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import FormatError, InputError, KeyMaterialError
from idf_nvs_secure.formats.nvs_image import NvsEntry, build_nvs_image
from idf_nvs_secure.formats.nvs_keys import NvsKeys, build_nvs_keys
from idf_nvs_secure.formats.nvs_reader import parse_nvs_image
from idf_nvs_secure.formats.partition_table import (
    DATA_TYPE,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    Partition,
    PartitionTable,
    build_partition_table,
)
from idf_nvs_secure.views.inspect import (
    check_nvs_image,
    diff_nvs_images,
    diff_to_json,
    dump_tree,
    format_value,
    keys_from_flash,
    locate_in_flash,
)

KEYS_A = NvsKeys(bytes(range(32)), bytes(range(32, 64)))
KEYS_B = NvsKeys(bytes(range(100, 132)), bytes(range(132, 164)))
SIZE = 0x4000

ENTRIES = [
    NvsEntry("app", "count", "u8", 7),
    NvsEntry("app", "name", "string", "device-01"),
    NvsEntry("app", "big", "blob", bytes(range(256)) * 20),  # 5120 bytes: two chunks
    NvsEntry("cal", "offset", "i32", -12),
]

# Byte positions in a plaintext image (page 0 then page 1; see layout in nvs_layout):
#   page header 0..31, bitmap 32..63, entry i at 64 + 32 * i.
#   Entry 0 = namespace "app", 1 = count, 2 = name, 3 = its data, 4 = blob data chunk 0 ...
POSITIONS = {
    "page header state": 0,
    "page header seq": 4,
    "page header crc": 28,
    "bitmap first entries": 32,
    "bitmap middle": 40,
    "namespace entry key": 64 + 8,
    "u8 entry value": 64 + 32 + 24,
    "u8 entry crc": 64 + 32 + 4,
    "string entry header": 64 + 64 + 1,
    "string data": 64 + 96 + 3,
    "blob chunk header": 64 + 128 + 2,
    "blob chunk data": 64 + 160 + 100,
    "blob chunk on page 1": 4096 + 64 + 32 + 10,
    "page 1 header": 4096 + 8,
}


@pytest.fixture(scope="module")
def plain() -> bytes:
    return build_nvs_image(ENTRIES, SIZE)


def _flip(data: bytes, position: int, mask: int = 0xFF) -> bytes:
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- library: check -------------------------------------------------------------------


def test_clean_image_checks_ok(plain):
    result = check_nvs_image(plain)
    assert result.ok, result.problems
    assert [item.key for item in result.image.entries] == ["count", "name", "big", "offset"]


def test_layout_assumed_by_positions(plain):
    image = parse_nvs_image(plain)
    where = {item.key: (item.page, item.entry) for item in image.entries}
    assert where["count"] == (0, 1) and where["name"] == (0, 2)
    assert image.pages[1].used > 0  # the blob's second chunk is on page 1


@pytest.mark.parametrize("what", sorted(POSITIONS))
def test_single_byte_corruption_is_reported(plain, what):
    position = POSITIONS[what]
    result = check_nvs_image(_flip(plain, position))
    assert not result.ok, what
    assert all(problem.message for problem in result.problems)
    # Some problem points at the corrupted page (others may be consequences elsewhere).
    assert any(problem.page == position // 4096 for problem in result.problems), \
        (what, result.problems)


@pytest.mark.parametrize("mask", [0x01, 0x80])
@pytest.mark.parametrize("position", [0, 33, 64 + 40, 64 + 170, 4096 + 100])
def test_single_bit_corruption_is_reported(plain, position, mask):
    assert not check_nvs_image(_flip(plain, position, mask)).ok


def test_corrupt_entry_gives_page_and_entry(plain):
    result = check_nvs_image(_flip(plain, 64 + 32 + 24))  # the u8 "count" (page 0, entry 1)
    assert any(p.code == "entry-crc" and (p.page, p.entry) == (0, 1) for p in result.problems)


def test_blob_index_against_chunks(plain):
    # Break the chunk on page 1: the blob index on that page must report a missing chunk.
    result = check_nvs_image(_flip(plain, 4096 + 64 + 32 + 10))
    codes = {p.code for p in result.problems}
    assert codes & {"data-crc", "entry-crc"}
    assert codes & {"blob-chunk-missing", "blob-orphan-chunk", "blob-size"}


def test_duplicate_key_reported(plain):
    a = build_nvs_image([NvsEntry("app", "k", "u8", 1)], SIZE)
    # Copy the single item (page 0, entry 1) to entry 2 and mark it written.
    data = bytearray(a)
    data[64 + 64: 64 + 96] = data[64 + 32: 64 + 64]
    data[32] &= ~(1 << 4)  # entry 2: EMPTY (11) -> WRITTEN (10)
    result = check_nvs_image(bytes(data))
    assert [p.code for p in result.problems] == ["duplicate-key"]
    assert (result.problems[0].page, result.problems[0].entry) == (0, 2)


def test_bitmap_order(plain):
    a = build_nvs_image([NvsEntry("app", "k", "u8", 1)], SIZE)
    data = bytearray(a)
    data[32 + 20] = 0x7F  # entry 83: ERASED-ish state far after the first empty entry
    result = check_nvs_image(bytes(data))
    assert any(p.code == "bitmap-order" and p.page == 0 for p in result.problems)


def test_wrong_key_is_one_clear_problem():
    encrypted = build_nvs_image(ENTRIES, SIZE, keys=KEYS_A)
    assert check_nvs_image(encrypted, keys=KEYS_A).ok
    result = check_nvs_image(encrypted, keys=KEYS_B)
    assert result.wrong_key
    assert [p.code for p in result.problems] == ["wrong-key"]
    assert "wrong" in result.problems[0].message
    assert not result.image.entries


def test_not_a_page_multiple_is_a_format_error():
    with pytest.raises(FormatError):
        check_nvs_image(b"\xff" * 100)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(1, 255)),
                      min_size=1, max_size=8),
       encrypted=st.booleans())
def test_random_corruption_never_crashes(flips, encrypted):
    data = bytearray(build_nvs_image(ENTRIES, SIZE, keys=KEYS_A if encrypted else None))
    for position, mask in flips:
        data[position] ^= mask
    result = check_nvs_image(bytes(data), keys=KEYS_A if encrypted else None)
    for problem in result.problems:
        str(problem)
    dump_tree(result.image, pages=True).lines()


# --- library: diff, tree --------------------------------------------------------------


def test_diff_kinds():
    a = parse_nvs_image(build_nvs_image(ENTRIES, SIZE))
    b_entries = [
        NvsEntry("app", "count", "u8", 8),            # changed
        NvsEntry("app", "name", "u16", 9),            # type changed
        NvsEntry("cal", "offset", "i32", -12),        # same
        NvsEntry("cal", "gain", "u32", 3),            # added
    ]                                                  # app/big removed
    b = parse_nvs_image(build_nvs_image(b_entries, SIZE, keys=KEYS_B), keys=KEYS_B)
    changes = diff_nvs_images(a, b)
    kinds = {(c.namespace, c.key): c.kind for c in changes}
    assert kinds == {("app", "count"): "changed", ("app", "name"): "type-changed",
                     ("cal", "gain"): "added", ("app", "big"): "removed"}
    as_json = diff_to_json(changes)
    removed = next(c for c in as_json if c["change"] == "removed")
    assert removed["new"] is None and removed["old"]["value"].startswith("000102")
    assert diff_nvs_images(a, a) == []


def test_format_value_shortens():
    assert format_value("blob", b"\x01" * 100, limit=8) == "01010101… (100 bytes)"
    assert format_value("blob", b"\xab", limit=8) == "ab (1 bytes)"
    long = format_value("string", "x" * 100, limit=10)
    assert long.startswith("'xxxxxxxxx…") and len(long) < 20
    assert format_value("i32", -5) == "-5"


def test_dump_tree(plain):
    lines = dump_tree(parse_nvs_image(plain), pages=True).lines()
    text = "\n".join(lines)
    assert "  namespace app" in lines
    assert "    count  u8         1 B  7" in lines
    assert "(5120 bytes)" in text
    assert "page 0: FULL, seq 0" in text and "page 2: UNINITIALIZED" in text


# --- flash dumps ----------------------------------------------------------------------


def _flash(nvs: bytes, keys_part: bytes | None, extra_nvs: bool = False) -> bytes:
    parts = [Partition("nvs", DATA_TYPE, NVS_SUBTYPE, 0x9000, SIZE)]
    if keys_part is not None:
        parts.append(Partition("nvs_key", DATA_TYPE, NVS_KEYS_SUBTYPE, 0xD000, 0x1000,
                               encrypted=True))
    if extra_nvs:
        parts.append(Partition("nvs2", DATA_TYPE, NVS_SUBTYPE, 0xE000, 0x3000))
    flash = bytearray(b"\xff" * 0x20000)
    table = build_partition_table(PartitionTable(tuple(parts), 0x8000))
    flash[0x8000: 0x8000 + len(table)] = table
    flash[0x9000: 0x9000 + SIZE] = nvs
    if keys_part is not None:
        flash[0xD000: 0xE000] = keys_part
    return bytes(flash)


def test_locate_in_flash_and_keys():
    nvs = build_nvs_image(ENTRIES, SIZE, keys=KEYS_A)
    found = locate_in_flash(_flash(nvs, build_nvs_keys(KEYS_A)))
    assert found.partition.name == "nvs" and found.data == nvs
    assert keys_from_flash(found) == KEYS_A
    assert check_nvs_image(found.data, keys=keys_from_flash(found)).ok


def test_flash_encrypted_keys_said_clearly():
    nvs = build_nvs_image(ENTRIES, SIZE, keys=KEYS_A)
    found = locate_in_flash(_flash(nvs, _flip(build_nvs_keys(KEYS_A), 3)))
    with pytest.raises(KeyMaterialError, match="flash encryption"):
        keys_from_flash(found)


def test_flash_errors():
    nvs = build_nvs_image(ENTRIES, SIZE)
    with pytest.raises(FormatError, match="no valid partition table at 0x9000"):
        locate_in_flash(_flash(nvs, None), table_offset=0x9000)
    with pytest.raises(InputError, match="no partition 'nope'"):
        locate_in_flash(_flash(nvs, None), partition="nope")
    assert locate_in_flash(_flash(nvs, None, extra_nvs=True), partition="nvs2").partition.size == 0x3000
    with pytest.raises(KeyMaterialError, match="no nvs_keys"):
        keys_from_flash(locate_in_flash(_flash(nvs, None)))


# --- CLI ------------------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_check_clean_and_corrupt(tmp_path, plain):
    good = _write(tmp_path, "good.bin", plain)
    result = _run("nvs", "check", good)
    assert result.exit_code == 0, result.output
    assert "ok: 4 entries in 2 namespaces" in result.output
    bad = _write(tmp_path, "bad.bin", _flip(plain, 64 + 32 + 24))
    result = _run("nvs", "check", bad)
    assert result.exit_code == 1
    assert "page 0, entry 1: entry CRC mismatch [entry-crc]" in result.output
    assert "Traceback" not in result.output


def test_cli_check_wrong_key(tmp_path):
    image = _write(tmp_path, "enc.bin", build_nvs_image(ENTRIES, SIZE, keys=KEYS_A))
    keys_a = _write(tmp_path, "a.bin", build_nvs_keys(KEYS_A))
    keys_b = _write(tmp_path, "b.bin", build_nvs_keys(KEYS_B))
    assert _run("nvs", "check", image, "--keys", keys_a).exit_code == 0
    result = _run("nvs", "check", image, "--keys", keys_b)
    assert result.exit_code == 1
    assert "wrong key" in result.output
    assert "entry CRC" not in result.output  # not a list of garbage entries
    assert KEYS_B.data_key.hex() not in result.output


def test_cli_check_user_errors(tmp_path):
    result = _run("nvs", "check", tmp_path / "missing.bin")
    assert result.exit_code == 2 and "error:" in result.output and "no such file" in result.output
    short = _write(tmp_path, "short.bin", b"\xff" * 10)
    result = _run("nvs", "check", short)
    assert result.exit_code == 2 and "whole number of 4096-byte pages" in result.output
    assert _run("nvs", "check").exit_code == 2


def test_cli_check_flash(tmp_path):
    nvs = build_nvs_image(ENTRIES, SIZE, keys=KEYS_A)
    flash = _write(tmp_path, "flash.bin", _flash(nvs, build_nvs_keys(KEYS_A)))
    result = _run("nvs", "check", "--flash", flash)
    assert result.exit_code == 0, result.output
    assert "using the keys in partition 'nvs_key'" in result.output
    # An nvs_keys partition that flash encryption keeps unreadable: said clearly.
    enc = _write(tmp_path, "enc.bin", _flash(nvs, _flip(build_nvs_keys(KEYS_A), 5)))
    result = _run("nvs", "check", "--flash", enc)
    assert result.exit_code == 1
    assert "flash encryption" in result.output and "--keys" in result.output
    keys = _write(tmp_path, "keys.bin", build_nvs_keys(KEYS_A))
    assert _run("nvs", "check", "--flash", enc, "--keys", keys).exit_code == 0
    result = _run("nvs", "check", "--flash", flash, "--table-offset", "0x10000")
    assert result.exit_code == 2 and "no valid partition table at 0x10000" in result.output


def test_cli_diff(tmp_path, plain):
    a = _write(tmp_path, "a.bin", plain)
    changed = [NvsEntry("app", "count", "u8", 9)] + ENTRIES[1:]
    b = _write(tmp_path, "b.bin", build_nvs_image(changed, SIZE, keys=KEYS_B))
    keys_b = _write(tmp_path, "kb.bin", build_nvs_keys(KEYS_B))
    same = _run("nvs", "diff", a, a)
    assert same.exit_code == 0 and "no differences" in same.output
    result = _run("nvs", "diff", a, b, "--keys-b", keys_b)
    assert result.exit_code == 1
    assert "~ app/count: u8 7 -> u8 9  (changed)" in result.output
    result = _run("nvs", "diff", a, b, "--keys-b", keys_b, "--json")
    assert result.exit_code == 1
    assert json.loads(result.output) == [{"change": "changed", "namespace": "app", "key": "count",
                                          "old": {"type": "u8", "value": 7},
                                          "new": {"type": "u8", "value": 9}}]
    result = _run("nvs", "diff", a, b)  # B is encrypted and no keys: a user error
    assert result.exit_code == 2 and "looks encrypted" in result.output
    keys_a = _write(tmp_path, "ka.bin", build_nvs_keys(KEYS_A))
    result = _run("nvs", "diff", a, b, "--keys-b", keys_a)
    assert result.exit_code == 2 and "wrong key" in result.output


def test_cli_dump_tree_pages_and_flash(tmp_path, plain):
    image = _write(tmp_path, "i.bin", plain)
    result = _run("nvs", "dump", image, "--pages")
    assert result.exit_code == 0, result.output
    assert "  namespace app" in result.output and "page 0: FULL, seq 0" in result.output
    assert "(5120 bytes)" in result.output
    result = _run("nvs", "dump", image, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["app"]["count"]["value"] == 7
    nvs = build_nvs_image(ENTRIES, SIZE, keys=KEYS_A)
    flash = _write(tmp_path, "f.bin", _flash(nvs, build_nvs_keys(KEYS_A)))
    result = _run("nvs", "dump", "--flash", flash)
    assert result.exit_code == 0, result.output
    assert "count  u8         1 B  7" in result.output and "[nvs at 0x9000" in result.output
    unreadable = _write(tmp_path, "g.bin", _flash(nvs, _flip(build_nvs_keys(KEYS_A), 3)))
    result = _run("nvs", "dump", "--flash", unreadable)
    assert result.exit_code == 1 and "flash encryption" in result.output

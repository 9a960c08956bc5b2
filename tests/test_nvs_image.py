"""NVS images: golden bytes, layout facts, fixes over the reference tool, XTS, the reader.

The golden images in tests/golden/nvs were made by esp-idf-nvs-partition-gen 0.3.0 (see
its README); the hypothesis cross-check against that tool is test_nvs_reference.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from idf_nvs_secure.errors import CapacityError, FormatError, InputError
from idf_nvs_secure.formats import nvs_layout as L
from idf_nvs_secure.formats.nvs_image import (
    ENTRIES_PER_PAGE,
    ENTRY_SIZE,
    MAX_KEY_LEN,
    NVS_TYPES,
    PAGE_SIZE,
    NvsEntry,
    build_nvs_image,
    validate_entry,
)
from idf_nvs_secure.formats.nvs_keys import NvsKeys, parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image
from idf_nvs_secure.formats.xts import (
    xts_decrypt_runs,
    xts_decrypt_units,
    xts_encrypt_runs,
    xts_encrypt_units,
)
from idf_nvs_secure.inputs.nvs_csv import parse_nvs_csv

NVS = Path(__file__).resolve().parent / "golden" / "nvs"
KEYS = parse_nvs_keys((NVS / "nvs_keys.bin").read_bytes())


def load_csv(name: str) -> list[NvsEntry]:
    return parse_nvs_csv((NVS / name).read_text(encoding="utf-8"), filename=name, base_dir=NVS)


def items(data: bytes, page: int = 0):
    """(state, raw item) of every entry of a page."""
    base = page * PAGE_SIZE
    bits = int.from_bytes(data[base + 32: base + 64], "little")
    return [((bits >> 2 * i) & 3, data[base + 64 + 32 * i: base + 96 + 32 * i])
            for i in range(ENTRIES_PER_PAGE)]


def reseal(data: bytearray, page: int, entry: int) -> None:
    """Recompute the CRC of an item after a test changed it."""
    offset = page * PAGE_SIZE + 64 + 32 * entry
    raw = bytes(data[offset: offset + 32])
    struct.pack_into("<I", data, offset + 4, zlib.crc32(raw[:4] + raw[8:], 0xFFFFFFFF))


def set_state(data: bytearray, page: int, entry: int, state: int) -> None:
    base = page * PAGE_SIZE + 32
    bits = int.from_bytes(data[base: base + 32], "little")
    bits = (bits & ~(3 << 2 * entry)) | (state << 2 * entry)
    data[base: base + 32] = bits.to_bytes(32, "little")


def ns(*pairs, namespace="app"):
    return [NvsEntry(namespace, k, t, v) for k, t, v in pairs]


# --- golden images: byte for byte ---------------------------------------------------------


@pytest.mark.parametrize("csv_name, image_name, version, keys", [
    ("values.csv", "plain_v2.bin", 2, None),
    ("values_v1.csv", "plain_v1.bin", 1, None),
    ("values.csv", "encrypted_v2.bin", 2, KEYS),
])
def test_golden_images_byte_for_byte(csv_name, image_name, version, keys):
    golden = (NVS / image_name).read_bytes()
    assert build_nvs_image(load_csv(csv_name), len(golden), version=version, keys=keys) == golden


@pytest.mark.parametrize("image_name, version, keys", [
    ("plain_v2.bin", 2, None), ("plain_v1.bin", 1, None), ("encrypted_v2.bin", 2, KEYS),
])
def test_golden_parse_then_build_gives_the_golden_back(image_name, version, keys):
    golden = (NVS / image_name).read_bytes()
    image = parse_nvs_image(golden, keys=keys)
    assert image.ok and image.version == version
    entries = [item.to_entry() for item in image.entries]
    assert build_nvs_image(entries, len(golden), version=version, keys=keys) == golden


def test_golden_decoded_values():
    entries = {(e.namespace, e.key): e for e in load_csv("values.csv")}
    image = parse_nvs_image((NVS / "encrypted_v2.bin").read_bytes(), keys=KEYS)
    assert image.encrypted and not image.wrong_key
    assert {(i.namespace, i.key): i.to_entry() for i in image.entries} == entries
    assert image.namespaces == {"device": 1, "wifi": 2, "certs": 3}
    assert entries["certs", "device_cert"].value == (NVS / "cert.der").read_bytes()


# --- layout facts (ESP-IDF nvs_page.hpp / nvs_types.hpp) ------------------------------------


def test_page_headers_states_and_reserved_page():
    data = (NVS / "plain_v2.bin").read_bytes()
    states = []
    for page in range(len(data) // PAGE_SIZE):
        header = data[page * PAGE_SIZE: page * PAGE_SIZE + 32]
        state, seq, version, reserved, crc = L.PAGE_HEADER.unpack(header)
        states.append(state)
        if state == L.PAGE_STATE_UNINITIALIZED:
            assert data[page * PAGE_SIZE:(page + 1) * PAGE_SIZE] == b"\xff" * PAGE_SIZE
            continue
        assert seq == page and version == 0xFE and reserved == b"\xff" * 19
        assert crc == zlib.crc32(header[4:28], 0xFFFFFFFF)
    assert states[:5] == [L.PAGE_STATE_FULL] * 4 + [L.PAGE_STATE_ACTIVE]
    assert states[5:] == [L.PAGE_STATE_UNINITIALIZED] * 11
    v1 = (NVS / "plain_v1.bin").read_bytes()
    assert v1[8] == 0xFF and L.PAGE_HEADER.unpack(v1[:32])[0] == L.PAGE_STATE_FULL


def test_empty_image_has_one_active_page():
    data = build_nvs_image([], 0x3000)
    assert L.PAGE_HEADER.unpack(data[:32])[0] == L.PAGE_STATE_ACTIVE
    assert data[32:] == b"\xff" * (0x3000 - 32)
    assert parse_nvs_image(data).ok


def test_entry_layout_of_every_fixed_size_type():
    values = {"u8": 200, "i8": -2, "u16": 60000, "i16": -300, "u32": 7, "i32": -7,
              "u64": 2**63, "i64": -(2**40), "float": 1.5, "double": -2.25}
    data = build_nvs_image(ns(*[(f"k_{t}", t, v) for t, v in values.items()]), 0x3000)
    written = items(data)
    assert written[0][1][:4] == bytes([0, 0x01, 1, 0xFF])  # the namespace entry: u8, ns 0
    assert written[0][1][8:24] == b"app".ljust(16, b"\x00") and written[0][1][24] == 1
    for (state, raw), (kind, value) in zip(written[1:], values.items()):
        ns_index, code, span, chunk, crc, key, field = L.ITEM.unpack(raw)
        assert state == L.ENTRY_STATE_WRITTEN
        assert (ns_index, code, span, chunk) == (1, NVS_TYPES[kind], 1, 0xFF)
        assert crc == zlib.crc32(raw[:4] + raw[8:], 0xFFFFFFFF)
        fmt = L.PRIMITIVE_FORMATS[kind]
        assert field == fmt.pack(value) + b"\xff" * (8 - fmt.size)
    assert NVS_TYPES["float"] == 0x24 and NVS_TYPES["double"] == 0x28  # 0x20 | sizeof


def test_float_and_double_round_trip():
    entries = ns(("f", "float", 0.1), ("d", "double", 0.1), ("inf", "float", math.inf))
    image = parse_nvs_image(build_nvs_image(entries, 0x3000))
    got = {i.key: i.value for i in image.entries}
    assert got["f"] == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert got["d"] == 0.1 and got["inf"] == math.inf


def test_string_and_v1_blob_items():
    data = build_nvs_image(ns(("s", "string", "hi"), ("b", "blob", b"\x01" * 40)), 0x3000,
                           version=1)
    (_, s_head), (_, s_data), (_, b_head) = [x for x in items(data)[1:4]]
    assert L.ITEM.unpack(s_head)[1:4] == (0x21, 2, 0xFF)
    assert L.ITEM_VARLEN.unpack(s_head[24:]) == (3, 0xFFFF, zlib.crc32(b"hi\x00", 0xFFFFFFFF))
    assert s_data == b"hi\x00" + b"\xff" * 29
    assert L.ITEM.unpack(b_head)[1:4] == (0x41, 3, 0xFF)


def test_v2_blob_spanning_pages():
    blob = bytes(range(256)) * 40  # 10240 bytes: three chunks
    data = build_nvs_image(ns(("big", "blob", blob)), 0x6000)
    chunks = []
    for page in range(4):
        for state, raw in items(data, page):
            if state == L.ENTRY_STATE_WRITTEN and raw[1] in (0x42, 0x48):
                chunks.append((page, raw[1], raw[3], raw[24:]))
    assert [(p, t, c) for p, t, c, _ in chunks] == [(0, 0x42, 0), (1, 0x42, 1), (2, 0x42, 2),
                                                    (2, 0x48, 0xFF)]
    assert L.ITEM_BLOB_INDEX.unpack(chunks[-1][3]) == (10240, 3, 0, 0xFFFF)
    assert parse_nvs_image(data).entries[0].value == blob


# --- where the reference tool is wrong, we are right -------------------------------------


@pytest.mark.parametrize("length", [3967, 3968, 3969, 3990, 3999])
def test_strings_up_to_4000_bytes_with_nul(length):
    text = "x" * length
    entries = ns(("a", "u8", 1), ("long", "string", text), ("b", "u8", 2))
    image = parse_nvs_image(build_nvs_image(entries, 0x5000))
    assert image.ok and [i.to_entry() for i in image.entries] == entries


def test_string_of_4000_bytes_fills_a_page_and_4001_is_an_error():
    data = build_nvs_image(ns(("long", "string", "é" * 1999 + "x")), 0x4000)
    assert L.PAGE_HEADER.unpack(data[PAGE_SIZE: PAGE_SIZE + 32])[0] == L.PAGE_STATE_ACTIVE
    assert data[PAGE_SIZE + 32: PAGE_SIZE + 64] == b"\xaa" * 31 + b"\xfa"  # 126 written
    assert parse_nvs_image(data).entries[0].value == "é" * 1999 + "x"
    with pytest.raises(InputError, match="4001 bytes with its NUL; NVS allows at most 4000"):
        build_nvs_image(ns(("long", "string", "x" * 4000)), 0x4000)


def test_revisited_namespace_keeps_its_entries():
    entries = load_csv("values_revisit.csv")
    assert [(e.namespace, e.key) for e in entries] == [
        ("device", "serial"), ("wifi", "ssid"), ("device", "boot_count")]
    data = build_nvs_image(entries, 0x3000)
    assert image_to_json(parse_nvs_image(data)) == {
        "device": {"serial": {"type": "string", "value": "SN-1"},
                   "boot_count": {"type": "u32", "value": 7}},
        "wifi": {"ssid": {"type": "string", "value": "net"}},
    }
    namespace_entries = [raw for state, raw in items(data) if state == 2 and raw[0] == 0]
    assert len(namespace_entries) == 2  # no second 'device' namespace entry
    assert [raw for state, raw in items(data) if raw[8:18] == b"boot_count"][0][0] == 1


def test_wifi_keys_get_no_hidden_entries():
    entries = ns(("sta.ssid", "string", "net"), ("sta.pswd", "string", "pw"),
                 ("ap.ssid", "string", "ap"), ("ap.passwd", "string", "secret12"),
                 ("ap.authmode", "u8", 3), namespace="nvs.net80211")
    image = parse_nvs_image(build_nvs_image(entries, 0x3000))
    assert [i.to_entry() for i in image.entries] == entries


def test_key_length_is_counted_in_bytes():
    validate_entry(NvsEntry("n" * MAX_KEY_LEN, "k" * 15, "u8", 1))
    with pytest.raises(InputError, match="is 16 bytes; NVS allows at most 15"):
        validate_entry(NvsEntry("ns", "k" * 16, "u8", 1))
    with pytest.raises(InputError, match="namespace 'nnnnnnnnnnnnnnnn' is 16 bytes"):
        validate_entry(NvsEntry("n" * 16, "k", "u8", 1))
    with pytest.raises(InputError, match="is 16 bytes"):
        validate_entry(NvsEntry("ns", "é" * 8, "u8", 1))  # 8 characters, 16 bytes


@pytest.mark.parametrize("kind", ["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"])
def test_integer_ranges(kind):
    low, high = L.INT_RANGES[kind]
    entries = ns(("lo", kind, low), ("hi", kind, high))
    assert [i.value for i in parse_nvs_image(build_nvs_image(entries, 0x3000)).entries] == [
        low, high]
    for bad in (low - 1, high + 1):
        entry = NvsEntry("app", "x", kind, bad, file="v.csv", line=7)
        with pytest.raises(InputError) as info:
            build_nvs_image([entry], 0x3000)
        assert str(info.value) == (
            f"v.csv:7: key 'x': value {bad} does not fit {kind} ({low}..{high})")


@pytest.mark.parametrize("entry, message", [
    (NvsEntry("a", "k", "u8", True), "must be an integer"),
    (NvsEntry("a", "k", "u8", 1.0), "must be an integer"),
    (NvsEntry("a", "k", "float", math.nan), "NaN"),
    (NvsEntry("a", "k", "float", 1e39), "does not fit float"),
    (NvsEntry("a", "k", "string", b"x"), "must be text"),
    (NvsEntry("a", "k", "string", "a\x00b"), "NUL"),
    (NvsEntry("a", "k", "blob", "text"), "must be bytes"),
    (NvsEntry("a", "k", "blob", b"x" * (L.BLOB_MAX_SIZE + 1)), "at most 508000"),
    (NvsEntry("a", "k", "u128", 1), "unknown type 'u128'"),
    (NvsEntry("a", "", "u8", 1), "key is empty"),
    (NvsEntry("a", "k\x00", "u8", 1), "NUL"),
])
def test_invalid_entries(entry, message):
    with pytest.raises(InputError, match=message):
        validate_entry(entry)
    with pytest.raises(InputError, match=message):
        build_nvs_image([entry], 0x3000)


def test_duplicate_key_is_an_error():
    with pytest.raises(InputError, match="appears twice in namespace 'app'"):
        build_nvs_image(ns(("k", "u8", 1), ("k", "string", "x")), 0x3000)
    build_nvs_image([NvsEntry("a", "k", "u8", 1), NvsEntry("b", "k", "u8", 1)], 0x3000)


def test_v1_blob_limit():
    build_nvs_image(ns(("b", "blob", b"x" * 1984)), 0x3000, version=1)
    with pytest.raises(InputError, match="format version 1 allows at most 1984"):
        build_nvs_image(ns(("b", "blob", b"x" * 1985)), 0x3000, version=1)


def test_capacity_error_says_how_much_is_missing():
    entries = ns(("small", "u8", 1), ("big", "blob", b"\x00" * 40000))
    entries = [NvsEntry(e.namespace, e.key, e.type, e.value, file="v.csv", line=i + 2)
               for i, e in enumerate(entries)]
    with pytest.raises(CapacityError) as info:
        build_nvs_image(entries, 0x6000)
    error = info.value
    assert isinstance(error, InputError)
    assert (error.file, error.line) == ("v.csv", 3)
    assert "needs 6 more pages (24576 bytes); partition is 0x6000" in error.message
    assert error.hint == "make the partition at least 0xc000 bytes"
    build_nvs_image(entries, 0xC000)


def test_capacity_is_all_pages_but_the_reserved_one():
    two_pages = ns(*[(f"k{i}", "u8", 1) for i in range(2 * 126 - 1)])  # + the namespace
    data = build_nvs_image(two_pages, 0x3000)
    assert data[2 * PAGE_SIZE:] == b"\xff" * PAGE_SIZE  # the reserved page stays erased
    with pytest.raises(CapacityError,
                       match="needs 1 more page \\(4096 bytes\\); partition is 0x3000"):
        build_nvs_image(two_pages + ns(("more", "u8", 1)), 0x3000)


@pytest.mark.parametrize("size", [0x1000, 0x2000])
def test_small_partitions_are_read_only_without_reserved_page(size):
    entries = ns(*[(f"k{i}", "u8", 1) for i in range(125 * size // PAGE_SIZE)])[:-1]
    data = build_nvs_image(entries, size)
    assert len(data) == size and data[size - PAGE_SIZE: size - PAGE_SIZE + 4] != b"\xff" * 4


@pytest.mark.parametrize("size, entries, pages", [
    (0x1000, 0, 1), (0x1000, 1, 1), (0x2000, 0, 1), (0x2000, 1, 1), (0x2000, 125, 1), (0x2000, 126, 2),
    (0x3000, 1, 3), (0x3000, 0, 3)])
def test_read_only_images_stop_after_the_pages_used(size, entries, pages):
    # nvs_partition_gen.py 0.3.0: 'generate one.csv one.bin 0x2000' with one u8 writes
    # 4096 bytes; 0x3000 and up is read/write and written in full.
    data = build_nvs_image(ns(*[(f"k{i}", "u8", 1) for i in range(entries)]), size)
    assert len(data) == pages * PAGE_SIZE
    assert data[:4] != b"\xff" * 4  # the first page is always initialised


@pytest.mark.parametrize("size", [0, 100, 0x1001, -0x1000])
def test_bad_sizes(size):
    with pytest.raises(InputError, match="multiple of 0x1000"):
        build_nvs_image([], size)


@pytest.mark.parametrize("kind, value", [("float", 1.5), ("double", -0.5)])
def test_float_in_format_version_1_is_refused(kind, value):
    entry = NvsEntry("dev", "scale", kind, value, file="v.yaml", line=3, col=5)
    with pytest.raises(InputError, match=f"{kind} value dev.scale cannot be written in format "
                                         "version 1") as err:
        build_nvs_image([entry], 0x3000, version=1)
    assert (err.value.file, err.value.line, err.value.col) == ("v.yaml", 3, 5)
    assert build_nvs_image([entry], 0x3000, version=2)  # version 2 holds it


def test_bad_version():
    with pytest.raises(InputError, match="version must be 1 or 2"):
        build_nvs_image([], 0x3000, version=3)


def test_namespaces_get_indices_in_order_of_first_use():
    entries = [NvsEntry(n, "k", "u8", 1) for n in ("z", "a", "m")]
    image = parse_nvs_image(build_nvs_image(entries, 0x3000))
    assert image.namespaces == {"z": 1, "a": 2, "m": 3}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ns1", "ns2", "ns3"]),
                          st.sampled_from(list(NVS_TYPES)), st.integers(0, 6000), st.data()),
                max_size=30), st.sampled_from([1, 2]), st.booleans())
def test_parse_build_round_trip(specs, version, encrypt):
    entries = []
    for i, (namespace, kind, length, data) in enumerate(specs):
        if version == 1 and kind in ("float", "double"):
            continue  # refused in version 1 (test_float_in_format_version_1_is_refused)
        if kind in L.INT_RANGES:
            value = data.draw(st.integers(*L.INT_RANGES[kind]))
        elif kind == "float":
            value = struct.unpack("<f", struct.pack("<f", data.draw(st.floats(-1e30, 1e30))))[0]
        elif kind == "double":
            value = data.draw(st.floats(allow_nan=False))
        elif kind == "string":
            value = "s" * min(length, 1983 if version == 1 else 3999)
        else:
            value = os.urandom(min(length, 1984) if version == 1 else length)
        entries.append(NvsEntry(namespace, f"key{i}", kind, value))
    keys = NvsKeys(os.urandom(32), os.urandom(32)) if encrypt else None
    try:
        data = build_nvs_image(entries, 0x20000, version=version, keys=keys)
    except CapacityError:
        return
    image = parse_nvs_image(data, keys=keys)
    assert image.ok, image.problems
    assert [i.to_entry() for i in image.entries] == entries
    assert image.version == version and image.encrypted == encrypt


# --- XTS ----------------------------------------------------------------------------------


def xts_reference(key: bytes, data: bytes, offsets) -> bytes:
    return b"".join(
        Cipher(algorithms.AES(key), modes.XTS(o.to_bytes(16, "little"))).encryptor()
        .update(data[32 * i: 32 * i + 32]) for i, o in enumerate(offsets))


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
       st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40), st.randoms())
def test_xts_matches_cryptography_xts(data_key, tweak_key, offsets, rnd):
    if data_key == tweak_key:
        return  # cryptography refuses equal XTS halves
    data = bytes(rnd.getrandbits(8) for _ in range(32 * len(offsets)))
    cipher = xts_encrypt_units(data_key, tweak_key, data, offsets)
    assert cipher == xts_reference(data_key + tweak_key, data, offsets)
    assert xts_decrypt_units(data_key, tweak_key, cipher, offsets) == data


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 300)), max_size=4))
def test_xts_runs_equal_units(runs):
    runs = [(64 + 4096 * page, count) for page, count in runs]
    offsets = [start + 32 * i for start, count in runs for i in range(count)]
    data = os.urandom(32 * len(offsets))
    cipher = xts_encrypt_runs(KEYS.data_key, KEYS.tweak_key, data, runs)
    assert cipher == xts_encrypt_units(KEYS.data_key, KEYS.tweak_key, data, offsets)
    assert xts_decrypt_runs(KEYS.data_key, KEYS.tweak_key, cipher, runs) == data


def test_encrypted_golden_entries_are_xts_of_the_plain_ones():
    plain = (NVS / "plain_v2.bin").read_bytes()
    encrypted = (NVS / "encrypted_v2.bin").read_bytes()
    key = KEYS.data_key + KEYS.tweak_key
    for page in range(len(plain) // PAGE_SIZE):
        base = page * PAGE_SIZE
        assert encrypted[base: base + 64] == plain[base: base + 64]  # header, bitmap: clear
        for i, (state, raw) in enumerate(items(plain, page)):
            at = base + 64 + 32 * i
            if state == L.ENTRY_STATE_EMPTY:
                assert encrypted[at: at + 32] == b"\xff" * 32  # unused entries stay erased
            else:
                assert encrypted[at: at + 32] == xts_reference(key, raw, [at])


# --- the reader: problems, not crashes ---------------------------------------------------


def sample() -> bytearray:
    entries = ns(("n", "u32", 5), ("s", "string", "hello"), ("b", "blob", bytes(5000)))
    return bytearray(build_nvs_image(entries, 0x5000))


def codes(data, keys=None):
    return [(p.code, p.page, p.entry) for p in parse_nvs_image(bytes(data), keys=keys).problems]


def test_reader_bad_entry_crc():
    data = sample()
    data[64 + 32 * 1 + 24] ^= 1  # the value of 'n'
    assert codes(data) == [("entry-crc", 0, 1)]
    assert "n" not in {i.key for i in parse_nvs_image(bytes(data)).entries}


def test_reader_bad_page_header_crc():
    data = sample()
    data[5] ^= 1  # the sequence number of page 0
    image = parse_nvs_image(bytes(data))
    assert ("page-header-crc", 0, None) in [(p.code, p.page, p.entry) for p in image.problems]
    assert image.pages[0].state == "CORRUPT"
    assert "chunk" in str(image.problems)  # page 1's chunk is left without its first part


def test_reader_data_crc_and_span():
    data = sample()
    data[64 + 32 * 3] ^= 1  # first data byte of 's'
    assert codes(data) == [("data-crc", 0, 2)]
    data = sample()
    set_state(data, 0, 3, L.ENTRY_STATE_EMPTY)  # 's' data entry not marked written
    found = codes(data)
    assert ("entry-span", 0, 2) in found and ("entry-unmarked", 0, 3) in found


def test_reader_blob_missing_chunk_and_orphans():
    data = sample()
    span = data[PAGE_SIZE + 64 + 2]
    for entry in range(span):  # erase the second chunk as ESP-IDF erases an item
        set_state(data, 1, entry, L.ENTRY_STATE_ERASED)
    found = codes(data)
    index = [i for i, (s, raw) in enumerate(items(data, 1)) if s == 2 and raw[1] == 0x48][0]
    assert found == [("blob-chunk-missing", 1, index)]
    data = sample()
    index = [i for i, (s, raw) in enumerate(items(data, 1)) if s == 2 and raw[1] == 0x48][0]
    set_state(data, 1, index, L.ENTRY_STATE_ERASED)  # the blob index
    assert sorted(c for c, _, _ in codes(data)) == ["blob-orphan-chunk"] * 2


def test_reader_blob_size_and_header_consistency():
    data = sample()
    index = [i for i, (s, raw) in enumerate(items(data, 1)) if s == 2 and raw[1] == 0x48][0]
    at = PAGE_SIZE + 64 + 32 * index
    struct.pack_into("<I", data, at + 24, 4999)
    reseal(data, 1, index)
    assert codes(data) == [("blob-size", 1, index)]
    data = sample()
    data[64 + 32 * 1 + 2] = 2  # span 2 for a u32
    reseal(data, 0, 1)
    assert codes(data) == [("entry-header", 0, 1)]
    data = sample()
    data[64 + 32 * 1 + 1] = 0x77  # unknown type
    reseal(data, 0, 1)
    assert codes(data) == [("entry-header", 0, 1)]


def test_reader_unknown_namespace_unterminated_string_and_duplicates():
    data = sample()
    data[64 + 32 * 1] = 9
    reseal(data, 0, 1)
    assert codes(data) == [("unknown-namespace", 0, 1)]
    data = sample()
    data[64 + 32 * 3 + 5] = ord("!")  # overwrite the NUL of "hello"
    struct.pack_into("<I", data, 64 + 32 * 2 + 28, zlib.crc32(b"hello!", 0xFFFFFFFF))
    reseal(data, 0, 2)
    assert codes(data) == [("string-unterminated", 0, 2)]
    data = sample()
    data[64 + 32 * 2 + 8: 64 + 32 * 2 + 9] = b"n"  # rename 's' to 'n'
    reseal(data, 0, 2)
    assert ("duplicate-key", 0, 2) in codes(data)


def test_reader_unknown_page_state_and_version():
    data = sample()
    data[0:4] = b"\x12\x34\x56\x78"
    assert ("page-state", 0, None) in codes(data)
    data = sample()
    data[8] = 0xFD
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[4:28]), 0xFFFFFFFF))
    assert ("page-version", 0, None) in codes(data)
    data = sample()
    data[4 * PAGE_SIZE + 100] = 0  # data on an uninitialised page
    assert ("page-not-empty", 4, None) in codes(data)


def test_reader_wrong_key_missing_key_and_needless_key():
    encrypted = build_nvs_image(ns(("n", "u32", 5), ("s", "string", "x")), 0x3000, keys=KEYS)
    other = NvsKeys(os.urandom(32), os.urandom(32))
    wrong = parse_nvs_image(encrypted, keys=other)
    assert wrong.wrong_key and [p.code for p in wrong.problems] == ["wrong-key"]
    assert "keys look wrong" in str(wrong.problems[0]) and not wrong.entries
    missing = parse_nvs_image(encrypted)
    assert missing.looks_encrypted and [p.code for p in missing.problems] == ["looks-encrypted"]
    plain = build_nvs_image(ns(("n", "u32", 5)), 0x3000)
    needless = parse_nvs_image(plain, keys=KEYS)
    assert [p.code for p in needless.problems] == ["not-encrypted"]
    assert not needless.encrypted and [i.value for i in needless.entries] == [5]


def test_reader_corrupt_encrypted_entry():
    data = bytearray(build_nvs_image(ns(("n", "u32", 5), ("m", "u32", 6)), 0x3000, keys=KEYS))
    data[64 + 32 + 3] ^= 0x80  # one ciphertext bit of 'n'
    image = parse_nvs_image(bytes(data), keys=KEYS)
    assert [(p.code, p.page, p.entry) for p in image.problems] == [("entry-crc", 0, 1)]
    assert [i.key for i in image.entries] == ["m"] and not image.wrong_key


def test_reader_refuses_only_bad_lengths():
    for bad in (b"", b"\xff" * 100, b"\xff" * (PAGE_SIZE + 1)):
        with pytest.raises(FormatError, match="whole number of 4096-byte pages"):
            parse_nvs_image(bad)
    assert parse_nvs_image(os.urandom(2 * PAGE_SIZE)).problems  # garbage: reported


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0x5000 - 1), st.integers(1, 255))
def test_reader_never_crashes_on_a_flipped_byte(offset, xor):
    data = sample()
    data[offset] ^= xor
    parse_nvs_image(bytes(data))


def test_image_to_json_shapes():
    entries = ns(("i", "i8", -1), ("s", "string", "t"), ("b", "blob", b"\xab\x01"),
                 ("f", "double", 2.5))
    assert image_to_json(parse_nvs_image(build_nvs_image(entries, 0x3000))) == {"app": {
        "i": {"type": "i8", "value": -1}, "s": {"type": "string", "value": "t"},
        "b": {"type": "blob", "value": "ab01"}, "f": {"type": "double", "value": 2.5}}}


def test_entry_is_a_frozen_value():
    entry = NvsEntry("a", "k", "u8", 1, file="x", line=3)
    assert entry == NvsEntry("a", "k", "u8", 1) and hash(entry) == hash(NvsEntry("a", "k", "u8", 1))
    assert (entry.file, entry.line, entry.col) == ("x", 3, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.value = 2  # type: ignore[misc]
    assert dataclasses.replace(entry, value=2) == NvsEntry("a", "k", "u8", 2)
    assert dataclasses.replace(entry, value=2).line == 3
    assert pickle.loads(pickle.dumps(entry)) == entry
    assert ENTRY_SIZE == 32 and ENTRIES_PER_PAGE == 126 and PAGE_SIZE == 4096


def test_xts_over_many_cache_steps_equals_xts_per_unit():
    """xts works 1,024 units at a time (linear cost): across steps, with scattered
    offsets, it still equals AES-256-XTS applied to each 32-byte unit on its own."""
    import random

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from idf_nvs_secure.formats.xts import (
        xts_decrypt_units,
        xts_encrypt_runs,
        xts_encrypt_units,
    )

    rnd = random.Random(14)
    data_key, tweak_key = rnd.randbytes(32), rnd.randbytes(32)
    offsets = sorted(rnd.sample(range(64, 1 << 24, 32), 2500))
    plain = rnd.randbytes(32 * len(offsets))
    expected = b"".join(
        Cipher(algorithms.AES(data_key + tweak_key), modes.XTS(o.to_bytes(16, "little")))
        .encryptor().update(plain[32 * i: 32 * i + 32]) for i, o in enumerate(offsets))
    assert xts_encrypt_units(data_key, tweak_key, plain, offsets) == expected
    assert xts_decrypt_units(data_key, tweak_key, expected, offsets) == plain
    runs = [(64, 1500), (0x10040, 1000)]
    run_offsets = [o + 32 * i for o, n in runs for i in range(n)]
    assert xts_encrypt_runs(data_key, tweak_key, plain, runs) == xts_encrypt_units(
        data_key, tweak_key, plain, run_offsets)

"""Our NVS images against the reference generator, esp-idf-nvs-partition-gen 0.3.0.

The reference package is a test-only oracle (never imported by the product).  It is
driven in-process the way its ``generate()`` drives it: ``nvs_open``, ``write_entry``
per CSV row (a ``namespace`` row before each namespace's entries), ``nvs_close``.

Inputs where the reference is documented to be wrong are not generated: strings of 3969
to 4000 bytes with their NUL, revisited namespaces, and keys named sta.ssid, sta.pswd or
ap.* (our key alphabet has no '.').  Those cases are tested in test_nvs_image.py.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from idf_nvs_secure.errors import CapacityError
from idf_nvs_secure.formats.nvs_image import PAGE_SIZE, NvsEntry, build_nvs_image
from idf_nvs_secure.formats.nvs_keys import NvsKeys
from idf_nvs_secure.formats.nvs_layout import INT_RANGES

ref = pytest.importorskip("esp_idf_nvs_partition_gen.nvs_partition_gen")


def reference_image(entries: list[NvsEntry], size: int, version: int,
                    keys: NvsKeys | None) -> bytes | None:
    """The reference tool's image, or None when it finds the partition too small."""
    out = io.BytesIO()
    read_only = size < 3 * PAGE_SIZE  # as its check_size()
    nvs = ref.nvs_open(out, size if read_only else size - PAGE_SIZE,
                       ref.Page.VERSION2 if version == 2 else ref.Page.VERSION1,
                       is_encrypt=keys is not None,
                       key=keys.data_key + keys.tweak_key if keys else None,
                       read_only=read_only)
    current = None
    try:
        for entry in entries:
            if entry.namespace != current:
                ref.write_entry(nvs, entry.namespace, "namespace", "", "")
                current = entry.namespace
            if entry.type == "blob":
                ref.write_entry(nvs, entry.key, "data", "hex2bin", entry.value.hex())
            elif entry.type == "string":
                ref.write_entry(nvs, entry.key, "data", "string", entry.value)
            else:
                ref.write_entry(nvs, entry.key, "data", entry.type, str(entry.value))
    except ref.InsufficientSizeError:
        return None
    ref.nvs_close(nvs)
    return out.getvalue()  # a read-only image (under 0x3000) stops at its last page


def check_same(entries, size, version, keys):
    expected = reference_image(entries, size, version, keys)
    if expected is None:
        with pytest.raises(CapacityError):
            build_nvs_image(entries, size, version=version, keys=keys)
    else:
        assert build_nvs_image(entries, size, version=version, keys=keys) == expected


# --- random entry sets ----------------------------------------------------------------------

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=15)
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=12)


@st.composite
def values(draw, kind: str, version: int):
    if kind in INT_RANGES:
        return draw(st.integers(*INT_RANGES[kind]))
    limit = 1984 if version == 1 else None
    if kind == "string":
        unit = draw(TEXT) or "x"
        length = draw(st.one_of(st.integers(0, 64), st.integers(64, (limit or 3968) - 1),
                                 st.sampled_from([31, 32, 33, 1983, 3935, 3936, 3967])))
        text = unit * (length // max(1, len(unit.encode())) + 1)
        encoded = text.encode()[:length].decode("utf-8", "ignore")
        size = len(encoded.encode()) + 1
        assume(size <= (limit or 3968))  # 3969..4000: the reference's PageFullError
        return encoded
    size = draw(st.one_of(st.integers(0, 100), st.integers(100, limit or 12000),
                          st.sampled_from([0, 32, 1984] + ([] if limit else [4000, 4001, 8000]))))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


@st.composite
def entry_sets(draw, version: int):
    kinds = list(INT_RANGES) + ["string", "blob"]
    namespaces = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    entries = []
    for namespace in namespaces:  # each namespace once: no revisits
        count = draw(st.one_of(st.integers(1, 8), st.integers(8, 60)))
        for number in range(count):
            key = (draw(NAMES) + f"_{number}")[-15:]  # unique within the namespace
            kind = draw(st.sampled_from(kinds))
            entries.append(NvsEntry(namespace, key, kind, draw(values(kind, version))))
    return entries


KEY_PAIRS = st.integers(0, 2**64).map(lambda seed: random.Random(seed).randbytes(64)).map(
    lambda raw: (raw[:32], raw[32:])).filter(lambda pair: pair[0] != pair[1])
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.sampled_from([1, 2]).flatmap(lambda v: st.tuples(st.just(v), entry_sets(v))),
       st.integers(1, 10))
def test_plain_images_match_the_reference(version_entries, pages):
    version, entries = version_entries
    check_same(entries, pages * PAGE_SIZE, version, None)


@SETTINGS
@given(st.sampled_from([1, 2]).flatmap(lambda v: st.tuples(st.just(v), entry_sets(v))),
       st.integers(1, 10), KEY_PAIRS)
def test_encrypted_images_match_the_reference(version_entries, pages, key_pair):
    version, entries = version_entries
    check_same(entries, pages * PAGE_SIZE, version, NvsKeys(*key_pair))


# --- page-boundary layouts, systematically --------------------------------------------------


@pytest.mark.parametrize("fill", [0, 1, 61, 120, 122, 123, 124, 125, 126])
@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 64, 3936, 3968, 3969, 4000, 4001, 8001])
def test_blob_after_filler_matches_the_reference(fill, size):
    entries = [NvsEntry("fill", f"f{i}", "u8", i % 256) for i in range(fill)]
    entries += [NvsEntry("data", "blob", "blob", bytes(range(256)) * (size // 256) +
                         bytes(size % 256)), NvsEntry("data", "after", "u16", 7)]
    check_same(entries, 0x6000, 2, None)


@pytest.mark.parametrize("fill", [0, 1, 62, 100, 123, 124, 125, 126])
@pytest.mark.parametrize("length", [0, 31, 32, 63, 1983, 1984, 3967])
@pytest.mark.parametrize("version", [1, 2])
def test_string_and_v1_blob_after_filler_match_the_reference(fill, length, version):
    if version == 1 and length > 1983:
        return
    entries = [NvsEntry("fill", f"f{i}", "u8", 1) for i in range(fill)]
    entries += [NvsEntry("data", "s", "string", "y" * length), NvsEntry("data", "n", "u8", 2)]
    if version == 1:
        entries.append(NvsEntry("data", "b", "blob", b"\x5a" * (length + 1)))
    check_same(entries, 0x5000, version, None)


@pytest.mark.parametrize("size", [0x1000, 0x2000, 0x3000])
@pytest.mark.parametrize("count", [0, 1, 125, 126, 200, 251])
@pytest.mark.parametrize("encrypted", [False, True])
def test_read_only_sizes_write_only_the_pages_used_as_the_reference(size, count, encrypted):
    entries = [NvsEntry("ro", f"k{i}", "u16", i) for i in range(count)]
    keys = NvsKeys(bytes(range(32)), bytes(range(32, 64))) if encrypted else None
    check_same(entries, size, 2, keys)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["blob_fill", "blob_sz_fill"]), st.integers(0, 5000),
                          st.integers(0, 255), TEXT), min_size=1, max_size=12),
       st.sampled_from([0x2000, 0x6000]))
def test_fill_encodings_match_the_reference(fills, size):
    from idf_nvs_secure.inputs.nvs_csv import parse_nvs_csv

    rows = [(f"f{i}", f"{name}({max(n, len(text.encode()))};0x{byte:02x})", text)
            for i, (name, n, byte, text) in enumerate(fills)]
    assume(all("," not in text and "\n" not in text and '"' not in text and "\r" not in text
               for _, _, text in rows))
    csv_text = "key,type,encoding,value\nfill,namespace,,\n" + "".join(
        f"{key},data,{encoding},{text}\n" for key, encoding, text in rows)
    entries = parse_nvs_csv(csv_text, filename="f.csv", base_dir=Path("."))
    out = io.BytesIO()
    read_only = size < 3 * PAGE_SIZE
    nvs = ref.nvs_open(out, size if read_only else size - PAGE_SIZE, ref.Page.VERSION2,
                       read_only=read_only)
    ref.write_entry(nvs, "fill", "namespace", "", "")
    try:
        for key, encoding, text in rows:
            ref.write_entry(nvs, key, "data", encoding, text)
    except ref.InsufficientSizeError:
        with pytest.raises(CapacityError):
            build_nvs_image(entries, size)
        return
    ref.nvs_close(nvs)
    assert build_nvs_image(entries, size) == out.getvalue()

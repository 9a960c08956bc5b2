"""The reference tool's CSV input: golden files, quoting, comments, files, and errors.

Invalid inputs live in tests/invalid/nvs_csv/, one file per error, each starting with
``# why: ...`` and ``# expect: LINE: MESSAGE`` comment lines (comments are part of the
format, so the files stay valid CSV apart from their one deliberate error).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.nvs_image import NvsEntry
from idf_nvs_secure.formats.nvs_layout import INT_RANGES
from idf_nvs_secure.inputs.nvs_csv import format_nvs_csv, parse_nvs_csv

TESTS = Path(__file__).resolve().parent
NVS = TESTS / "golden" / "nvs"
INVALID = sorted((TESTS / "invalid" / "nvs_csv").glob("*.csv"))


def parse(text: str, base_dir: Path = NVS, **kwargs) -> list[NvsEntry]:
    return parse_nvs_csv(text, filename="values.csv", base_dir=base_dir, **kwargs)


def test_golden_values_csv():
    entries = parse((NVS / "values.csv").read_text(encoding="utf-8"))
    by_key = {(e.namespace, e.key): e for e in entries}
    assert [e.namespace for e in entries][:1] == ["device"]
    assert by_key["device", "u64_max"].value == 2**64 - 1
    assert by_key["device", "i64_min"] == NvsEntry("device", "i64_min", "i64", -2**63)
    assert by_key["device", "empty"].value == ""
    assert by_key["device", "greeting"].value == "héllo wörld ✓"
    assert by_key["device", "b64_blob"].value == by_key["device", "small_blob"].value[:48]
    assert by_key["certs", "device_cert"].value == (NVS / "cert.der").read_bytes()
    assert len(by_key["certs", "big_blob"].value) == 10000
    assert (by_key["wifi", "channel"].file, by_key["wifi", "channel"].line) == ("values.csv", 19)


def test_fill_encodings_as_nvs_partition_gen():
    from idf_nvs_secure.formats.nvs_image import build_nvs_image

    entries = parse((NVS / "fill.csv").read_text(encoding="utf-8"))
    by_key = {e.key: e for e in entries}
    assert all(e.type == "blob" for e in entries[:-1])
    assert by_key["ssid"].value == b"\x08\0\0\0TESTSSID" + bytes(24)
    assert by_key["password"].value == b"TESTPASSWORD" + bytes(52)
    assert by_key["empty_fill"].value == b"\xff" * 8
    assert by_key["empty_sized"].value == bytes(4) + b"\xa5" * 4
    assert by_key["utf8"].value == "grüße".encode() + b" " * 5
    assert len(by_key["big"].value) == 5004
    # the reference's images, read/write and read-only
    assert build_nvs_image(entries, 0x6000) == (NVS / "fill.bin").read_bytes()
    assert build_nvs_image(entries, 0x2000) == (NVS / "fill_readonly_0x2000.bin").read_bytes()


def test_esp_idf_wifi_nvs_config_csv_is_read():
    # components/esp_wifi/test_apps/wifi_nvs_config/nvs_data.csv (ESP-IDF master)
    text = ("key,type,encoding,value\nnvs.net80211,namespace,,\n"
            "sta.ssid,data,blob_sz_fill(32;0x00),TESTSSID\n"
            "sta.pswd,data,blob_fill(64;0x00),TESTPASSWORD\n"
            "ap.ssid,data,blob_sz_fill(32;0x00),TESTSSID\n"
            "ap.passwd,data,blob_fill(64;0x00),TESTPASSWORD\nap.authmode,data,u8,3\n")
    entries = parse(text)
    assert [(e.key, e.type, len(e.value) if e.type == "blob" else e.value) for e in entries] == [
        ("sta.ssid", "blob", 36), ("sta.pswd", "blob", 64), ("ap.ssid", "blob", 36),
        ("ap.passwd", "blob", 64), ("ap.authmode", "u8", 3)]


def test_revisited_namespace():
    entries = parse((NVS / "values_revisit.csv").read_text())
    assert [(e.namespace, e.key) for e in entries][-1] == ("device", "boot_count")


def test_comments_blank_lines_quotes_and_multiline_values():
    text = (
        "# a comment before the header\n"
        "key,type,encoding,value\n"
        "\n"
        "app,namespace,,\n"
        "# a comment between rows\n"
        'motd,data,string,"line one, with a comma\n'
        "# not a comment: inside a quoted value\n"
        'line three ""quoted"""\n'
        "hexed,data,hex2bin, DEADbeef \n"
        "n,data,u16,0x1F\n"
        "neg,data,i8, -5\n"
        "spaced key,data,string,  kept  \n"
        "f,data,float,1.5\n"
        "d,data,double,-1e300\n"
        "raw,data,binary,héllo\n"
    )
    entries = parse(text)
    values = {e.key: e.value for e in entries}
    assert values["motd"] == 'line one, with a comma\n# not a comment: inside a quoted value\n' \
                             'line three "quoted"'
    assert values["hexed"] == b"\xde\xad\xbe\xef"
    assert values["n"] == 31 and values["neg"] == -5
    assert values["spaced key"] == "  kept  "
    assert values["f"] == 1.5 and values["d"] == -1e300
    assert values["raw"] == "héllo".encode()
    assert [e.line for e in entries] == [6, 9, 10, 11, 12, 13, 14, 15]


def test_windows_line_endings():
    entries = parse("key,type,encoding,value\r\napp,namespace,,\r\ns,data,string,\"a\r\nb\"\r\n")
    assert entries[0].value == "a\nb"  # universal newlines, as the tool's 'rt' mode


def test_file_entries_resolve_against_the_csv_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "blob.bin").write_bytes(b"\x00\x01")
    (tmp_path / "sub" / "text.txt").write_text("héllo\n")
    (tmp_path / "sub" / "hex.txt").write_text("0a0b\n")
    (tmp_path / "sub" / "b64.txt").write_text("AAEC\n")
    text = ("key,type,encoding,value\napp,namespace,,\n"
            "b,file,binary,sub/blob.bin\nt,file,string,sub/text.txt\n"
            "h,file,hex2bin,sub/hex.txt\n"
            f"a,file,base64,{tmp_path / 'sub' / 'b64.txt'}\n")
    values = {e.key: e.value for e in parse(text, base_dir=tmp_path)}
    assert values == {"b": b"\x00\x01", "t": "héllo\n", "h": b"\x0a\x0b", "a": b"\x00\x01\x02"}


def test_file_reader_is_injectable():
    seen = []

    def read(path: Path) -> bytes:
        seen.append(path)
        return b"\x42"

    text = "key,type,encoding,value\napp,namespace,,\nb,file,binary,x.bin\n"
    assert parse(text, base_dir=Path("/base"), read_file=read)[0].value == b"\x42"
    assert seen == [Path("/base/x.bin")]


def test_string_file_must_be_utf8(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="values.csv:3: key 't': file is not UTF-8 text"):
        parse("key,type,encoding,value\napp,namespace,,\nt,file,string,t.txt\n",
              base_dir=tmp_path)


def test_large_hex_blob():
    blob = bytes(range(256)) * 400  # 102400 bytes, 204800 hex digits: over csv's default
    entries = parse(f"key,type,encoding,value\napp,namespace,,\nb,data,hex2bin,{blob.hex()}\n")
    assert entries[0].value == blob


def test_namespace_lines_may_be_short():
    entries = parse("key,type,encoding,value\napp,namespace\nk,data,u8,1\n")
    assert entries == [NvsEntry("app", "k", "u8", 1)]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_inputs(path):
    text = path.read_text(encoding="utf-8")
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    assert header.get("why"), f"{path.name} must say why it is invalid"
    line, message = header["expect"].split(": ", 1)
    with pytest.raises(InputError) as info:
        parse_nvs_csv(text, filename=path.name, base_dir=path.parent)
    error = info.value
    assert (error.file, error.line, error.message) == (path.name, int(line) if line else None,
                                                      message)
    assert str(error).startswith(f"{path.name}:{line}: " if line else f"{path.name}: ")


# --- format_nvs_csv --------------------------------------------------------------------------


def test_format_golden_round_trip():
    entries = parse((NVS / "values.csv").read_text(encoding="utf-8"))
    assert parse(format_nvs_csv(entries)) == entries


def test_format_quotes_what_needs_quoting():
    entries = [NvsEntry("#ns", "#key", "string", "a,b\n#c\"d"), NvsEntry("#ns", "k", "u8", 1)]
    text = format_nvs_csv(entries)
    assert text.splitlines()[1] == '"#ns","namespace","",""'
    assert parse(text) == entries


KEYS = st.text(alphabet=st.characters(blacklist_characters="\x00\r", blacklist_categories=("Cs",)),
               min_size=1, max_size=5).filter(lambda k: len(k.encode()) <= 15)


@st.composite
def csv_entries(draw):
    entries = []
    for n, namespace in enumerate(draw(st.lists(KEYS, min_size=1, max_size=3, unique=True))):
        for i in range(draw(st.integers(1, 5))):
            kind = draw(st.sampled_from(list(INT_RANGES) + ["string", "blob", "double"]))
            if kind in INT_RANGES:
                value = draw(st.integers(*INT_RANGES[kind]))
            elif kind == "string":
                value = draw(st.text(alphabet=st.characters(
                    blacklist_characters="\x00\r", blacklist_categories=("Cs",)), max_size=30))
            elif kind == "blob":
                value = draw(st.binary(max_size=40))
            else:
                value = draw(st.floats(allow_nan=False))
            entries.append(NvsEntry(namespace, f"k{n}_{i}", kind, value))
    return entries


@settings(max_examples=60, deadline=None)
@given(csv_entries())
def test_format_parse_round_trip(entries):
    parsed = parse(format_nvs_csv(entries))
    assert parsed == entries
    for a, b in zip(parsed, entries):
        if isinstance(b.value, float) and math.isinf(b.value):
            assert a.value == b.value

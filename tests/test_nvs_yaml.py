"""NVS values YAML: every value source, overlays, and one test per class of error."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.nvs_image import build_nvs_image
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image
from idf_nvs_secure.inputs.nvs_yaml import (
    NvsValues,
    format_nvs_values_yaml,
    load_nvs_values,
)

ENV = {"WIFI_PASS": "s3cret", "BOOTS": "0x10", "BLOBHEX": "deadbeef"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path, *texts, env=ENV) -> NvsValues:
    files = [write(tmp_path, f"v{i}.yaml", t) for i, t in enumerate(texts)]
    return load_nvs_values(files, env=env)


def values(v: NvsValues) -> dict:
    return {ns: {k: (e.type, e.value) for k, e in keys.items()}
            for ns, keys in v.namespaces.items()}


def test_every_source_and_type(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "c.der").write_bytes(b"\x30\x82\x01")
    (tmp_path / "motd.txt").write_text("hello\n")
    v = load(tmp_path, """\
dev:
  name: widget
  u8: {type: u8, value: 255}
  i8: {type: i8, value: -128}
  u16: {type: u16, value: 0xffff}
  i16: {type: i16, value: -32768}
  u32: {type: u32, value: 4294967295}
  i32: {type: i32, value: -2147483648}
  u64: {type: u64, value: 18446744073709551615}
  i64: {type: i64, value: -9223372036854775808}
  f: {type: float, value: 1.5}
  d: {type: double, value: -2}
  cert: {type: blob, file: certs/c.der}
  motd: {type: string, file: motd.txt}
  h: {type: blob, hex: "de ad BE EF"}
  b: {type: blob, base64: "3q2+7w=="}
  pw: {type: string, env: WIFI_PASS}
  boots: {type: u32, env: BOOTS}
  eb: {type: blob, env: BLOBHEX}
  quoted: "0x10"
""")
    assert values(v)["dev"] == {
        "name": ("string", "widget"), "u8": ("u8", 255), "i8": ("i8", -128),
        "u16": ("u16", 65535), "i16": ("i16", -32768), "u32": ("u32", 4294967295),
        "i32": ("i32", -2147483648), "u64": ("u64", 2**64 - 1), "i64": ("i64", -2**63),
        "f": ("float", 1.5), "d": ("double", -2.0), "cert": ("blob", b"\x30\x82\x01"),
        "motd": ("string", "hello\n"), "h": ("blob", b"\xde\xad\xbe\xef"),
        "b": ("blob", b"\xde\xad\xbe\xef"), "pw": ("string", "s3cret"), "boots": ("u32", 16),
        "eb": ("blob", b"\xde\xad\xbe\xef"), "quoted": ("string", "0x10")}
    assert v.secrets == {("dev", "pw"), ("dev", "boots"), ("dev", "eb")}
    assert tmp_path / "certs" / "c.der" in v.inputs and tmp_path / "motd.txt" in v.inputs
    assert v.entries[0].line == 2 and v.entries[0].file.endswith("v0.yaml")


def test_order_is_entry_order_and_the_image_round_trips(tmp_path):
    v = load(tmp_path, "b:\n  z: one\n  a: {type: u8, value: 1}\na:\n  k: {type: double, value: 0.1}\n")
    assert [(e.namespace, e.key) for e in v.entries] == [("b", "z"), ("b", "a"), ("a", "k")]
    image = build_nvs_image(v.entries, 0x3000)
    assert build_nvs_image(v.entries, 0x3000) == image  # deterministic
    assert image_to_json(parse_nvs_image(image)) == {
        "b": {"z": {"type": "string", "value": "one"}, "a": {"type": "u8", "value": 1}},
        "a": {"k": {"type": "double", "value": 0.1}}}


def test_float_and_double_are_ieee754_little_endian_items(tmp_path):
    v = load(tmp_path, "n:\n  f: {type: float, value: 1.25}\n  d: {type: double, value: -0.5}\n")
    image = build_nvs_image(v.entries, 0x3000)
    # entry 0 is the namespace, 1 the float, 2 the double; data is at byte 24 of an entry
    f_entry, d_entry = image[64 + 32:64 + 64], image[64 + 64:64 + 96]
    assert f_entry[1] == 0x24 and f_entry[24:28] == struct.pack("<f", 1.25)
    assert d_entry[1] == 0x28 and d_entry[24:32] == struct.pack("<d", -0.5)
    assert math.isclose(parse_nvs_image(image).entries[-1].value, -0.5)


def test_overlays_replace_add_remove_and_keep_types(tmp_path):
    v = load(tmp_path,
             "dev:\n  model: base\n  boots: {type: u16, value: 5}\n  gone: x\nold:\n  k: v\n",
             "dev:\n  model: pro\n  boots: 700\n  gone: null\n  new: {type: i8, value: -1}\n"
             "old: null\ncloud:\n  url: https://x\n")
    assert values(v) == {"dev": {"model": ("string", "pro"), "boots": ("u16", 700),
                                 "new": ("i8", -1)},
                         "cloud": {"url": ("string", "https://x")}}


def test_overlay_keeps_integer_width_and_range_checks(tmp_path):
    with pytest.raises(InputError, match="does not fit u8|out of range|0..255"):
        load(tmp_path, "dev:\n  lvl: {type: u8, value: 1}\n", "dev:\n  lvl: 300\n")


ERROR_CASES = [
    # (files, location prefix, message fragment)
    (["dev:\n  x: {type: u99, value: 1}\n"], "v0.yaml:2:", "'u99' is not one of"),
    (["dev:\n  x: {type: u8, value: 256}\n"], "v0.yaml:2:", "u8"),
    (["dev:\n  x: {type: i16, value: -40000}\n"], "v0.yaml:2:", "i16"),
    (["dev:\n  x: {type: blob, file: nope.der}\n"], "v0.yaml:2:", "file 'nope.der' not found"),
    (["dev:\n  x: {type: string, env: NOT_SET}\n"], "v0.yaml:2:",
     "environment variable NOT_SET is not set"),
    (["dev:\n  x: a\n  x: b\n"], "v0.yaml:3:3", "duplicate key 'x'"),
    (["dev:\n  wifi_password_backup: x\n"], "v0.yaml:2:3",
     "key 'wifi_password_backup' is 20 bytes; NVS keys are at most 15"),
    (["a_namespace_too_long:\n  k: v\n"], "v0.yaml:1:1",
     "namespace 'a_namespace_too_long' is 20 bytes; NVS namespaces are at most 15"),
    (["dev:\n  x: a\n", "devcie:\n  x: null\n"], "v1.yaml:2:3", "the base has no such namespace"),
    (["dev:\n  x: a\n", "devcie: null\n"], "v1.yaml:1:1",
     "overlay removes namespace 'devcie', which the base does not have"),
    (["dev:\n  x: a\n", "dev:\n  y: null\n"], "v1.yaml:2:3", "the base has no such key"),
    (["dev:\n  x: [a\n"], "v0.yaml:3:1", "YAML syntax error"),
    (["dev:\n  x: 7\n"], "v0.yaml:2:6", "a number needs an explicit type"),
    (["dev:\n  x: true\n"], "v0.yaml:2:6", "NVS has no boolean type"),
    (["dev:\n  x: {type: u8}\n"], "v0.yaml:2:", "exactly one of value, hex, base64, file, env"),
    (["dev:\n  x: {type: u8, value: 1, hex: '01'}\n"], "v0.yaml:2:", "found: value, hex"),
    (["dev:\n  x: {type: u8, hex: '01'}\n"], "v0.yaml:2:", "the type must be blob"),
    (["dev:\n  x: {type: blob, hex: 'xyz'}\n"], "v0.yaml:2:", "not valid hex"),
    (["dev:\n  x: {type: blob, value: abc}\n"], "v0.yaml:2:", "hex, base64 or file"),
    (["dev:\n  x: {type: string, value: 12}\n"], "v0.yaml:2:", "quote it"),
    (["dev:\n  x: {type: string, value: " + "a" * 4000 + "}\n"], "v0.yaml:2:", "4000"),
    (["dev:\n  x: {type: u32, env: WIFI_PASS}\n"], "v0.yaml:2:", "does not hold a u32"),
    (["dev: null\n"], "v0.yaml:1:", "namespace 'dev' has no keys"),
    (["dev:\n  x: null\n"], "v0.yaml:2:", "key 'x' has no value"),
    (["dev:\n  x: a\n", "dev:\n  x: {type: u8, value: 1}\n  y: z\n"], None, None),
    (["dev:\n  x: {type: u8, value: 1}\n", "dev:\n  x: text\n"], "v1.yaml:2:",
     "a bare text value would make it a string"),
    (["[1, 2]\n"], "v0.yaml:1:", "expected a mapping"),
    ([""], "v0.yaml:1", "the file is empty"),
]


@pytest.mark.parametrize("texts, where, message", ERROR_CASES)
def test_errors_name_file_line_and_column(tmp_path, texts, where, message):
    if where is None:  # an explicit type change in an overlay is allowed
        load(tmp_path, *texts)
        return
    with pytest.raises(InputError) as info:
        load(tmp_path, *texts)
    exc = info.value
    location = ":".join(str(x) for x in (Path(exc.file).name, exc.line, exc.col)
                        if x is not None)
    assert location.startswith(where.rstrip(":")), (location, str(exc))
    assert message in f"{exc} {exc.hint}", str(exc)


def test_unset_env_is_never_an_empty_value(tmp_path):
    with pytest.raises(InputError, match="not set"):
        load(tmp_path, "dev:\n  x: {type: string, env: EMPTY_NOT_SET}\n", env={})
    v = load(tmp_path, "dev:\n  x: {type: string, env: E}\n", env={"E": ""})
    assert values(v) == {"dev": {"x": ("string", "")}}  # set but empty is a real value


def test_format_round_trips_through_the_reader(tmp_path):
    v = load(tmp_path, "dev:\n  s: 'yes: no # x'\n  n: {type: i64, value: -5}\n"
                       "  b: {type: blob, hex: '00ff'}\n  f: {type: double, value: 0.1}\n")
    text = format_nvs_values_yaml(v.namespaces)
    again = load_nvs_values([write(tmp_path, "again.yaml", text)], env={})
    assert values(again) == values(v)


# --- fill: fixed-size blob fields (CSV blob_fill / blob_sz_fill) ----------------------

GOLDEN_NVS = Path(__file__).resolve().parent / "golden" / "nvs"


def test_fill_yaml_gives_the_reference_image_of_fill_csv():
    from idf_nvs_secure.inputs.nvs_csv import parse_nvs_csv

    v = load_nvs_values([GOLDEN_NVS / "fill.yaml"], env={"FILL_PASSWORD": "TESTPASSWORD"})
    csv_entries = parse_nvs_csv((GOLDEN_NVS / "fill.csv").read_text(encoding="utf-8"),
                                filename="fill.csv", base_dir=GOLDEN_NVS)
    assert [(e.key, e.type, e.value) for e in v.entries] == \
        [(e.key, e.type, e.value) for e in csv_entries]
    assert build_nvs_image(v.entries, 0x6000) == (GOLDEN_NVS / "fill.bin").read_bytes()
    assert v.secrets == {("wifi_like", "password")}  # from env: masked


def test_fill_content_from_hex_and_file(tmp_path):
    (tmp_path / "raw.bin").write_bytes(b"\x01\x02")
    v = load(tmp_path, "a:\n  h: {type: blob, hex: 'de ad', fill: {size: 4, byte: 0xee}}\n"
                       "  f: {type: blob, file: raw.bin, fill: {size: 3, byte: 0, length_prefix: u32}}\n")
    assert v.lookup("a", "h").value == b"\xde\xad\xee\xee"
    assert v.lookup("a", "f").value == b"\x02\0\0\0\x01\x02\0"


@pytest.mark.parametrize("spec, where, message", [
    ("{type: blob, value: toolong, fill: {size: 4, byte: 0}}", "2:26",
     "key 'k': the value is 7 bytes, longer than the 4-byte field it fills"),
    ("{type: string, value: x, fill: {size: 4, byte: 0}}", "2:37",
     "fill makes a blob, so the type must be blob, not string"),
    ("{type: blob, value: x, hex: '00', fill: {size: 4, byte: 0}}", "2:6",
     "key 'k' with fill takes at most one of value, hex, base64, file, env (found: value, hex)"),
    ("{type: blob, value: 12, fill: {size: 4, byte: 0}}", "2:26",
     "the text a fill pads must be a string, got 12"),
    ("{type: blob, fill: {size: 4}}", "2:25", "missing required field 'byte'"),
])
def test_fill_errors(tmp_path, spec, where, message):
    path = write(tmp_path, "v.yaml", f"a:\n  k: {spec}\n")
    with pytest.raises(InputError) as info:
        load_nvs_values([path], env={})
    assert str(info.value).endswith(f"v.yaml:{where}: {message}"), str(info.value)

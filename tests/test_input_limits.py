"""Inputs that must not be taken in silently (issue 12, the input side): key derivation
contexts that could collide, mistyped master secrets, weak keys, YAML that never ends,
file sources that are not small regular files, control characters in names and paths."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fixture_projects import BASIC_PROJECT, ESP32_FLASH_ENC, PARTITIONS_WITH_KEYS

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import KeyMaterialError
from idf_nvs_secure.inputs.keysource import (
    DERIVATION_VERSION,
    SecretSpec,
    derive_hmac_key,
    derive_nvs_keys,
    read_master_secret,
)

SECRET = bytes(range(32))


def make_project(root: Path, **files: str) -> Path:
    defaults = {"nvs_secure.yaml": BASIC_PROJECT, "partitions.yaml": PARTITIONS_WITH_KEYS,
                "values.yaml": "dev:\n  model: base\n", "sdkconfig.defaults": ESP32_FLASH_ENC}
    defaults.update(files)
    for name, text in defaults.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def one_error(result, *parts: str) -> str:
    """The single 'error: ...' line of a failed command (exit 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert not any(line.startswith("error: ") for line in lines[1:]), result.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


# --- finding 3: the derivation context is unambiguous ----------------------------------------


def test_nul_in_a_context_field_no_longer_collides_with_another_context():
    a = derive_nvs_keys(SECRET, product="pro\0nvs_keys", partition="SN-0001")
    b = derive_nvs_keys(SECRET, product="pro", partition="nvs_keys", device_id="SN-0001")
    assert a != b


def test_no_device_and_an_empty_device_id_derive_different_keys():
    assert derive_nvs_keys(SECRET, product="p", partition="n") != \
        derive_nvs_keys(SECRET, product="p", partition="n", device_id="")


def _hkdf(length: int, *fields: str) -> bytes:
    # The version-2 encoding, written out here independently of the library.
    info = b"idf-nvs-secure/derive/v2" + b"".join(
        len(f.encode()).to_bytes(2, "big") + f.encode() for f in fields)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"idf-nvs-secure/v1",
                info=info).derive(SECRET)


def test_derivation_version_2_known_answers():
    assert DERIVATION_VERSION == 2
    keys = derive_nvs_keys(SECRET, product="pro", partition="nvs_keys", device_id="SN-0001")
    okm = _hkdf(64, "nvs_keys", "pro", "nvs_keys", "SN-0001")
    assert (keys.data_key, keys.tweak_key) == (okm[:32], okm[32:])
    # pinned bytes, so that neither the encoding nor the salt can drift unnoticed
    assert okm.hex() == KNOWN_NVS_KEYS
    assert derive_hmac_key(SECRET, product="basic", partition="nvs") == \
        _hkdf(32, "hmac_key", "basic", "nvs")
    keys = derive_nvs_keys(SECRET, product="basic", partition="nvs_keys")
    assert keys.data_key + keys.tweak_key == _hkdf(64, "nvs_keys", "basic", "nvs_keys")


KNOWN_NVS_KEYS = ("f96c42d971c6fe45d991a2e0eeb4d6409589f020ccf559d0f4afe7b1f57d9aed"
                  "4eed6dd4c5ed0370d21ce0c0bc944b36008ac9ee8baff0dbed6388e62c8eb3aa")


def test_a_product_name_with_a_nul_is_a_located_error(tmp_path):
    project = make_project(tmp_path / "p", **{
        "nvs_secure.yaml": BASIC_PROJECT.replace("  basic: {}", '  basic: {}\n  "pro\\0x": {}')})
    result = CliRunner().invoke(cli, ["build", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out")], env={"MASTER": None})
    one_error(result, "nvs_secure.yaml:9:3:", "product name", "control character (NUL)")
    assert not (tmp_path / "out").exists()


def test_a_device_id_with_a_control_character_is_a_located_error(tmp_path):
    from idf_nvs_secure.errors import InputError
    from idf_nvs_secure.release.devices_csv import load_devices

    csv = tmp_path / "devices.csv"
    csv.write_text("device_id\nSN-1\nSN\x1b[2J\n")
    with pytest.raises(InputError) as info:
        load_devices(csv, batch=None)
    assert info.value.line == 3 and "control character (U+001B)" in info.value.message


# --- finding 9: master secret forms are strict -----------------------------------------------

HEX = SECRET.hex()


@pytest.mark.parametrize("text, expected", [
    (HEX, SECRET),
    ("0x" + HEX, SECRET),
    ("0X" + HEX.upper(), SECRET),
    (" ".join(HEX[i:i + 8] for i in range(0, 64, 8)) + "\n", SECRET),  # spaces inside
    ("0x" + HEX[:32] + "\n  " + HEX[32:] + "\n", SECRET),
    (HEX + "abcd", SECRET + b"\xab\xcd"),  # longer even-length hex
    ("correct horse battery staple, twice over", b"correct horse battery staple, twice over"),
])
def test_accepted_master_secret_forms(text, expected):
    secret = read_master_secret(SecretSpec(env="S"), env={"S": text})
    assert secret.material == expected


@pytest.mark.parametrize("text, problem", [
    (HEX[:63], "63 hex digits, an odd number"),
    (HEX + "a", "65 hex digits, an odd number"),
    (HEX[:62], "62 hex digits (31 bytes); at least 64"),
    ("0x" + HEX[:63], "63 hex digits"),
    ("0x" + "g" * 64, "starts with 0x but is not all hex digits"),
    ("hunter2-but-longer", "18 bytes of text that is not hex; at least 32"),
])
def test_malformed_master_secrets_are_refused_without_the_value(text, problem):
    with pytest.raises(KeyMaterialError) as info:
        read_master_secret(SecretSpec(env="S", where="nvs_secure.yaml:3"), env={"S": text})
    message = str(info.value)
    assert message.startswith("nvs_secure.yaml:3: the master secret in environment variable S")
    assert problem in message
    assert text not in message and text not in (info.value.hint or "")
    assert "64 or more hex digits" in info.value.hint


def test_master_secret_files_raw_and_malformed(tmp_path):
    raw = bytes(range(200, 232)) + b"\n"  # binary: used exactly, newline included
    (tmp_path / "raw.bin").write_bytes(raw)
    assert read_master_secret(SecretSpec(file=Path("raw.bin")), base_dir=tmp_path).material == raw
    (tmp_path / "short.bin").write_bytes(b"\x00\xff" * 8)
    with pytest.raises(KeyMaterialError) as info:
        read_master_secret(SecretSpec(file=Path("short.bin")), base_dir=tmp_path)
    assert str(info.value) == "short.bin: the master secret is 16 bytes of binary data; " \
        "at least 32 are needed"
    with pytest.raises(KeyMaterialError) as info:
        read_master_secret(SecretSpec(file=Path("short.bin"), where="nvs_secure.yaml:4"),
                           base_dir=tmp_path)
    assert str(info.value).startswith("nvs_secure.yaml:4: the master secret in file short.bin ")


def test_cli_release_with_a_65_digit_secret_file_is_one_error_line(tmp_path):
    project = make_project(tmp_path / "p")
    (tmp_path / "secret.hex").write_text("0x" + HEX + "f\n")
    result = CliRunner().invoke(cli, ["release", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out"), "--master-secret-file",
                                      str(tmp_path / "secret.hex")], env={"MASTER": None})
    line = one_error(result, "secret.hex: the master secret is 65 hex digits, an odd number")
    assert HEX not in result.output and line.startswith("error: ")
    assert not (tmp_path / "out").exists()


# --- finding 10: weak keys files are refused -------------------------------------------------

GOOD = bytes(range(1, 33))


@pytest.mark.parametrize("data_key, tweak_key, problem", [
    (b"\x00" * 32, GOOD, "data key (eky, bytes 0..31) is all 0x00"),
    (b"\xff" * 32, GOOD, "data key (eky, bytes 0..31) is all 0xFF"),
    (GOOD, b"\x00" * 32, "tweak key (tky, bytes 32..63) is all 0x00"),
    (GOOD, b"\xff" * 32, "tweak key (tky, bytes 32..63) is all 0xFF"),
    (GOOD, GOOD, "data key and tweak key must differ"),
])
def test_weak_keys_files_are_refused_by_keys_and_source_file(tmp_path, data_key, tweak_key,
                                                             problem):
    import zlib

    head = data_key + tweak_key
    image = head + zlib.crc32(head, 0xFFFFFFFF).to_bytes(4, "little") + b"\xff" * 4028
    (tmp_path / "weak.bin").write_bytes(image)
    (tmp_path / "v.yaml").write_text("dev:\n  model: base\n")
    out = tmp_path / "nvs.bin"
    result = CliRunner().invoke(cli, ["nvs", "build", str(tmp_path / "v.yaml"), "--size",
                                      "0x6000", "-o", str(out), "--keys",
                                      str(tmp_path / "weak.bin")])
    one_error(result, "weak.bin: ", problem)
    assert not out.exists()
    project = make_project(tmp_path / "p", **{"nvs_secure.yaml": BASIC_PROJECT.replace(
        "keys: {source: derive}", "keys: {source: file, file: ../weak.bin}")})
    result = CliRunner().invoke(cli, ["build", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out")], env={"MASTER": None})
    one_error(result, "weak.bin: ", problem)
    assert not (tmp_path / "out").exists()


def test_the_golden_keys_are_not_weak(golden):
    from idf_nvs_secure.formats.nvs_keys import parse_nvs_keys

    for name in ("nvs_keys.bin", "hmac_derived_nvs_keys.bin"):
        parse_nvs_keys((golden / "nvs" / name).read_bytes())


# --- finding 5: YAML that never ends, and control characters in paths ------------------------


def nvs_build(tmp_path: Path, values_text: str):
    (tmp_path / "v.yaml").write_text(values_text)
    result = CliRunner().invoke(cli, ["nvs", "build", str(tmp_path / "v.yaml"), "--size",
                                      "0x6000", "-o", str(tmp_path / "nvs.bin")])
    assert not (tmp_path / "nvs.bin").exists()
    return result


def billion_laughs() -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "dev:\n" + "".join(f"  {line}\n" for line in lines)


def test_an_alias_bomb_ends_at_once_as_a_located_error(tmp_path):
    import time

    text = billion_laughs()
    assert len(text) < 1100  # about 1 KB, as in the issue
    start = time.monotonic()
    result = nvs_build(tmp_path, text)
    assert time.monotonic() - start < 1.0
    one_error(result, "v.yaml:5:", "aliases expand to more than 10000 nodes")


def test_shared_aliases_within_the_limit_still_load(tmp_path):
    from idf_nvs_secure.inputs.yamlsource import load_yaml

    doc = load_yaml("a: &a {type: u8, value: 1}\nb: [*a, *a]\n", "f.yaml")
    assert doc.data["b"] == [{"type": "u8", "value": 1}] * 2


@pytest.mark.parametrize("text, where, message", [
    ("dev: &a [*a]\n", "v.yaml:1:10:", "alias *a is inside the node it names"),
    ("dev: &a {k: *a}\n", "v.yaml:1:13:", "alias *a is inside the node it names"),
    ("dev:\n  k: !foo 1\n", "v.yaml:2:6:", "unknown YAML tag '!foo'"),
    ("dev: !foo {k: x}\n", "v.yaml:1:6:", "unknown YAML tag '!foo'"),
    ("dev:\n  k: !!binary aGk=\n", "v.yaml:2:6:", "unknown YAML tag '!!binary'"),
    ("dev:\n  k: a\x00b\n", "v.yaml:2:7:", "may not contain the character NUL"),
    ("dev:\n" + "  " + "[" * 150 + "]" * 150 + "\n", "v.yaml:2:", "nested more than 100"),
    ('dev:\n  k: {type: blob, file: "c\\0.der"}\n', "v.yaml:2:25:",
     "file 'c\\x00.der' contains a control character (NUL)"),
    ('dev:\n  k: {type: blob, file: "c\\e.der"}\n', "v.yaml:2:25:",
     "contains a control character (U+001B)"),
])
def test_yaml_limits_are_one_line_errors(tmp_path, text, where, message):
    one_error(nvs_build(tmp_path, text), where, message)


@pytest.mark.parametrize("old, new, where", [
    ("nvs: {values: [values.yaml]}", 'nvs: {values: ["val\\0ues.yaml"]}', ":6:"),
    ("keys: {source: derive}", 'keys: {source: file, file: "k\\0.bin"}', ":4:"),
    ('master_secret: {env: MASTER, development_default: "%s"}' % ("de" * 32),
     'master_secret: {env: MASTER, file: "s\\x01.hex"}', ":3:"),
    ("partitions: partitions.yaml", 'partitions: "partitions\\0.yaml"', ":2:"),
])
def test_control_characters_in_paths_of_the_project_file(tmp_path, old, new, where):
    assert old in BASIC_PROJECT
    project = make_project(tmp_path / "p", **{"nvs_secure.yaml": BASIC_PROJECT.replace(old, new)})
    result = CliRunner().invoke(cli, ["build", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out")], env={"MASTER": None})
    one_error(result, "nvs_secure.yaml" + where, "contains a control character")
    assert not (tmp_path / "out").exists()


# --- finding 6: file sources are small regular files -----------------------------------------


def test_dev_zero_as_a_file_source_is_refused_at_once(tmp_path):
    import time

    start = time.monotonic()
    result = nvs_build(tmp_path, "dev:\n  k: {type: blob, file: /dev/zero}\n")
    assert time.monotonic() - start < 1.0
    one_error(result, "v.yaml:2:25:", "file '/dev/zero' is a device, not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_a_file_source_never_blocks(tmp_path):
    import signal

    os.mkfifo(tmp_path / "pipe")
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("reading the FIFO blocked"))
    signal.alarm(5)
    try:
        result = nvs_build(tmp_path, "dev:\n  k: {type: string, file: pipe}\n")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    one_error(result, "v.yaml:2:27:", "file 'pipe' is a FIFO (named pipe), not a regular file")


@pytest.mark.parametrize("type_, size, limit", [
    ("blob", 508_001, 508_000),
    ("string", 4_000, 3_999),
    ("u32", 4_001, 4_000),
])
def test_file_sources_larger_than_an_entry_are_refused_before_reading(tmp_path, type_, size,
                                                                      limit):
    with open(tmp_path / "big", "wb") as fh:
        fh.truncate(size)  # sparse: stat says how big, nothing needs reading
    result = nvs_build(tmp_path, f"dev:\n  k: {{type: {type_}, file: big}}\n")
    one_error(result, f"file 'big' is {size} bytes; at most {limit} can be stored")


def test_a_directory_and_a_missing_file_source(tmp_path):
    (tmp_path / "d").mkdir()
    one_error(nvs_build(tmp_path, "dev:\n  k: {type: blob, file: d}\n"),
              "file 'd' is a directory, not a regular file")
    one_error(nvs_build(tmp_path, "dev:\n  k: {type: blob, file: nope.der}\n"),
              "file 'nope.der' not found (relative to ")


def test_file_sources_outside_the_project_folder_are_listed(tmp_path):
    from idf_nvs_secure.inputs.nvs_yaml import load_nvs_values
    from idf_nvs_secure.inputs.project import load_project, resolve_project

    outside = tmp_path / "elsewhere" / "cert.der"
    outside.parent.mkdir()
    outside.write_bytes(b"\x30\x82")
    project = make_project(tmp_path / "p", **{
        "values.yaml": "dev:\n  inside: {type: blob, file: certs/dev.der}\n"
                       "  outside: {type: blob, file: ../elsewhere/cert.der}\n"
                       "  linked: {type: blob, file: link.der}\n"})
    (project / "certs").mkdir()
    (project / "certs" / "dev.der").write_bytes(b"\x01")
    (project / "link.der").symlink_to(outside)
    resolved = resolve_project(load_project(project), "basic", env={})
    assert resolved.values["nvs"].external_files == (outside.resolve(),)
    # alone, a values file's own folder is the project folder
    values = load_nvs_values([project / "values.yaml"], env={})
    assert values.external_files == (outside.resolve(),)
    assert load_nvs_values([project / "values.yaml"], env={},
                           root=tmp_path).external_files == ()

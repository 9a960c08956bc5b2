"""``idf-nvs-secure nvs build`` and ``nvs dump``, in-process with click's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.formats.nvs_keys import parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image

NVS = Path(__file__).resolve().parent / "golden" / "nvs"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A copy of the golden folder (values files refer to cert.der next to them)."""
    folder = tmp_path / "in"
    shutil.copytree(NVS, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_error(result, location: str, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {location}: "), lines[0]
    assert message in lines[0]


@pytest.mark.parametrize("args, golden", [
    (["values.csv", "--size", "0x10000"], "plain_v2.bin"),
    (["values.csv", "--size", "64K"], "plain_v2.bin"),
    (["values.csv", "--size", "65536", "--keys", "nvs_keys.bin"], "encrypted_v2.bin"),
    (["values_v1.csv", "--size", "0x10000", "--format-version", "1"], "plain_v1.bin"),
])
def test_build_writes_the_golden_image(work, tmp_path, args, golden):
    out = tmp_path / "out" / "nvs.bin"
    args = [str(work / args[0]), *[str(work / a) if a.endswith(".bin") else a for a in args[1:]]]
    result = run("nvs", "build", *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (NVS / golden).read_bytes()
    assert result.stdout.count("\n") == 1
    assert "19 entries" in result.stdout or "18 entries" in result.stdout
    assert ("encrypted with keys SHA256:" in result.stdout) == ("--keys" in args)
    assert "pages used" in result.stdout


def test_build_relative_paths_are_relative_to_the_csv(work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the CSV's folder: cert.der is still found
    result = run("nvs", "build", str(work / "values.csv"), "--size", "0x10000", "-o", "x.bin")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.bin").read_bytes() == (NVS / "plain_v2.bin").read_bytes()


def test_build_small_partition_says_read_only(work, tmp_path):
    (work / "one.csv").write_text("key,type,encoding,value\napp,namespace,,\nx,data,u8,3\n")
    out = tmp_path / "small.bin"
    result = run("nvs", "build", str(work / "one.csv"), "--size", "4K", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "1 entries, 1 of 1 pages used (read-only NVS" in result.stdout
    assert len(out.read_bytes()) == 0x1000
    # at 0x2000 too the reference writes only the one page used
    result = run("nvs", "build", str(work / "one.csv"), "--size", "0x2000", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert ("1 entries, 1 of 2 pages used (read-only NVS, under 0x3000 bytes: only the pages "
            "used are written, 4096 bytes, as nvs_partition_gen.py does)") in result.stdout
    assert len(out.read_bytes()) == 0x1000


def test_build_error_in_csv_leaves_no_output(work, tmp_path):
    (work / "bad.csv").write_text("key,type,encoding,value\napp,namespace,,\nx,data,u8,300\n")
    out = tmp_path / "bad.bin"
    result = run("nvs", "build", str(work / "bad.csv"), "--size", "0x3000", "-o", str(out))
    assert_error(result, f"{work / 'bad.csv'}:3", "key 'x': value 300 does not fit u8 (0..255)")
    assert not out.exists()


def test_build_error_keeps_an_old_output_untouched(work, tmp_path):
    out = tmp_path / "nvs.bin"
    out.write_bytes(b"old")
    result = run("nvs", "build", str(work / "values.csv"), "--size", "0x3000", "-o", str(out))
    assert_error(result, f"{work / 'values.csv'}:22",
                 "key 'big_blob' in namespace 'certs' does not fit: the entries need 5 data "
                 "pages and the partition has room for 2 data pages plus one reserved page; "
                 "needs 3 more pages (12288 bytes); partition is 0x3000")
    assert "hint: make the partition at least 0x6000 bytes" in result.stderr
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".nvs.bin")] == []


@pytest.mark.parametrize("args, location, message", [
    (["--size", "0x1234"], None, "must be a positive multiple of 0x1000"),
    (["--size", "lots"], None, "--size: invalid number 'lots'"),
    (["--keys", "missing.bin"], "missing.bin", "no such file"),
    (["--keys", "values.csv"], "values.csv", "nvs_keys"),
])
def test_build_option_errors(work, tmp_path, args, location, message):
    args = [str(work / a) if a.endswith((".bin", ".csv")) else a for a in args]
    if "--size" not in args:
        args += ["--size", "0x10000"]
    out = tmp_path / "o.bin"
    result = run("nvs", "build", str(work / "values.csv"), *args, "-o", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and message in line[0]
    if location:
        assert line[0].startswith(f"error: {work / location}")
    assert not out.exists()


def test_build_unknown_values_suffix(work, tmp_path):
    (work / "values.txt").write_text("")
    result = run("nvs", "build", str(work / "values.txt"), "--size", "0x3000", "-o",
                 str(tmp_path / "o.bin"))
    assert_error(result, str(work / "values.txt"), "unsupported values file type '.txt'")


def test_build_missing_values_file(tmp_path):
    result = run("nvs", "build", str(tmp_path / "nope.csv"), "--size", "0x3000", "-o",
                 str(tmp_path / "o.bin"))
    assert_error(result, str(tmp_path / "nope.csv"), "no such file")


# --- dump ---------------------------------------------------------------------------------


def test_dump_listing(work):
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), "--keys",
                 str(work / "nvs_keys.bin"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "namespace device" in out and "namespace certs" in out
    assert "    serial      string   10 B  'SN-000814'" in out
    assert "    u64_max     u64       8 B  18446744073709551615" in out
    assert "(10000 bytes)" in out and "3901 B  'xxxx" in out and "x…'" in out  # shortened
    assert max(len(line) for line in out.splitlines()) < 120
    assert result.stderr == ""


def test_dump_json_is_image_to_json(work):
    result = run("nvs", "dump", str(work / "plain_v1.bin"), "--json")
    assert result.exit_code == 0
    expected = image_to_json(parse_nvs_image((NVS / "plain_v1.bin").read_bytes()))
    assert json.loads(result.stdout) == expected
    assert json.loads(result.stdout)["certs"]["device_cert"]["value"] == \
        (NVS / "cert.der").read_bytes().hex()


def test_dump_reports_problems_on_stderr_and_exits_1(work, tmp_path):
    data = bytearray((NVS / "plain_v2.bin").read_bytes())
    data[64 + 32 * 1 + 24] ^= 1  # corrupt the value of device/u8_max
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    result = run("nvs", "dump", str(bad), "--json")
    assert result.exit_code == 1
    assert "u8_max" not in json.loads(result.stdout)["device"]
    assert "i8_min" in json.loads(result.stdout)["device"]  # the rest is still there
    assert result.stderr.strip() == f"problem: {bad}: page 0, entry 1: entry CRC mismatch"


def test_dump_wrong_and_missing_keys(work, tmp_path):
    keys = parse_nvs_keys((NVS / "nvs_keys.bin").read_bytes())
    assert keys  # golden keys parse
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), "--keys",
                 str(work / "hmac_derived_nvs_keys.bin"))
    assert result.exit_code == 1 and "keys look wrong" in result.stderr
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"))
    assert result.exit_code == 1 and "looks encrypted" in result.stderr


def test_dump_with_a_wrong_key_never_says_decrypted(work):
    # issue 12, finding 13: the header ended in "decrypted" and --json printed {}
    wrong = ("--keys", str(work / "hmac_derived_nvs_keys.bin"))
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), *wrong)
    assert result.exit_code == 1
    header = result.stdout.splitlines()[0]
    assert header.endswith("NOT decrypted: wrong key (no entry decrypts with the keys given)")
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), *wrong, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["decrypted"] is False and data["problem"]["code"] == "wrong-key"
    assert "decrypts with these keys" in data["problem"]["message"]
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"decrypted": False, "problem": {
        "code": "looks-encrypted", "message": json.loads(result.stdout)["problem"]["message"]}}
    assert "NOT decrypted: looks encrypted" in run("nvs", "dump",
                                                   str(work / "encrypted_v2.bin")).stdout
    result = run("nvs", "dump", str(work / "encrypted_v2.bin"), "--keys",
                 str(work / "nvs_keys.bin"))
    assert result.exit_code == 0 and result.stdout.splitlines()[0].endswith(", decrypted")


def test_dump_bad_length_is_an_error(tmp_path):
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\xff" * 100)
    assert_error(run("nvs", "dump", str(odd)), str(odd), "whole number of 4096-byte pages")

"""nvs_keys partition: golden bytes, round trips, CSPRNG generation, HMAC derivation, CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import FormatError, KeyMaterialError
from idf_nvs_secure.formats import nvs_keys as nk

NVS = Path(__file__).resolve().parent / "golden" / "nvs"


def test_golden_nvs_keys_round_trip():
    raw = (NVS / "nvs_keys.bin").read_bytes()
    keys = nk.parse_nvs_keys(raw)
    assert nk.build_nvs_keys(keys) == raw
    assert len(raw) == nk.NVS_KEYS_PARTITION_SIZE


def test_hmac_derivation_matches_golden():
    hmac_key = (NVS / "hmac_key.bin").read_bytes()
    expected = (NVS / "hmac_derived_nvs_keys.bin").read_bytes()
    assert nk.build_nvs_keys(nk.derive_nvs_keys_from_hmac(hmac_key)) == expected


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_build_parse_round_trip(data_key, tweak_key):
    if data_key == tweak_key:
        with pytest.raises(KeyMaterialError):
            nk.NvsKeys(data_key, tweak_key)
        return
    keys = nk.NvsKeys(data_key, tweak_key)
    image = nk.build_nvs_keys(keys)
    assert image[68:] == b"\xff" * (4096 - 68)
    if {data_key, tweak_key} & {b"\x00" * 32, b"\xff" * 32}:  # weak: never parsed
        with pytest.raises(KeyMaterialError):
            nk.parse_nvs_keys(image)
        return
    assert nk.parse_nvs_keys(image) == keys


def test_crc_is_little_endian_zlib_crc32_with_all_ones_start():
    import struct
    import zlib

    keys = nk.NvsKeys(bytes(range(32)), bytes(range(32, 64)))
    image = nk.build_nvs_keys(keys)
    assert struct.unpack_from("<I", image, 64)[0] == zlib.crc32(image[:64], 0xFFFFFFFF)


def test_corrupt_and_erased_images_are_rejected():
    raw = bytearray((NVS / "nvs_keys.bin").read_bytes())
    raw[5] ^= 1
    with pytest.raises(FormatError, match="CRC mismatch"):
        nk.parse_nvs_keys(bytes(raw))
    with pytest.raises(KeyMaterialError, match="erased"):
        nk.parse_nvs_keys(b"\xff" * 4096)
    with pytest.raises(FormatError, match="expected 4096"):
        nk.parse_nvs_keys(b"\x00" * 10)


def test_generation_uses_injected_rng_and_never_returns_equal_halves():
    draws = iter([b"\x01" * 64, b"\xff" * 32 + b"\x02" * 32, bytes(range(64))])
    keys = nk.generate_nvs_keys(rng=lambda n: next(draws))
    assert keys == nk.NvsKeys(bytes(range(32)), bytes(range(32, 64)))


def test_generation_defaults_to_os_csprng():
    import secrets

    assert nk.generate_nvs_keys.__defaults__ == (secrets.token_bytes,)
    assert nk.generate_nvs_keys() != nk.generate_nvs_keys()


def test_repr_and_fingerprint_never_show_key_bytes():
    keys = nk.parse_nvs_keys((NVS / "nvs_keys.bin").read_bytes())
    for text in (repr(keys), str(keys), keys.fingerprint):
        assert keys.data_key.hex()[:8] not in text
        assert keys.tweak_key.hex()[:8] not in text
    assert keys.fingerprint.startswith("SHA256:")


# --- CLI -------------------------------------------------------------------------------


def run(args, **kw):
    return CliRunner().invoke(cli, args, **kw)


def test_cli_generate_writes_0600_and_refuses_overwrite(tmp_path):
    out = tmp_path / "nvs_keys.bin"
    result = run(["keys", "generate", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    first = out.read_bytes()
    keys = nk.parse_nvs_keys(first)
    assert keys.data_key.hex() not in result.output

    again = run(["keys", "generate", "-o", str(out)])
    assert again.exit_code == 2
    assert again.stderr.startswith(f"error: {out}: key file exists")
    assert "Traceback" not in again.output
    assert out.read_bytes() == first

    forced = run(["keys", "generate", "-o", str(out), "--force"])
    assert forced.exit_code == 0
    assert out.read_bytes() != first


def test_cli_generate_from_hmac_key(tmp_path):
    out = tmp_path / "derived.bin"
    result = run(["keys", "generate", "-o", str(out), "--hmac-key", str(NVS / "hmac_key.bin")])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (NVS / "hmac_derived_nvs_keys.bin").read_bytes()


def test_cli_generate_new_hmac_key(tmp_path):
    hmac_file, out = tmp_path / "hmac.bin", tmp_path / "k.bin"
    result = run(["keys", "generate", "-o", str(out), "--hmac-key", str(hmac_file),
                  "--new-hmac-key"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(hmac_file).st_mode) == 0o600
    hmac_key = hmac_file.read_bytes()
    assert nk.parse_nvs_keys(out.read_bytes()) == nk.derive_nvs_keys_from_hmac(hmac_key)
    assert hmac_key.hex() not in result.output


def test_cli_generate_refuses_before_writing_anything(tmp_path):
    hmac_file, out = tmp_path / "hmac.bin", tmp_path / "k.bin"
    out.write_bytes(b"old")
    result = run(["keys", "generate", "-o", str(out), "--hmac-key", str(hmac_file),
                  "--new-hmac-key"])
    assert result.exit_code == 2
    assert not hmac_file.exists()
    assert out.read_bytes() == b"old"


def test_cli_show_prints_fingerprints_only(tmp_path):
    golden = NVS / "nvs_keys.bin"
    keys = nk.parse_nvs_keys(golden.read_bytes())
    result = run(["keys", "show", str(golden), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info == {"kind": "nvs_keys", "state": "valid", "fingerprint": keys.fingerprint,
                    "data_key": nk.key_fingerprint(keys.data_key),
                    "tweak_key": nk.key_fingerprint(keys.tweak_key), "crc": "ok"}
    text = run(["keys", "show", str(golden)]).output
    assert keys.data_key.hex()[:16] not in text and keys.fingerprint in text


def test_cli_show_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 4096)
    result = run(["keys", "show", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"error: {bad}: nvs_keys CRC mismatch")
    missing = run(["keys", "show", str(tmp_path / "nope.bin")])
    assert missing.exit_code == 2
    assert missing.stderr == f"error: {tmp_path / 'nope.bin'}: no such file\n"

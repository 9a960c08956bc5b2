"""No message ever contains a secret value (issue 12, finding 4).

A value is secret when it comes from ``env:`` or is marked ``secret: true``; every error
about it names its source and what is wrong, never the value.  Each case is a values
file whose secret value is wrong in one way, built through the CLI.
"""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner
from fixture_projects import BASIC_PROJECT, ESP32_FLASH_ENC, PARTITIONS_WITH_KEYS

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.nvs_image import NvsEntry, validate_entry

SECRET = "TopSecretPin99"


def run_nvs_build(tmp_path, values: str, env: dict[str, str]):
    (tmp_path / "v.yaml").write_text(textwrap.dedent(values))
    result = CliRunner().invoke(cli, ["nvs", "build", str(tmp_path / "v.yaml"), "--size",
                                      "0x6000", "-o", str(tmp_path / "nvs.bin")], env=env)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "nvs.bin").exists()
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return result


def test_the_issue_reproduction_names_the_variable_not_its_value(tmp_path):
    result = run_nvs_build(tmp_path, "dev:\n  pin: {type: u32, env: SECRET_PIN}\n",
                           {"SECRET_PIN": SECRET})
    assert SECRET not in result.output
    assert result.stderr.splitlines()[0].endswith(
        "v.yaml:2:25: environment variable SECRET_PIN does not hold a u32 (its value is "
        "secret, not shown)")


@pytest.mark.parametrize("values, env_value, message", [
    # from the environment: always secret
    ("pin: {type: u8, env: S}", "4242", "value (secret, not shown) does not fit u8 (0..255)"),
    ("pin: {type: i8, env: S}", "-4242", "value (secret, not shown) does not fit i8"),
    ("pin: {type: u64, env: S}", "0x4242424242424242424242", "does not fit u64"),
    ("pin: {type: float, env: S}", "42.42.42", "environment variable S does not hold a float"),
    ("pin: {type: float, env: S}", "4242e42", "value (secret, not shown) does not fit float"),
    ("pin: {type: string, env: S}", "4242" * 1001, "string is 4005 bytes with its NUL"),
    ("pin: {type: blob, env: S}", "42zz42", "not valid hex"),
    # marked secret in the values file
    ("pin: {type: u16, value: 4242424, secret: true}", None, "value (secret, not shown) does "
     "not fit u16"),
    ("pin: {type: u16, value: '42x42', secret: true}", None, "value does not hold a u16"),
    ("pin: {type: u16, value: 42.4242, secret: true}", None, "u16 needs a whole number, got "
     "(secret, not shown)"),
    ("pin: {type: string, value: 4242.42, secret: true}", None, "string value must be text, "
     "got (secret, not shown)"),
    ("pin: {type: u32, file: pin.txt, secret: true}", None, "file 'pin.txt' does not hold a "
     "u32"),
])
def test_errors_about_secret_values_never_show_them(tmp_path, values, env_value, message):
    (tmp_path / "pin.txt").write_text("4242abc\n")
    result = run_nvs_build(tmp_path, f"dev:\n  {values}\n",
                           {"S": env_value} if env_value is not None else {})
    assert message in result.stderr.splitlines()[0], result.stderr
    for secret in ("4242", "42.42"):
        assert secret not in result.output, result.output


def test_values_that_are_not_secret_are_still_shown(tmp_path):
    result = run_nvs_build(tmp_path, "dev:\n  n: {type: u8, value: 300}\n", {})
    assert "value 300 does not fit u8 (0..255)" in result.stderr
    result = run_nvs_build(tmp_path, "dev:\n  n: {type: u8, value: 'x12'}\n", {})
    assert "value holds 'x12', which is not a u8" in result.stderr


def test_validate_entry_strips_secret_values():
    entry = NvsEntry("dev", "pin", "u8", 4242, file="v.yaml", line=2, col=3)
    with pytest.raises(InputError) as info:
        validate_entry(entry, secret=True)
    assert "4242" not in str(info.value) and "does not fit u8" in str(info.value)
    with pytest.raises(InputError, match="value 4242 does not fit"):
        validate_entry(entry)


def test_project_build_with_a_bad_secret_env_value(tmp_path):
    files = {"nvs_secure.yaml": BASIC_PROJECT, "partitions.yaml": PARTITIONS_WITH_KEYS,
             "values.yaml": "dev:\n  pin: {type: u16, env: SECRET_PIN}\n",
             "sdkconfig.defaults": ESP32_FLASH_ENC}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for command in (["build", str(tmp_path), "--product", "basic", "-o", str(tmp_path / "out")],
                    ["config", "show", str(tmp_path), "--product", "basic"]):
        result = CliRunner().invoke(cli, command, env={"SECRET_PIN": SECRET, "MASTER": None})
        assert result.exit_code == 2, result.output
        assert SECRET not in result.output
        assert "environment variable SECRET_PIN does not hold a u16" in result.stderr
    assert not (tmp_path / "out").exists()

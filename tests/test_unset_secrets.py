"""Issue 15, finding 1: read-only commands never need secret values.

Reproduced as a new user meets it: the example project with ``EXAMPLE_WIFI_PASSWORD``
unset.  ``detect``, ``config show`` and ``report`` show the value as
``<env EXAMPLE_WIFI_PASSWORD: unset>`` and say which commands will need it; ``build``,
``release`` and ``batch`` refuse, naming the variable; a batch whose devices CSV gives
``wifi.pass`` for every device needs no base value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.formats.nvs_keys import parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image

from fixture_projects import copy_example_project, example_password_location

UNSET = "<env EXAMPLE_WIFI_PASSWORD: unset>"
AT = example_password_location()
NEEDED = f"EXAMPLE_WIFI_PASSWORD is not set (project/nvs_values.yaml:{AT}): build, release " \
         "and batch need it"


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    for name in ("EXAMPLE_WIFI_PASSWORD", "NVS_MASTER_SECRET", "IDF_TARGET", "IDF_PATH",
                 "SDKCONFIG_DEFAULTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return Path(copy_example_project(tmp_path).name)


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", [
    ["detect", "P"], ["config", "show", "P", "--product", "pro"], ["report", "P", "-o", "r.html"]])
def test_read_only_commands_need_no_secret(project, command):
    result = _run(*(str(project) if word == "P" else word for word in command))
    assert result.exit_code == 0, result.output + result.stderr
    assert f"note: {NEEDED} (export EXAMPLE_WIFI_PASSWORD=...)" in result.stderr
    assert "error" not in result.stderr and "Traceback" not in result.stderr
    if command[0] == "config":
        row = next(line.split() for line in result.stdout.splitlines()
                   if line.split()[:1] == ["pass"])
        assert row == ["pass", "string", *UNSET.split()]
    if command[0] == "report":
        page = Path("r.html").read_text()
        assert UNSET.replace("<", "&lt;").replace(">", "&gt;") in page


def test_config_show_json_shows_the_unset_value(project):
    result = _run("config", "show", str(project), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["nvs"]["nvs"]["values"]["wifi"]["pass"]["value"] == UNSET


@pytest.mark.parametrize("command", [
    ["build", "--product", "pro", "-o", "out"],
    ["release", "--product", "pro", "--random-keys", "-o", "out"],
    ["batch", "--product", "pro", "--devices", "devices.csv", "--master-secret-file",
     "secret.hex", "-o", "out", "-j", "1"]])
def test_writing_commands_refuse_naming_the_variable(project, command):
    Path("secret.hex").write_text("5a" * 32)
    Path("devices.csv").write_text("device_id,device.serial:string\nSN-1,ESP-1\n")
    result = _run(command[0], str(project), *command[1:])
    assert result.exit_code == 2, result.output + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (f"error: project/nvs_values.yaml:{AT}: environment variable "
                        "EXAMPLE_WIFI_PASSWORD is not set")
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert not Path("out").exists()


def test_a_value_every_device_supplies_needs_no_base_value(project):
    Path("secret.hex").write_text("5a" * 32)
    Path("devices.csv").write_text("device_id,device.serial:string,wifi.pass\n"
                                   "SN-1,ESP-1,wpa-one\nSN-2,ESP-2,wpa-two\n")
    result = _run("batch", str(project), "--product", "pro", "--devices", "devices.csv",
                  "--master-secret-file", "secret.hex", "-o", "out", "-j", "1")
    assert result.exit_code == 0, result.stderr
    for device, password in (("SN-1", "wpa-one"), ("SN-2", "wpa-two")):
        folder = Path("out/devices") / device
        image = parse_nvs_image((folder / "nvs.bin").read_bytes(),
                                keys=parse_nvs_keys((folder / "nvs_keys.bin").read_bytes()))
        assert not image.problems
        assert image_to_json(image)["wifi"]["pass"]["value"] == password

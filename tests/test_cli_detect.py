"""``idf-nvs-secure detect`` in-process: output shape, exit codes 0/1/2, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.plan.outputs import plan_outputs
from idf_nvs_secure.plan.security import detect_plan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sdkconfig"
CLEAN_ENV = {"IDF_TARGET": None, "SDKCONFIG_DEFAULTS": None, "IDF_PATH": None}


def run(*args: str, env: dict[str, str | None] | None = None):
    result = CliRunner().invoke(cli, ["detect", *args], env={**CLEAN_ENV, **(env or {})})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def test_json_is_exactly_the_plan() -> None:
    project = FIXTURES / "esp32_flash_enc_dev"
    result = run(str(project), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plan = detect_plan(project, env={})
    assert data == {**plan.to_json(), "outputs": plan_outputs(plan, None).to_json()}
    assert data["target"] == "esp32" and data["scheme"] == "flash_enc"
    assert data["partition_table"] == {"file": "partitions.csv", "offset": 0x9000}
    assert isinstance(data["diagnostics"], list)


def test_human_summary() -> None:
    result = run(str(FIXTURES / "esp32_flash_enc_dev"))
    assert result.exit_code == 0
    out = result.output
    assert "target:            esp32 (from sdkconfig)" in out
    assert "NVS encryption:    on, key protection scheme flash_enc" in out
    assert "nvs_keys generated on the chip at first boot" in out
    assert "storage" in out and "plain text" in out
    assert "outputs:           none (without nvs_secure.yaml" in out
    assert "to do: keep nvs_keys at 0x10000 erased" in out


def test_error_diagnostic_exits_1() -> None:
    result = run(str(FIXTURES / "diag" / "nvs-keys-partition-missing"))
    assert result.exit_code == 1
    assert "error: [nvs-keys-partition-missing]" in result.output


def test_error_diagnostic_exits_1_with_json() -> None:
    result = run(str(FIXTURES / "diag" / "hmac-key-id-unset"), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert [d["code"] for d in data["diagnostics"] if d["severity"] == "error"] == ["hmac-key-id-unset"]


def test_environment_is_read_by_the_cli() -> None:
    result = run(str(FIXTURES / "idf_target_env"), "--json", env={"IDF_TARGET": "esp32h2"})
    assert result.exit_code == 0
    assert json.loads(result.output)["target"] == "esp32h2"


def test_sdkconfig_option_overrides() -> None:
    other = FIXTURES / "esp32c3_hmac" / "sdkconfig"
    result = run(str(FIXTURES / "nvs_off"), "--sdkconfig", str(other), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["target"] == "esp32c3"


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing-project"], "project directory not found"),
    (["{fixtures}/nvs_off", "--sdkconfig", "{tmp}/nope"], "sdkconfig file not found"),
])
def test_user_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [a.format(tmp=tmp_path, fixtures=FIXTURES) for a in args]
    result = run(*argv)
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert message in result.output


def test_unreadable_sdkconfig_exits_2(tmp_path: Path) -> None:
    (tmp_path / "sdkconfig").write_bytes(b"CONFIG_IDF_TARGET=\"esp32\"\n\xff\xfe\n")
    result = run(str(tmp_path))
    assert result.exit_code == 2
    assert "not UTF-8" in result.output

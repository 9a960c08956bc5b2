"""The firmware's ESP-IDF version: where it is found, and one test per row of the
feature table (idf_nvs_secure.config.idf_versions.IDF_FEATURES) showing what it
changes.  The facts of each row were checked in ESP-IDF's history (see the module)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixture_projects import BASIC_PROJECT, ESP32_FLASH_ENC, PARTITIONS_WITH_KEYS
from fixture_projects import write_tree as write
from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.integration import plan_build_integration
from idf_nvs_secure.config.idf_versions import (
    FLOAT_TYPES,
    HMAC_DEFAULT_SCHEME,
    HMAC_SCHEME,
    IDF_FEATURES,
    LINUX_PRELOAD,
    MULTIPAGE_BLOBS,
    NVS_ENCRYPTION,
    NVS_SEC_PROVIDER_ALWAYS,
    READONLY_PARTITIONS,
    SMALL_READONLY_NVS,
    parse_idf_version,
    version_from_sdkconfig,
)
from idf_nvs_secure.config.sdkconfig import read_config
from idf_nvs_secure.errors import InputError
from idf_nvs_secure.inputs.project import load_project
from idf_nvs_secure.plan.project_plan import plan_project
from idf_nvs_secure.plan.security import detect_plan

CLEAN_ENV = {"IDF_TARGET": None, "SDKCONFIG_DEFAULTS": None, "IDF_PATH": None}
FLOAT_VALUES = "device:\n  model: X\n  scale: {type: float, value: 1.25}\n"
#: kconfgen's header (esp-idf-kconfig SDKCONFIG_HEADER_TEMPLATE), as ESP-IDF writes it.
HEADER = ("#\n# Automatically generated file. DO NOT EDIT.\n"
          "# Espressif IoT Development Framework (ESP-IDF) {v} Project Configuration\n#\n")


def project(tmp_path: Path, values: str = FLOAT_VALUES, extra: str = "",
            partitions: str = PARTITIONS_WITH_KEYS, sdkconfig: str = ESP32_FLASH_ENC) -> Path:
    return write(tmp_path / "p", {"nvs_secure.yaml": BASIC_PROJECT + "default_product: basic\n" + extra,
                                  "partitions.yaml": partitions, "values.yaml": values,
                                  "sdkconfig.defaults": sdkconfig})


def fake_idf(root: Path, major: int, minor: int, patch: int) -> Path:
    return write(root, {"tools/cmake/version.cmake":
                        f"set(IDF_VERSION_MAJOR {major})\nset(IDF_VERSION_MINOR {minor})\n"
                        f"set(IDF_VERSION_PATCH {patch})\n\nset(ENV{{IDF_VERSION}} \"x\")\n"})


# --- finding the version ------------------------------------------------------------------


@pytest.mark.parametrize("text, key", [("6.0.2", (6, 0, 2)), ("v5.5", (5, 5, 0)),
                                       ("v6.1-beta1", (6, 1, 0)), ("6.1-dev-12-gabc", (6, 1, 0))])
def test_parse_idf_version(text: str, key: tuple) -> None:
    assert parse_idf_version(text).key == key


def test_not_a_version_is_a_located_error() -> None:
    with pytest.raises(InputError, match="'six' is not an ESP-IDF version") as err:
        parse_idf_version("six", file="nvs_secure.yaml", line=4)
    assert (err.value.file, err.value.line) == ("nvs_secure.yaml", 4)


def test_version_from_idf_path_and_from_sdkconfig_header(tmp_path: Path) -> None:
    assert str(version_from_sdkconfig(HEADER.format(v="6.0.2") + "CONFIG_X=y\n")) == "v6.0.2"
    assert version_from_sdkconfig("CONFIG_X=y\n") is None
    proj = write(tmp_path / "p", {"sdkconfig": HEADER.format(v="5.5.5") + ESP32_FLASH_ENC})
    cfg = read_config(proj, env={})
    assert (cfg.idf_version, cfg.idf_version_source) == ("v5.5.5", "sdkconfig (the ESP-IDF that wrote it)")
    idf = fake_idf(tmp_path / "idf", 6, 0, 2)
    cfg = read_config(proj, env={"IDF_PATH": str(idf)})
    assert cfg.idf_version == "v6.0.2" and "IDF_PATH" in cfg.idf_version_source
    assert any("written by ESP-IDF v5.5.5" in n for n in cfg.notes)


def test_given_version_wins_and_detect_shows_it(tmp_path: Path) -> None:
    proj = project(tmp_path, values="device:\n  model: X\n", extra='idf_version: "6.0.2"\n')
    plan = plan_project(load_project(proj), env={"IDF_PATH": str(fake_idf(tmp_path / "i", 5, 5, 5))}).security
    assert plan.idf_version == "v6.0.2" and "idf_version:" in plan.idf_version_source
    assert any("used v6.0.2" in n for n in plan.notes)
    result = CliRunner().invoke(cli, ["detect", str(proj), "--idf-version", "v6.1"], env=CLEAN_ENV)
    assert "ESP-IDF:           v6.1.0 (from --idf-version)" in result.output
    result = CliRunner().invoke(cli, ["detect", str(proj), "--json"], env=CLEAN_ENV)
    data = json.loads(result.output)
    assert data["idf_version"] == "v6.0.2" and data["config"]["model"] == "shipped"


def test_bad_idf_version_in_project_file_is_located(tmp_path: Path) -> None:
    proj = project(tmp_path, extra="idf_version: six\n")
    result = CliRunner().invoke(cli, ["detect", str(proj)], env=CLEAN_ENV)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    line = (BASIC_PROJECT + "default_product: basic\n").count("\n") + 1
    assert lines[0].startswith("error: ") and f"nvs_secure.yaml:{line}" in lines[0]
    assert "Traceback" not in result.output


# --- one test per row of the table ----------------------------------------------------------


def test_every_row_names_its_commit_and_first_tag() -> None:
    assert len({f.key for f in IDF_FEATURES}) == len(IDF_FEATURES)
    for feature in IDF_FEATURES:
        assert len(feature.commit) >= 8 and feature.first_tag.startswith(feature.since_text)


def test_row_float_types_refused_before_6_1_at_the_value(tmp_path: Path) -> None:
    assert FLOAT_TYPES.since_text == "v6.1"
    proj = load_project(project(tmp_path))
    with pytest.raises(InputError) as err:
        plan_project(proj, idf_version="6.0.2", env={})
    assert err.value.message == ("ESP-IDF v6.0.2 cannot read float values (added in v6.1); use a "
                                 "u32 or string, or build with v6.1+")
    assert (Path(err.value.file).name, err.value.line, err.value.col) == ("values.yaml", 3, 10)
    assert plan_project(proj, idf_version="6.1.0", env={}).security.ok
    unknown = plan_project(proj, env={}).security
    warned = [d for d in unknown.diagnostics if d.code == "firmware-version-unknown"]
    assert len(warned) == 1 and warned[0].line == 3 and "device.scale" in warned[0].message


def test_row_float_types_cli_refuses_with_one_line_and_no_output(tmp_path: Path) -> None:
    proj = project(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", str(proj), "-o", str(out), "--idf-version", "6.0.2"],
                                env=CLEAN_ENV)
    assert result.exit_code == 2 and "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error: ") and "values.yaml:3:10: ESP-IDF v6.0.2 cannot read float" in first
    assert not out.exists()
    image = tmp_path / "nvs.bin"
    result = CliRunner().invoke(cli, ["nvs", "build", str(proj / "values.yaml"), "--size", "0x3000",
                                      "-o", str(image), "--idf-version", "v6.0"], env=CLEAN_ENV)
    assert result.exit_code == 2 and "cannot read float values" in result.output
    assert not image.exists()
    result = CliRunner().invoke(cli, ["nvs", "build", str(proj / "values.yaml"), "--size", "0x3000",
                                      "-o", str(image), "--format-version", "1"], env=CLEAN_ENV)
    assert result.exit_code == 2 and "cannot be written in format version 1" in result.output
    assert not image.exists()


def test_row_format_version_2_needs_3_2(tmp_path: Path) -> None:
    assert MULTIPAGE_BLOBS.since_text == "v3.2"
    proj = load_project(project(tmp_path, values="device:\n  model: X\n",
                                sdkconfig=ESP32_FLASH_ENC.replace("CONFIG_NVS_ENCRYPTION=y\n", "")))
    with pytest.raises(InputError, match="ESP-IDF v3.1.0 cannot read format version 2"):
        plan_project(proj, idf_version="3.1", env={})
    assert plan_project(proj, idf_version="3.2", env={}).security.ok


def codes(plan) -> set[str]:
    return {d.code for d in plan.diagnostics}


def test_row_nvs_encryption_needs_3_2(tmp_path: Path) -> None:
    assert NVS_ENCRYPTION.since_text == "v3.2"
    proj = write(tmp_path / "p", {"sdkconfig.defaults": ESP32_FLASH_ENC})
    assert "firmware-lacks-nvs-encryption" in codes(detect_plan(proj, env={}, idf_version="3.1"))
    assert "firmware-lacks-nvs-encryption" not in codes(detect_plan(proj, env={}, idf_version="3.2"))


HMAC_C3 = 'CONFIG_IDF_TARGET="esp32c3"\nCONFIG_NVS_ENCRYPTION=y\nCONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=2\n'


def test_row_hmac_scheme_needs_5_2(tmp_path: Path) -> None:
    assert HMAC_SCHEME.since_text == "v5.2"
    proj = write(tmp_path / "p", {"sdkconfig.defaults": HMAC_C3})
    assert detect_plan(proj, env={}).scheme == "hmac"
    assert "firmware-lacks-hmac-scheme" in codes(detect_plan(proj, env={}, idf_version="5.1.6"))
    assert "firmware-lacks-hmac-scheme" not in codes(detect_plan(proj, env={}, idf_version="5.2"))


def readonly_table(size: str) -> str:
    return PARTITIONS_WITH_KEYS + f"  - {{name: factory_cfg, type: data, subtype: nvs, size: {size}, flags: [readonly]}}\n"


@pytest.mark.parametrize("version, size, code", [
    ("5.1", "12K", "firmware-lacks-readonly"), ("5.2", "12K", None),
    ("5.4.3", "8K", "firmware-lacks-small-readonly-nvs"), ("5.5", "8K", None)])
def test_rows_readonly_partitions(tmp_path: Path, version: str, size: str, code: str | None) -> None:
    assert (READONLY_PARTITIONS.since_text, SMALL_READONLY_NVS.since_text) == ("v5.2", "v5.5")
    proj = load_project(project(tmp_path, values="device:\n  model: X\n", partitions=readonly_table(size)))
    found = codes(plan_project(proj, idf_version=version, env={}).security)
    assert {c for c in found if c.startswith("firmware-lacks-")} == ({code} if code else set())


@pytest.mark.parametrize("version, missing", [("5.5.5", True), ("5.2.0", True),
                                              ("6.0.2", False), ("5.1.6", False)])
def test_row_nvs_sec_provider_left_out_of_a_minimal_build(tmp_path: Path, version: str,
                                                          missing: bool) -> None:
    # An sdkconfig ESP-IDF wrote for a MINIMAL_BUILD: NVS encryption on, no CONFIG_NVS_SEC_*.
    assert NVS_SEC_PROVIDER_ALWAYS.since_text == "v6.0"
    for target, text in (("esp32", ESP32_FLASH_ENC), ("esp32c3", HMAC_C3.replace(
            "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=2\n", ""))):
        proj = write(tmp_path / target, {"sdkconfig": HEADER.format(v=version) + text})
        plan = detect_plan(proj, env={})
        assert plan.idf_version == f"v{version}"
        assert ("nvs-sec-provider-missing" in codes(plan)) is missing
        if missing:
            assert not plan.nvs_sec_provider and plan.scheme == "none"
            assert not codes(plan) & {"hmac-key-id-unset", "scheme-none"}
    # With the provider in the build, sdkconfig names its symbols: no finding.
    proj = write(tmp_path / "full", {"sdkconfig": HEADER.format(v=version) + ESP32_FLASH_ENC
                                     + "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y\n"})
    assert "nvs-sec-provider-missing" not in codes(detect_plan(proj, env={}))


LINUX = 'CONFIG_IDF_TARGET="linux"\nCONFIG_PARTITION_TABLE_CUSTOM=y\n'


@pytest.mark.parametrize("version, preloaded", [("6.1.0", True), ("6.0.2", False), ("5.5.5", False)])
def test_row_linux_preload(tmp_path: Path, version: str, preloaded: bool) -> None:
    assert LINUX_PRELOAD.since_text == "v6.1"
    proj = load_project(project(tmp_path, values="device:\n  model: X\n", sdkconfig=LINUX))
    planned = plan_project(proj, idf_version=version, env={})
    messages = plan_build_integration(planned, out_dir=tmp_path / "out").messages
    preload = [m for m in messages if "emulated flash" in m]
    assert len(preload) == 1
    assert ("preloads the images" in preload[0]) is preloaded
    assert ("cannot preload" in preload[0]) is (not preloaded)


def test_detect_says_which_kconfig_model(tmp_path: Path) -> None:
    proj = write(tmp_path / "p", {"sdkconfig.defaults": ESP32_FLASH_ENC})
    assert detect_plan(proj, env={}).config["model"] == "shipped"
    write(proj, {"build/config/sdkconfig.json": json.dumps(
        {"IDF_TARGET": "esp32", "NVS_ENCRYPTION": True, "SECURE_FLASH_ENC_ENABLED": True,
         "PARTITION_TABLE_OFFSET": 0x8000})})
    result = CliRunner().invoke(cli, ["detect", str(proj)], env=CLEAN_ENV)
    assert "Kconfig model: sdkconfig.json (ESP-IDF's build resolved it)" in result.output


@pytest.mark.parametrize("version, scheme", [("5.5.5", "flash_enc"), ("6.0.2", "hmac"), (None, "hmac")])
def test_row_hmac_default_scheme_from_6_0(tmp_path: Path, version: str | None, scheme: str) -> None:
    # esp32c3 with flash encryption and NVS encryption, no scheme named: v5.2 to v5.5
    # default to flash encryption, v6.0 to HMAC (unknown version: the newest).
    assert HMAC_DEFAULT_SCHEME.since_text == "v6.0"
    proj = write(tmp_path / "p", {"sdkconfig.defaults": 'CONFIG_IDF_TARGET="esp32c3"\n'
                                  "CONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_NVS_ENCRYPTION=y\n"})
    assert detect_plan(proj, env={}, idf_version=version).scheme == scheme
    # "None" exists from v6.0 only.
    write(proj, {"sdkconfig.defaults": (proj / "sdkconfig.defaults").read_text()
                 + "CONFIG_NVS_SEC_KEY_PROTECT_NONE=y\n"})
    assert (detect_plan(proj, env={}, idf_version=version).scheme == "none") is (version != "5.5.5")


def test_scheme_none_before_6_0_is_an_unknown_symbol(tmp_path: Path) -> None:
    # ESP-IDF v5.5's kconfgen ignores CONFIG_NVS_SEC_KEY_PROTECT_NONE (no such symbol),
    # so an earlier HMAC selection stands (measured against v5.5.5's own tree).
    proj = write(tmp_path / "p", {"sdkconfig.defaults": HMAC_C3
                                  + "CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y\nCONFIG_NVS_SEC_KEY_PROTECT_NONE=y\n"})
    assert detect_plan(proj, env={}, idf_version="5.5.5").scheme == "hmac"
    assert detect_plan(proj, env={}, idf_version="6.0.2").scheme == "none"

"""Reading sdkconfig files the way ESP-IDF does: which files, which target, which values.

Fixture projects live in tests/fixtures/sdkconfig/; each file starts with a comment
saying why it exists.  Every call passes its environment explicitly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from idf_nvs_secure.config._kconfiglib import kconfiglib
import pytest

from idf_nvs_secure.config.chips import CHIPS, get_chip, soc_symbols
from idf_nvs_secure.config.sdkconfig import (
    find_config_inputs,
    model_kconfig_text,
    model_symbol_names,
    parse_sdkconfig_text,
    read_config,
)
from idf_nvs_secure.errors import InputError

from fixture_projects import write_tree as write

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sdkconfig"


# --- chips ---------------------------------------------------------------------------


def test_hmac_peripheral_per_chip() -> None:
    with_hmac = {"esp32s2", "esp32s3", "esp32c3", "esp32c5", "esp32c6", "esp32h2",
                 "esp32h21", "esp32h4", "esp32p4"}
    without = {"esp32", "esp32c2", "esp32c61", "linux"}
    assert {n for n in with_hmac | without if get_chip(n).hmac} == with_hmac


def test_flash_encryption_facts() -> None:
    assert get_chip("esp32").flash_encryption_algorithm == "aes-256"
    assert all(c.flash_encryption_algorithm == "xts-aes" for n, c in CHIPS.items()
               if n not in ("esp32", "linux"))
    xts256 = {n for n, c in CHIPS.items() if 256 in c.flash_encryption_key_sizes}
    assert {"esp32s2", "esp32s3", "esp32c5", "esp32h4", "esp32p4"} <= xts256
    assert get_chip("esp32c2").xts_aes_128_derived
    assert get_chip("esp32c2").flash_encryption_key_sizes == (128,)
    linux = get_chip("linux")
    assert linux.host and not linux.nvs_encryption_possible and linux.flash_encryption_algorithm is None


def test_unknown_target_is_an_input_error() -> None:
    with pytest.raises(InputError) as err:
        get_chip("esp8266")
    assert "esp32c3" in (err.value.hint or "")


@pytest.mark.parametrize("target", sorted(CHIPS))
def test_model_parses_cleanly_for_every_target(tmp_path: Path, target: str) -> None:
    model = tmp_path / "Kconfig"
    model.write_text(model_kconfig_text(target))
    kconf = kconfiglib.Kconfig(str(model), warn_to_stderr=False)
    assert kconf.warnings == []
    assert kconf.syms["IDF_TARGET"].str_value == target
    for sym, value in soc_symbols(get_chip(target)).items():
        assert (kconf.syms[sym].tri_value == 2) is value


def test_model_mirrors_esp_idf_symbol_names() -> None:
    names = set(model_symbol_names())
    assert {
        "NVS_ENCRYPTION", "NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG",
        "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC", "NVS_SEC_KEY_PROTECT_USING_HMAC",
        "NVS_SEC_KEY_PROTECT_NONE", "NVS_SEC_HMAC_EFUSE_KEY_ID", "SECURE_FLASH_ENC_ENABLED",
        "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT", "SECURE_FLASH_ENCRYPTION_MODE_RELEASE",
        "PARTITION_TABLE_CUSTOM", "PARTITION_TABLE_CUSTOM_FILENAME", "PARTITION_TABLE_FILENAME",
        "PARTITION_TABLE_OFFSET", "PARTITION_TABLE_TWO_OTA_ENCRYPTED_NVS",
        "PARTITION_TABLE_SINGLE_APP_ENCRYPTED_NVS", "PARTITION_TABLE_SINGLE_APP_LARGE_ENC_NVS",
        "ESPTOOLPY_FLASHSIZE", "ESPTOOLPY_FLASHSIZE_4MB", "IDF_TARGET", "SOC_HMAC_SUPPORTED",
    } <= names


# --- parsing text ----------------------------------------------------------------------


def test_parse_sdkconfig_text_renames_and_unquotes() -> None:
    items = parse_sdkconfig_text(
        '# comment\nCONFIG_FLASH_ENCRYPTION_ENABLED=y\n# CONFIG_NVS_ENCRYPTION is not set\n'
        'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="a \\"b\\".csv"\nnonsense\n', filename="f")
    assert [(i.name, i.value, i.line) for i in items] == [
        ("SECURE_FLASH_ENC_ENABLED", "y", 2), ("NVS_ENCRYPTION", "n", 3),
        ("PARTITION_TABLE_CUSTOM_FILENAME", 'a "b".csv', 4)]
    assert items[0].file == "f"


def test_empty_assignment_means_not_set(tmp_path: Path) -> None:
    write(tmp_path, {"sdkconfig.defaults": 'CONFIG_IDF_TARGET="esp32"\nCONFIG_SECURE_FLASH_ENC_ENABLED=y\n'
                                           "CONFIG_NVS_ENCRYPTION=\n"})
    cfg = read_config(tmp_path, env={})
    assert cfg.values["SECURE_FLASH_ENC_ENABLED"] is True
    assert cfg.values["NVS_ENCRYPTION"] is False
    assert cfg.warnings == ()


def test_unknown_symbols_are_silent(tmp_path: Path) -> None:
    cfg = read_config(FIXTURES / "esp32_flash_enc_dev", env={})
    assert cfg.warnings == ()
    assert "APP_BUILD_TYPE_APP_2NDBOOT" not in cfg.values


# --- which files -----------------------------------------------------------------------


def test_missing_project_dir(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="project directory not found"):
        find_config_inputs(tmp_path / "nope", env={})


def test_explicit_sdkconfig_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sdkconfig file not found"):
        find_config_inputs(tmp_path, sdkconfig=tmp_path / "other.sdkconfig", env={})


def test_explicit_sdkconfig_overrides_everything() -> None:
    project = FIXTURES / "json_precedence"
    other = FIXTURES / "esp32c3_hmac" / "sdkconfig"
    cfg = read_config(project, sdkconfig=other, env={})
    assert cfg.kind == "sdkconfig" and cfg.target == "esp32c3"
    assert cfg.loaded == (str(other),)


def test_explicit_json_is_read_as_resolved_config() -> None:
    project = FIXTURES / "json_precedence"
    cfg = read_config(project, sdkconfig=project / "build" / "config" / "sdkconfig.json", env={})
    assert cfg.kind == "sdkconfig.json" and cfg.target == "esp32c6"
    assert cfg.requested == {}


def test_sdkconfig_is_applied_on_top_of_defaults(tmp_path: Path) -> None:
    write(tmp_path, {
        "sdkconfig.defaults": 'CONFIG_IDF_TARGET="esp32c3"\nCONFIG_NVS_ENCRYPTION=y\n'
                              "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=1\nCONFIG_ESPTOOLPY_FLASHSIZE_8MB=y\n",
        "sdkconfig": 'CONFIG_IDF_TARGET="esp32c3"\nCONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\n',
    })
    cfg = read_config(tmp_path, env={})
    assert cfg.kind == "sdkconfig"
    assert cfg.loaded == ("sdkconfig.defaults", "sdkconfig")
    assert cfg.values["ESPTOOLPY_FLASHSIZE"] == "4MB"  # the sdkconfig wins
    assert cfg.values["NVS_SEC_HMAC_EFUSE_KEY_ID"] == 1  # not in sdkconfig: from the defaults


def test_defaults_chain_order_from_sdkconfig_defaults_env() -> None:
    env = {"SDKCONFIG_DEFAULTS": "config/base.defaults;config/secure.defaults"}
    cfg = read_config(FIXTURES / "defaults_env", env=env)
    assert cfg.loaded == ("config/base.defaults", "config/base.defaults.esp32s3", "config/secure.defaults")
    assert cfg.target == "esp32s3" and cfg.target_source == "config/base.defaults"
    assert cfg.values["ESPTOOLPY_FLASHSIZE"] == "16MB"


def test_sdkconfig_defaults_env_names_missing_file() -> None:
    with pytest.raises(InputError, match="does not exist") as err:
        read_config(FIXTURES / "defaults_env", env={"SDKCONFIG_DEFAULTS": "config/nope.defaults"})
    assert err.value.hint and "SDKCONFIG_DEFAULTS" in err.value.hint


def test_target_companion_needs_the_base_file(tmp_path: Path) -> None:
    # ESP-IDF only looks for <file>.<target> next to a defaults file it applies.
    write(tmp_path, {"sdkconfig.defaults.esp32": "CONFIG_SECURE_FLASH_ENC_ENABLED=y\n"})
    cfg = read_config(tmp_path, env={})
    assert cfg.kind == "none" and cfg.values["SECURE_FLASH_ENC_ENABLED"] is False
    assert any("ESP-IDF's defaults" in n for n in cfg.notes)


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def _match(project: Path, resolved: Path) -> None:
    """Make sdkconfig say what sdkconfig.json says (as ESP-IDF writes the pair)."""
    import json

    lines = []
    for name, value in json.loads(resolved.read_text()).items():
        lines.append(f"CONFIG_{name}=y" if value is True else f"# CONFIG_{name} is not set"
                     if value is False else f"CONFIG_{name}={json.dumps(value)}"
                     if isinstance(value, str) else f"CONFIG_{name}={value}")
    (project / "sdkconfig").write_text("\n".join(lines) + "\n")


def test_matching_sdkconfig_json_wins_whatever_its_time(tmp_path: Path) -> None:
    project = _copy("json_precedence", tmp_path)
    _match(project, project / "build" / "config" / "sdkconfig.json")
    os.utime(project / "sdkconfig", (2_000, 2_000))  # written after it, as ESP-IDF does
    os.utime(project / "build" / "config" / "sdkconfig.json", (1_000, 1_000))
    cfg = read_config(project, env={})
    assert cfg.kind == "sdkconfig.json" and cfg.target == "esp32c6"
    assert cfg.values["NVS_SEC_HMAC_EFUSE_KEY_ID"] == 3
    assert cfg.values["PARTITION_TABLE_OFFSET"] == 0x9000


def test_sdkconfig_json_that_differs_is_ignored(tmp_path: Path) -> None:
    project = _copy("json_precedence", tmp_path)  # its sdkconfig and JSON disagree
    os.utime(project / "sdkconfig", (1_000, 1_000))
    os.utime(project / "build" / "config" / "sdkconfig.json", (2_000, 2_000))  # newer
    cfg = read_config(project, env={})
    assert cfg.kind == "sdkconfig" and cfg.target == "esp32"
    assert any("does not match sdkconfig" in n for n in cfg.notes)


def test_custom_build_dir(tmp_path: Path) -> None:
    project = _copy("json_precedence", tmp_path)
    shutil.move(project / "build", tmp_path / "out")
    _match(project, tmp_path / "out" / "config" / "sdkconfig.json")
    assert read_config(project, env={}).kind == "sdkconfig"
    assert read_config(project, env={}, build_dir=tmp_path / "out").kind == "sdkconfig.json"


def test_bad_json_is_an_input_error(tmp_path: Path) -> None:
    write(tmp_path, {"build/config/sdkconfig.json": "{not json"})
    with pytest.raises(InputError) as err:
        read_config(tmp_path, env={})
    assert err.value.line == 1


# --- which target ----------------------------------------------------------------------


def test_target_from_environment_when_config_names_none() -> None:
    cfg = read_config(FIXTURES / "idf_target_env", env={"IDF_TARGET": "esp32h2"})
    assert cfg.target == "esp32h2" and cfg.env_target is None
    assert cfg.target_source == "IDF_TARGET environment variable"
    assert cfg.loaded == ("sdkconfig.defaults", "sdkconfig.defaults.esp32h2")


def test_target_defaults_to_esp32() -> None:
    cfg = read_config(FIXTURES / "idf_target_env", env={})
    assert cfg.target == "esp32" and cfg.target_source == "ESP-IDF default"


def test_environment_beats_defaults_files(tmp_path: Path) -> None:
    write(tmp_path, {"sdkconfig.defaults": 'CONFIG_IDF_TARGET="esp32c3"\n'})
    cfg = read_config(tmp_path, env={"IDF_TARGET": "esp32s3"})
    assert cfg.target == "esp32s3" and cfg.env_target is None


def test_sdkconfig_target_against_environment_is_reported() -> None:
    cfg = read_config(FIXTURES / "diag" / "target-mismatch", env={"IDF_TARGET": "esp32s3"})
    assert cfg.target == "esp32c3" and cfg.env_target == "esp32s3"


def test_unknown_target_in_sdkconfig(tmp_path: Path) -> None:
    write(tmp_path, {"sdkconfig": 'CONFIG_IDF_TARGET="esp99"\n'})
    with pytest.raises(InputError, match="unknown ESP-IDF target"):
        read_config(tmp_path, env={})


# --- implicit values ---------------------------------------------------------------------


def test_implicit_values_resolve_like_esp_idf() -> None:
    cfg = read_config(FIXTURES / "defaults_partial", env={})
    v = cfg.values
    assert cfg.target == "esp32c3"
    assert cfg.loaded == ("sdkconfig.defaults", "sdkconfig.defaults.esp32c3")
    assert v["NVS_ENCRYPTION"] is True  # default y if SECURE_FLASH_ENC_ENABLED
    assert v["NVS_SEC_KEY_PROTECT_USING_HMAC"] is True  # default where the chip has HMAC
    assert v["SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT"] is True
    assert v["NVS_SEC_HMAC_EFUSE_KEY_ID"] == 2
    assert v["PARTITION_TABLE_FILENAME"] == "partitions_singleapp.csv"
    assert v["PARTITION_TABLE_OFFSET"] == 0x8000


def test_flash_enc_scheme_is_default_without_hmac(tmp_path: Path) -> None:
    write(tmp_path, {"sdkconfig.defaults": 'CONFIG_IDF_TARGET="esp32c2"\nCONFIG_SECURE_FLASH_ENC_ENABLED=y\n'})
    v = read_config(tmp_path, env={}).values
    assert v["NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"] is True
    assert v["NVS_SEC_HMAC_EFUSE_KEY_ID"] is None  # not written: depends on the HMAC scheme


def test_out_of_range_value_is_a_located_warning() -> None:
    cfg = read_config(FIXTURES / "diag" / "config-warning", env={})
    assert cfg.values["NVS_SEC_HMAC_EFUSE_KEY_ID"] == -1
    located = {(w.file, w.line) for w in cfg.warnings}
    assert located == {("sdkconfig.defaults", 4), ("sdkconfig.defaults", 5)}
    assert all("defined at" not in w.message for w in cfg.warnings)


def test_linux_has_no_flash_settings() -> None:
    cfg = read_config(FIXTURES / "linux_host", env={})
    assert cfg.target == "linux"
    assert cfg.values["NVS_ENCRYPTION"] is False
    assert cfg.values["ESPTOOLPY_FLASHSIZE"] is None


# --- ESP-IDF's own Kconfig tree (IDF_PATH) ------------------------------------------------


TINY_ROOT = """\
mainmenu "tiny ESP-IDF"
config IDF_TARGET
    string
    default "$IDF_TARGET"
source "$COMPONENT_KCONFIGS_SOURCE_FILE"
source "$COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE"
"""


@pytest.mark.parametrize("parser", ["esp-idf-kconfig", "kconfiglib"])
def test_idf_path_with_a_tiny_valid_tree_is_used(tmp_path: Path, parser: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "kconfiglib":  # as without ESP-IDF's Python environment
        monkeypatch.setattr("idf_nvs_secure.config.idf_tree.esp_idf_kconfig_available",
                            lambda: False)
    idf = write(tmp_path / "idf", {
        "Kconfig": TINY_ROOT,
        "components/nvs_flash/Kconfig": 'menu "NVS"\nconfig NVS_ENCRYPTION\n    bool "enc"\n    default y\nendmenu\n',
        "components/bootloader/Kconfig.projbuild": 'config SECURE_FLASH_ENC_ENABLED\n    bool "fe"\n',
        "components/partition_table/Kconfig.projbuild": 'config PARTITION_TABLE_OFFSET\n    hex "off"\n    default 0xa000\n',
    })
    project = write(tmp_path / "proj", {"sdkconfig.defaults": "CONFIG_SECURE_FLASH_ENC_ENABLED=y\n"})
    before = dict(os.environ)
    cfg = read_config(project, env={"IDF_PATH": str(idf), "IDF_TARGET": "esp32s3"})
    assert dict(os.environ) == before  # the scoped environment is restored
    if parser == "kconfiglib":
        assert cfg.model == f"esp-idf:{idf}"
        assert any("evaluated against ESP-IDF's Kconfig tree" in n for n in cfg.notes)
    else:
        assert cfg.model == f"esp-idf-kconfig:{idf}"
        assert any("resolved with esp-idf-kconfig" in n for n in cfg.notes)
    assert cfg.values["IDF_TARGET"] == "esp32s3"
    assert cfg.values["NVS_ENCRYPTION"] is True
    assert cfg.values["SECURE_FLASH_ENC_ENABLED"] is True
    assert cfg.values["PARTITION_TABLE_OFFSET"] == 0xA000
    # The tiny tree does not define it: kconfiglib says so; kconfgen's sdkconfig.json
    # lacks it, which for a boolean means n (as for sdkconfig.h).
    assert cfg.values["SOC_HMAC_SUPPORTED"] is (None if parser == "kconfiglib" else False)


@pytest.mark.parametrize("kconfig, reason", [
    ('menu "Help on a menu"\n    help\n        esp-idf-kconfig accepts this\nendmenu\n', "AttributeError"),
    ("config\n", "Kconfig:1"),
    ('config ONLY_THIS\n    bool "x"\n', "does not define"),
])
def test_idf_path_falls_back_to_the_shipped_model(tmp_path: Path, kconfig: str, reason: str) -> None:
    idf = write(tmp_path / "idf", {"Kconfig": kconfig})
    project = write(tmp_path / "proj", {"sdkconfig.defaults": "CONFIG_SECURE_FLASH_ENC_ENABLED=y\n"})
    cfg = read_config(project, env={"IDF_PATH": str(idf)})
    assert cfg.model == "shipped"
    notes = [n for n in cfg.notes if "used the shipped model" in n]
    assert len(notes) == 1 and reason in notes[0]
    assert cfg.values["NVS_ENCRYPTION"] is True


def test_idf_path_without_kconfig_falls_back(tmp_path: Path) -> None:
    cfg = read_config(write(tmp_path / "p", {"sdkconfig.defaults": "\n"}),
                      env={"IDF_PATH": str(tmp_path / "missing")})
    assert cfg.model == "shipped" and len(cfg.notes) == 1

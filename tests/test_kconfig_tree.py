"""The shipped Kconfig model against esp-idf-kconfig, ESP-IDF's own parser.

No ESP-IDF here: the test builds an ESP-IDF-shaped tree (root Kconfig, components,
sdkconfig.rename files) from the shipped model and ESP-IDF's rename lines, lets
esp-idf-kconfig's kconfgen resolve random sdkconfig.defaults over it exactly as
ESP-IDF's build invokes it (idf_nvs_secure.config.idf_tree), and requires the shipped
model (kconfiglib) to resolve every symbol the same.  esp-idf-kconfig is in the
``test`` extra; it is never a runtime dependency.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from idf_nvs_secure.config.chips import CHIPS
from idf_nvs_secure.config.idf_tree import esp_idf_kconfig_available, read_rename_files
from idf_nvs_secure.config.sdkconfig import (
    RENAMED_SYMBOLS,
    model_kconfig_text,
    parse_sdkconfig_text,
    read_config,
)

pytestmark = pytest.mark.skipif(not esp_idf_kconfig_available(),
                                reason="esp-idf-kconfig (the test extra) is not installed")

#: ESP-IDF's lines for the model's renamed symbols, as its files hold them (v5.5.5,
#: v6.0.2 and master alike): components/<name>/sdkconfig.rename.
IDF_RENAME_FILES = {
    "bootloader": ("CONFIG_FLASH_ENCRYPTION_ENABLED      CONFIG_SECURE_FLASH_ENC_ENABLED\n"
                   "CONFIG_FLASH_ENCRYPTION_INSECURE     CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT\n"
                   "CONFIG_SECURE_BOOT_ENABLED           CONFIG_SECURE_BOOT_V1_ENABLED\n"),
    "espcoredump": ("CONFIG_ESP32_ENABLE_COREDUMP_TO_FLASH   CONFIG_ESP_COREDUMP_ENABLE_TO_FLASH\n"
                    "CONFIG_ESP32_ENABLE_COREDUMP_TO_UART    CONFIG_ESP_COREDUMP_ENABLE_TO_UART\n"
                    "CONFIG_ESP32_ENABLE_COREDUMP_TO_NONE    CONFIG_ESP_COREDUMP_ENABLE_TO_NONE\n"),
}

#: What a random sdkconfig.defaults is made of (old names included).
CHOICES = [
    "CONFIG_SECURE_FLASH_ENC_ENABLED=y", "CONFIG_FLASH_ENCRYPTION_ENABLED=y",
    "CONFIG_NVS_ENCRYPTION=y", "# CONFIG_NVS_ENCRYPTION is not set",
    "CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y", "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y",
    "CONFIG_NVS_SEC_KEY_PROTECT_NONE=y", "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=2",
    "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y", "CONFIG_FLASH_ENCRYPTION_INSECURE=y",
    "CONFIG_PARTITION_TABLE_TWO_OTA_ENCRYPTED_NVS=y", "CONFIG_PARTITION_TABLE_SINGLE_APP_ENCRYPTED_NVS=y",
    "CONFIG_PARTITION_TABLE_CUSTOM=y", "CONFIG_PARTITION_TABLE_OFFSET=0x10000",
    "CONFIG_ESP32_ENABLE_COREDUMP_TO_FLASH=y", "CONFIG_ESP_COREDUMP_ENABLE_TO_UART=y",
    "CONFIG_SECURE_BOOT=y", "CONFIG_SECURE_BOOT_ENABLED=y", "CONFIG_SECURE_BOOT_V2_ENABLED=y",
    "CONFIG_SECURE_FLASH_ENCRYPTION_AES256=y", "CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y",
    "CONFIG_SECURE_ENABLE_TEE=y", "CONFIG_PARTITION_TABLE_SINGLE_APP_TEE=y", "CONFIG_EFUSE_VIRTUAL=y",
    "CONFIG_ESP32_REV_MIN_3=y", "CONFIG_ESP32_REV_MIN_1=y",
]


def idf_tree(root: Path, target: str, version: str = "6.0.2") -> Path:
    """An ESP-IDF-shaped tree whose Kconfig is the shipped model for ``target`` and
    ESP-IDF ``version``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Kconfig").write_text(
        model_kconfig_text(target, version) + '\nsource "$COMPONENT_KCONFIGS_SOURCE_FILE"\n'
        'source "$COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE"\n', encoding="utf-8")
    for name, text in IDF_RENAME_FILES.items():
        (root / "components" / name).mkdir(parents=True, exist_ok=True)
        (root / "components" / name / "sdkconfig.rename").write_text(text, encoding="utf-8")
    (root / "tools" / "cmake").mkdir(parents=True, exist_ok=True)
    major, minor, patch = version.split(".")
    (root / "tools" / "cmake" / "version.cmake").write_text(
        f"set(IDF_VERSION_MAJOR {major})\nset(IDF_VERSION_MINOR {minor})\n"
        f"set(IDF_VERSION_PATCH {patch})\n")
    return root


def test_the_shipped_renames_are_esp_idfs_for_the_models_symbols(tmp_path: Path) -> None:
    paths = []
    for name, text in IDF_RENAME_FILES.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    assert read_rename_files(paths) == RENAMED_SYMBOLS


def test_inverted_rename_flips_a_boolean(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("CONFIG_OLD_ON   !CONFIG_NEW_OFF  # comment\n")
    renames = read_rename_files([tmp_path / "r"])
    assert renames == {"OLD_ON": "!NEW_OFF"}
    parsed = parse_sdkconfig_text("CONFIG_OLD_ON=y\n# CONFIG_OLD_ON is not set\n", renames=renames)
    assert [(a.name, a.value) for a in parsed] == [("NEW_OFF", "n"), ("NEW_OFF", "y")]


def test_coredump_rename_picks_the_coredump_table_without_esp_idf(tmp_path: Path) -> None:
    # The case: the old coredump name turns the encrypted-NVS OTA table off,
    # and ESP-IDF resolves the single-app coredump table.
    project = tmp_path / "p"
    project.mkdir()
    (project / "sdkconfig.defaults").write_text(
        "CONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_PARTITION_TABLE_TWO_OTA_ENCRYPTED_NVS=y\n"
        "CONFIG_ESP32_ENABLE_COREDUMP_TO_FLASH=y\n")
    shipped = read_config(project, env={})
    assert shipped.model == "shipped"
    assert shipped.values["ESP_COREDUMP_ENABLE_TO_FLASH"] is True
    assert shipped.values["PARTITION_TABLE_FILENAME"] == "partitions_singleapp_coredump.csv"
    real = read_config(project, env={"IDF_PATH": str(idf_tree(tmp_path / "idf", "esp32"))})
    assert real.model.startswith("esp-idf-kconfig:")
    assert real.values["PARTITION_TABLE_FILENAME"] == "partitions_singleapp_coredump.csv"


@pytest.mark.parametrize("version", ["6.0.2", "5.5.5"])
@pytest.mark.parametrize("seed", range(16))
def test_shipped_model_agrees_with_esp_idf_kconfig(tmp_path: Path, seed: int, version: str) -> None:
    rng = random.Random(seed)
    target = sorted(t for t in CHIPS if t != "linux")[seed % (len(CHIPS) - 1)]
    lines = [f'CONFIG_IDF_TARGET="{target}"'] + rng.sample(CHOICES, rng.randint(2, 9))
    project = tmp_path / "p"
    project.mkdir()
    (project / "sdkconfig.defaults").write_text("\n".join(lines) + "\n")
    shipped = read_config(project, env={}, idf_version=version)
    real = read_config(project, env={"IDF_PATH": str(idf_tree(tmp_path / "idf", target, version))})
    assert real.model.startswith("esp-idf-kconfig:"), real.notes
    differ = {name: (shipped.values[name], real.values[name]) for name in shipped.values
              if shipped.values[name] != real.values[name]
              and not (shipped.values[name] is None and real.values[name] is False)}
    assert differ == {}, lines
    assert not [n for n in real.notes if "the shipped model resolves" in n]

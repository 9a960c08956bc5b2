"""Project inputs shared by several test modules (imported, never collected).

ESP32_FLASH_ENC: sdkconfig.defaults for an esp32 with development-mode flash
encryption and NVS encryption (the flash-encryption key scheme by default).
BASIC_PROJECT: an nvs_secure.yaml with one product and derived keys.
PARTITIONS_WITH_KEYS: a minimal partitions.yaml with nvs, an encrypted nvs_keys and an
app.  copy_example_project: example_project's inputs (not its CMake or build files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"

ESP32_FLASH_ENC = """\
CONFIG_IDF_TARGET="esp32"
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
CONFIG_SECURE_FLASH_ENC_ENABLED=y
CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
CONFIG_NVS_ENCRYPTION=y
"""

#: One product "basic"; keys derived from $MASTER (with a development default).
BASIC_PROJECT = """\
version: 1
partitions: partitions.yaml
master_secret: {env: MASTER, development_default: "%s"}
keys: {source: derive}
nvs:
  nvs: {values: [values.yaml]}
products:
  basic: {}
""" % ("de" * 32)

PARTITIONS_WITH_KEYS = """\
table: {offset: 0x8000, flash_size: 4MB}
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 24K}
  - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted]}
  - {name: factory, type: app, subtype: factory, size: 1M}
"""


def copy_example_project(root: Path, extra_yaml: str = "") -> Path:
    """``root/project`` holding example_project's inputs; ``extra_yaml`` is appended to
    its nvs_secure.yaml."""
    project = root / "project"
    project.mkdir()
    for name in ("nvs_secure.yaml", "partitions.yaml", "nvs_values.yaml", "sdkconfig.defaults"):
        shutil.copy(EXAMPLE / name, project / name)
    for folder in ("certs", "products"):
        shutil.copytree(EXAMPLE / folder, project / folder)
    if extra_yaml:
        with open(project / "nvs_secure.yaml", "a", encoding="utf-8") as fh:
            fh.write(extra_yaml)
    return project


def example_password_location() -> str:
    """``line:col`` of ``EXAMPLE_WIFI_PASSWORD`` in the example's values file, where
    messages about that variable point."""
    for number, line in enumerate((EXAMPLE / "nvs_values.yaml").read_text().splitlines(), 1):
        if "env: EXAMPLE_WIFI_PASSWORD" in line:
            return f"{number}:{line.index('EXAMPLE_WIFI_PASSWORD') + 1}"
    raise AssertionError("the example no longer reads EXAMPLE_WIFI_PASSWORD")


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; returns ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root

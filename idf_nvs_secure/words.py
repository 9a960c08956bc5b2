"""The domain's words, each an enum whose values are the strings of ESP-IDF and of our
own JSON outputs (so ``json.dumps`` and earlier manifests see the same text).

They subclass ``str``: a value compares equal to its text, formats as its text, and
serialises as its text.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "Word",
    "Severity",
    "KeyProtection",
    "FlashEncryptionMode",
    "KeySource",
    "KeyProvider",
    "OutputKind",
]


class Word(str, Enum):
    """A domain word: an enum member that is also its text."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Severity(Word):
    """How bad a diagnostic is: an error fails ``detect`` and stops builds."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class KeyProtection(Word):
    """``CONFIG_NVS_SEC_KEY_PROTECTION_SCHEME``: who protects the NVS keys
    (nvs_sec_provider, ESP-IDF v5.1 and later)."""

    FLASH_ENC = "flash_enc"  # an nvs_keys partition, itself under flash encryption
    HMAC = "hmac"  # derived on the chip from an HMAC key in eFuse
    NONE = "none"  # the application passes its keys to nvs_flash_secure_init()


class FlashEncryptionMode(Word):
    """``CONFIG_SECURE_FLASH_ENCRYPTION_MODE_*``."""

    DEVELOPMENT = "development"
    RELEASE = "release"


class KeySource(Word):
    """``keys: {source: ...}`` in nvs_secure.yaml: where the host gets key material."""

    GENERATE = "generate"  # OS CSPRNG, drawn once and kept (cannot be made again)
    FILE = "file"  # a key file the user gives (never written by us)
    DERIVE = "derive"  # HKDF-SHA256 from the master secret (made again anywhere)
    CHIP = "chip"  # the firmware makes the keys at first boot

    @property
    def reproducible(self) -> bool:
        """True when the same inputs give the same key bytes on any machine."""
        return self in (KeySource.FILE, KeySource.DERIVE)


class KeyProvider(Word):
    """Where an encrypted NVS partition's keys come from on the device."""

    HOST_NVS_KEYS = "nvs_keys_host"  # the host writes the nvs_keys partition
    CHIP_NVS_KEYS = "nvs_keys_chip"  # nvs_flash_generate_keys() fills it at first boot
    HMAC = "hmac"  # the chip derives them from the HMAC eFuse key
    APPLICATION = "app"  # the application passes them to nvs_flash_secure_init()

    @property
    def description(self) -> str:
        return {
            KeyProvider.HOST_NVS_KEYS: "nvs_keys partition written by the host",
            KeyProvider.CHIP_NVS_KEYS: "nvs_keys generated on the chip at first boot",
            KeyProvider.HMAC: "derived on the chip from the HMAC eFuse key",
            KeyProvider.APPLICATION: "supplied by the application",
        }[self]


class OutputKind(Word):
    """What an output file is."""

    PARTITION_TABLE = "partition_table"  # gen_esp32part.py's binary
    PARTITION_CSV = "partition_csv"  # the table as ESP-IDF's CSV
    NVS_IMAGE = "nvs_image"  # an NVS partition image (XTS-encrypted or plain)
    NVS_KEYS_IMAGE = "nvs_keys_image"  # an nvs_keys partition image (two XTS keys + CRC)
    HMAC_KEY = "hmac_key"  # the 32-byte key to burn into an eFuse key block

    @property
    def secret(self) -> bool:
        """Key material: mode 0600, never printed, never overwritten without --force."""
        return self in (OutputKind.NVS_KEYS_IMAGE, OutputKind.HMAC_KEY)

    @property
    def label(self) -> str:
        """The kind in words for people (the value stays the JSON word)."""
        return {
            OutputKind.PARTITION_TABLE: "partition table",
            OutputKind.PARTITION_CSV: "partition table CSV",
            OutputKind.NVS_IMAGE: "NVS image",
            OutputKind.NVS_KEYS_IMAGE: "nvs_keys image",
            OutputKind.HMAC_KEY: "HMAC eFuse key",
        }[self]

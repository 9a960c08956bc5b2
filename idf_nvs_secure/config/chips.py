"""Per-chip facts that decide how NVS encryption can work on an ESP-IDF target.

The facts mirror the ``SOC_*`` capability symbols in ESP-IDF's
``components/soc/<chip>/include/soc/Kconfig.soc_caps.in`` (checked against ESP-IDF
master, mid-2026) and the target lists in ``tools/idf_py_actions/constants.py``:

* ``SOC_HMAC_SUPPORTED``: the HMAC peripheral, which lets ``nvs_sec_provider`` derive
  the NVS XTS keys from an eFuse key (the "HMAC scheme").
* ``SOC_FLASH_ENC_SUPPORTED``: hardware flash encryption.  It is AES-XTS on every chip
  except the original ESP32, which has its own AES-256 scheme.
* ``SOC_FLASH_ENCRYPTION_XTS_AES_128/_256/_128_DERIVED`` and
  ``SOC_FLASH_ENCRYPTION_XTS_AES_OPTIONS``: which flash-encryption key sizes exist and
  whether ``SECURE_FLASH_ENCRYPTION_KEYSIZE`` offers a choice.

The ``linux`` host target has none of these: NVS encryption is not available there
(ESP-IDF's nvs_flash CMakeLists stops with "NVS currently doesn't support encryption if
built for Linux").

Pure data; :func:`get_chip` is the only lookup.  :func:`soc_symbols` gives the values
the shipped Kconfig model reads (see :mod:`idf_nvs_secure.sdkconfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "Chip",
    "CHIPS",
    "DEFAULT_TARGET",
    "SOC_SYMBOLS",
    "get_chip",
    "soc_symbols",
    "target_names",
]

#: The target ESP-IDF uses when neither the environment nor any sdkconfig names one
#: (tools/cmake/targets.cmake, ``__target_init``).
DEFAULT_TARGET = "esp32"


@dataclass(frozen=True)
class Chip:
    """What one ESP-IDF target can do for NVS and flash encryption.

    ``flash_encryption_key_sizes`` lists the XTS-AES key sizes in bits that flash
    encryption can use (empty on the ESP32, whose flash encryption is not XTS).
    """

    name: str
    hmac: bool = False
    flash_encryption: bool = False
    xts_aes: bool = False
    xts_aes_128: bool = False
    xts_aes_256: bool = False
    xts_aes_128_derived: bool = False
    #: ``SOC_FLASH_ENCRYPTION_XTS_AES_OPTIONS``: the key size is a menuconfig choice.
    xts_aes_options: bool = False
    #: A preview target in ESP-IDF (``PREVIEW_TARGETS``).
    preview: bool = False
    #: The ``linux`` host target (no flash, no eFuses, no NVS encryption).
    host: bool = False

    @property
    def flash_encryption_key_sizes(self) -> tuple[int, ...]:
        """XTS-AES key sizes (bits) flash encryption can use; ``()`` when not XTS."""
        return tuple(bits for bits, ok in ((128, self.xts_aes_128), (256, self.xts_aes_256)) if ok)

    @property
    def flash_encryption_algorithm(self) -> str | None:
        """``"aes-256"`` (ESP32's own scheme), ``"xts-aes"``, or None without flash encryption."""
        if not self.flash_encryption:
            return None
        return "xts-aes" if self.xts_aes else "aes-256"

    @property
    def nvs_encryption_possible(self) -> bool:
        """ESP-IDF's ``NVS_ENCRYPTION`` dependency: flash encryption or HMAC exists."""
        return not self.host and (self.flash_encryption or self.hmac)


def _xts(name: str, *, hmac: bool, k256: bool = False, derived: bool = False,
         options: bool | None = None, preview: bool = False) -> Chip:
    return Chip(
        name=name, hmac=hmac, flash_encryption=True, xts_aes=True, xts_aes_128=True,
        xts_aes_256=k256, xts_aes_128_derived=derived,
        xts_aes_options=(k256 or derived) if options is None else options, preview=preview,
    )


#: Every target this plugin knows, by ESP-IDF's name for it.
CHIPS: dict[str, Chip] = {
    chip.name: chip
    for chip in (
        Chip(name="esp32", hmac=False, flash_encryption=True),
        _xts("esp32s2", hmac=True, k256=True),
        _xts("esp32s3", hmac=True, k256=True),
        _xts("esp32c2", hmac=False, derived=True),
        _xts("esp32c3", hmac=True),
        _xts("esp32c5", hmac=True, k256=True),
        _xts("esp32c6", hmac=True),
        _xts("esp32c61", hmac=False),
        _xts("esp32h2", hmac=True),
        _xts("esp32h21", hmac=True, preview=True),
        _xts("esp32h4", hmac=True, k256=True, preview=True),
        _xts("esp32p4", hmac=True, k256=True),
        _xts("esp32s31", hmac=True, k256=True, preview=True),
        Chip(name="linux", preview=True, host=True),
    )
}

#: The ``SOC_*`` symbols the Kconfig model declares, in declaration order.
SOC_SYMBOLS = (
    "SOC_HMAC_SUPPORTED",
    "SOC_FLASH_ENC_SUPPORTED",
    "SOC_FLASH_ENCRYPTION_XTS_AES",
    "SOC_FLASH_ENCRYPTION_XTS_AES_OPTIONS",
    "SOC_FLASH_ENCRYPTION_XTS_AES_128",
    "SOC_FLASH_ENCRYPTION_XTS_AES_128_DERIVED",
    "SOC_FLASH_ENCRYPTION_XTS_AES_256",
)


def target_names() -> tuple[str, ...]:
    """Known target names, sorted."""
    return tuple(sorted(CHIPS))


def get_chip(target: str) -> Chip:
    """The facts for ``target`` (e.g. ``"esp32c3"``); :class:`InputError` if unknown."""
    try:
        return CHIPS[target]
    except KeyError:
        raise InputError(
            f"unknown ESP-IDF target {target!r}",
            hint="known targets: " + ", ".join(target_names()),
        ) from None


def soc_symbols(chip: Chip) -> dict[str, bool]:
    """The ``SOC_*`` capability values for ``chip``, keyed by symbol name."""
    return {
        "SOC_HMAC_SUPPORTED": chip.hmac,
        "SOC_FLASH_ENC_SUPPORTED": chip.flash_encryption,
        "SOC_FLASH_ENCRYPTION_XTS_AES": chip.xts_aes,
        "SOC_FLASH_ENCRYPTION_XTS_AES_OPTIONS": chip.xts_aes_options,
        "SOC_FLASH_ENCRYPTION_XTS_AES_128": chip.xts_aes_128,
        "SOC_FLASH_ENCRYPTION_XTS_AES_128_DERIVED": chip.xts_aes_128_derived,
        "SOC_FLASH_ENCRYPTION_XTS_AES_256": chip.xts_aes_256,
    }

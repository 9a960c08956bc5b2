"""Host-side flash encryption: data encrypted for its flash offset, as the chip would.

Release-mode flash encryption never lets ``esptool write-flash --encrypt`` reach the
chip's encryption engine, so files that must be stored encrypted are encrypted on the
host with the device's flash-encryption key and written raw.  The cipher is espsecure's
own (``espsecure.encrypt_flash_data`` / ``decrypt_flash_data`` of esptool 5.x), never a
re-implementation: the ESP32's AES-256 scheme with its per-32-byte key tweak
(``FLASH_CRYPT_CONFIG`` 0xF, what the bootloader burns) or, on every later chip,
AES-XTS with Espressif's 128-byte data units.

Which files are stored encrypted follows the bootloader (bootloader_support
flash_encrypt.c ``encrypt_partition``) and esptool_py's
``esptool_py_partition_needs_encryption``: the bootloader, the partition table, app
partitions, ``data/ota``, ``data/tee_ota``, ``data/nvs_keys`` and any partition with the
``encrypted`` flag.  NVS data partitions are not: NVS encrypts its own entries.

espsecure takes open files and prints to stdout; both stay inside this module.
"""

from __future__ import annotations

import contextlib
import io

from ..errors import KeyMaterialError
from ..formats.nvs_keys import key_fingerprint
from ..formats.partition_table import PartitionTable

__all__ = [
    "FLASH_CRYPT_CONF",
    "FLASH_ENCRYPTION_KEY_SIZES",
    "check_flash_encryption_key",
    "stored_encrypted",
    "encrypt_for_flash",
    "decrypt_from_flash",
]

#: FLASH_CRYPT_CONFIG eFuse value the ESP32 bootloader burns (all tweak bits on); it is
#: also espsecure's default.  Ignored by AES-XTS chips.
FLASH_CRYPT_CONF = 0xF

#: Key file sizes in bytes per ``SecurityPlan.flash_encryption_key`` (espsecure
#: ``_load_hardware_key``): the ESP32 takes a 256-bit key (or 192 bits under the 3/4
#: coding scheme); XTS-AES-128 a 256-bit file (two 128-bit halves), XTS-AES-256 512 bits,
#: and the derived XTS-AES-128 variant the 128-bit eFuse key.
FLASH_ENCRYPTION_KEY_SIZES: dict[str, tuple[int, ...]] = {
    "aes-256": (32, 24),
    "xts-aes-128": (32,),
    "xts-aes-256": (64,),
    "xts-aes-128-derived": (16,),
}

# Partition (type, subtype) pairs the bootloader always encrypts: data/ota, data/tee_ota
# (0x90), data/nvs_keys (0x04).  Every app partition (type 0) is encrypted too.
_ALWAYS_ENCRYPTED = {(1, 0x00), (1, 0x90), (1, 0x04)}
_APP_TYPE = 0
_BLOCK = 16  # both schemes work on whole 16-byte AES blocks


def check_flash_encryption_key(key: bytes, scheme: str | None, *, file: str | None = None) -> None:
    """Raise :class:`KeyMaterialError` unless ``key`` fits the plan's flash-encryption
    key scheme (``SecurityPlan.flash_encryption_key``)."""
    if scheme is None:
        raise KeyMaterialError(
            "a flash-encryption key was given, but sdkconfig does not enable flash "
            "encryption", file=file,
            hint="set CONFIG_SECURE_FLASH_ENC_ENABLED=y, or leave out --flash-encryption-key")
    sizes = FLASH_ENCRYPTION_KEY_SIZES.get(scheme)
    if sizes is None:  # pragma: no cover - the plan only produces the schemes above
        raise KeyMaterialError(f"unknown flash-encryption scheme {scheme!r}", file=file)
    if len(key) not in sizes:
        want = " or ".join(f"{n} bytes" for n in sizes)
        raise KeyMaterialError(
            f"the flash-encryption key is {len(key)} bytes; {scheme} needs {want}",
            file=file, hint="use the key file burnt into eFuse (espsecure "
            "generate-flash-encryption-key makes one of the right size)")


def stored_encrypted(offset: int, table: PartitionTable) -> bool:
    """True when what is flashed at ``offset`` is stored encrypted under flash
    encryption: the bootloader (anything before the partition table), the table, and
    the partitions the bootloader encrypts (see the module docstring)."""
    if offset <= table.offset:
        return True
    for part in table.partitions:
        if part.offset <= offset < part.offset + part.size:
            return (part.type == _APP_TYPE or (part.type, part.subtype) in _ALWAYS_ENCRYPTED
                    or part.encrypted)
    return False


def _padded(data: bytes) -> bytes:
    """``data`` padded with erased flash (0xFF) to whole AES blocks; espsecure would pad
    with random bytes, which a reproducible release cannot have."""
    rest = len(data) % _BLOCK
    return data + b"\xff" * (_BLOCK - rest) if rest else data


def _run(operation, key: bytes, data: bytes, offset: int, target: str) -> bytes:
    import espsecure
    import esptool

    if offset % _BLOCK:
        raise KeyMaterialError(f"flash offset 0x{offset:x} is not a multiple of {_BLOCK}")
    out = io.BytesIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # espsecure reports key sizes
            getattr(espsecure, operation)(io.BytesIO(key), out, offset, FLASH_CRYPT_CONF,
                                          target != "esp32", io.BytesIO(_padded(data)))
    except (esptool.FatalError, ValueError) as exc:  # ValueError: e.g. equal XTS key halves
        raise KeyMaterialError(f"cannot use this flash-encryption key: {exc}",
                               hint=f"flash-encryption key {key_fingerprint(key)}") from None
    return out.getvalue()


def encrypt_for_flash(data: bytes, offset: int, key: bytes, *, target: str) -> bytes:
    """``data`` encrypted as ``target``'s flash encryption stores it at ``offset``.

    ``offset`` is in bytes from the start of flash, a multiple of 16; the result has
    ``len(data)`` rounded up to 16 bytes (padded with 0xFF).  ``key`` is the raw key
    file as ``espefuse burn-key`` takes it (see :data:`FLASH_ENCRYPTION_KEY_SIZES`).
    """
    return _run("encrypt_flash_data", key, data, offset, target)


def decrypt_from_flash(data: bytes, offset: int, key: bytes, *, target: str) -> bytes:
    """Inverse of :func:`encrypt_for_flash` (for checks and tests)."""
    return _run("decrypt_flash_data", key, data, offset, target)

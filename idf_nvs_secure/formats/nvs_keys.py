"""The ``nvs_keys`` partition: the two XTS keys that encrypt an NVS partition.

Layout (ESP-IDF ``nvs_flash_generate_keys()`` / ``nvs_flash_read_security_cfg()`` in
components/nvs_flash/src/nvs_api.cpp, ``nvs_sec_cfg_t`` in nvs_flash.h)::

    offset  size  field
    0       32    eky   XTS data (encryption) key
    32      32    tky   XTS tweak key
    64      4     crc   esp_rom_crc32_le(0xFFFFFFFF, eky || tky), little-endian
    68      ...   0xFF  up to the end of the 4096-byte sector

An all-0xFF partition is an *erased* one: on first boot the firmware generates keys into
it (the automatic method).  With the HMAC scheme there is no partition at all: the chip
derives the same two keys from an eFuse HMAC key, ``derive_nvs_keys_from_hmac``.

Key bytes never appear in ``repr`` or messages; use :func:`key_fingerprint`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import FormatError, KeyMaterialError

__all__ = [
    "NVS_KEY_SIZE",
    "NVS_KEYS_PARTITION_SIZE",
    "HMAC_KEY_SIZE",
    "NvsKeys",
    "build_nvs_keys",
    "parse_nvs_keys",
    "generate_nvs_keys",
    "generate_hmac_key",
    "derive_nvs_keys_from_hmac",
    "key_fingerprint",
    "is_erased",
    "check_key_strength",
]

#: NVS_KEY_SIZE in nvs_flash.h: each of the two XTS-AES-256 half keys, in bytes.
NVS_KEY_SIZE = 32
#: The image written for an nvs_keys partition: one 4096-byte flash sector.
NVS_KEYS_PARTITION_SIZE = 0x1000
#: An HMAC eFuse key (HMAC-SHA256 key), in bytes.
HMAC_KEY_SIZE = 32

# eky (32 bytes), tky (32 bytes), crc32 little-endian: the part of the sector that is
# not 0xFF padding.
_LAYOUT = struct.Struct("<32s32sI")

# Seeds of the HMAC scheme (EKEY_SEED / TKEY_SEED in nvs_sec_provider.c): eight
# uint32_t words each, so the little-endian bytes of 0xAEBE5A5A / 0xCEDEA5A5 repeated.
_HMAC_EKEY_SEED = struct.pack("<I", 0xAEBE5A5A) * 8
_HMAC_TKEY_SEED = struct.pack("<I", 0xCEDEA5A5) * 8


def key_fingerprint(material: bytes) -> str:
    """A short, stable name for key material that reveals nothing of it.

    ``SHA256:`` and the first 16 hex digits of the SHA-256 of the bytes.
    """
    return "SHA256:" + hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class NvsKeys:
    """The XTS key pair of one NVS partition (``nvs_sec_cfg_t``).

    ``data_key`` (eky) encrypts the entries; ``tweak_key`` (tky) encrypts the tweaks.
    Both are 32 bytes and they differ (ESP-IDF asserts it for derived keys).
    """

    data_key: bytes = field(repr=False)
    tweak_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("data_key", "tweak_key"):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != NVS_KEY_SIZE:
                raise KeyMaterialError(f"{name} must be {NVS_KEY_SIZE} bytes")
        if self.data_key == self.tweak_key:
            raise KeyMaterialError("the XTS data key and tweak key must differ")

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the 64 key bytes, eky then tky (safe to print)."""
        return key_fingerprint(self.data_key + self.tweak_key)

    def __repr__(self) -> str:
        return f"NvsKeys({self.fingerprint})"


def build_nvs_keys(keys: NvsKeys) -> bytes:
    """The 4096-byte image of an nvs_keys partition holding ``keys``."""
    crc = zlib.crc32(keys.data_key + keys.tweak_key, 0xFFFFFFFF) & 0xFFFFFFFF
    head = _LAYOUT.pack(keys.data_key, keys.tweak_key, crc)
    return head + b"\xff" * (NVS_KEYS_PARTITION_SIZE - len(head))


def is_erased(data: bytes) -> bool:
    """True when the keys area is all 0xFF: keys not initialised (generated on the chip)."""
    return data[: _LAYOUT.size] == b"\xff" * _LAYOUT.size


def parse_nvs_keys(data: bytes) -> NvsKeys:
    """Read the keys from an nvs_keys partition image (4096 bytes, or at least 68).

    Raises :class:`FormatError` for a short image or a CRC mismatch (a corrupt file, or
    one still encrypted by flash encryption), :class:`KeyMaterialError` for an erased one
    and for weak keys (:func:`check_key_strength`; equal halves included).
    """
    if len(data) < _LAYOUT.size:
        raise FormatError(
            f"nvs_keys image is {len(data)} bytes; expected {NVS_KEYS_PARTITION_SIZE} "
            f"(at least {_LAYOUT.size})"
        )
    if is_erased(data):
        raise KeyMaterialError(
            "nvs_keys image is erased (all 0xFF): it holds no keys",
            hint="keys are generated on the chip at first boot in that case; "
            "the host cannot encrypt for them",
        )
    data_key, tweak_key, crc = _LAYOUT.unpack_from(data)
    expected = zlib.crc32(data_key + tweak_key, 0xFFFFFFFF) & 0xFFFFFFFF
    if crc != expected:
        raise FormatError(
            f"nvs_keys CRC mismatch (stored 0x{crc:08x}, computed 0x{expected:08x})",
            hint="is this a flash read-back still encrypted by flash encryption?",
        )
    keys = NvsKeys(bytes(data_key), bytes(tweak_key))
    check_key_strength(keys)
    return keys


#: Half keys that are no secret at all: all zero bits or all one bits.
_WEAK_HALVES = (b"\x00" * NVS_KEY_SIZE, b"\xff" * NVS_KEY_SIZE)


def check_key_strength(keys: NvsKeys) -> None:
    """Refuse keys a generator would never produce: a data or tweak key that is all 0x00
    or all 0xFF (a placeholder or erased flash, not a key).  Equal halves are refused by
    :class:`NvsKeys` itself.  Raises :class:`KeyMaterialError`; no key byte is shown."""
    for name, half in (("data key (eky, bytes 0..31)", keys.data_key),
                       ("tweak key (tky, bytes 32..63)", keys.tweak_key)):
        if half in _WEAK_HALVES:
            fill = "0x00" if half[0] == 0 else "0xFF"
            raise KeyMaterialError(
                f"nvs_keys XTS {name} is all {fill}: that is no key",
                hint="make new keys with: idf-nvs-secure keys generate -o nvs_keys.bin")


def generate_nvs_keys(rng: Callable[[int], bytes] = secrets.token_bytes) -> NvsKeys:
    """Fresh keys from ``rng`` (by default the operating system's CSPRNG).

    Draws again in the astronomically unlikely case that the halves are equal or a half
    is all 0x00 or all 0xFF (which :func:`parse_nvs_keys` refuses as weak).
    """
    while True:
        material = rng(2 * NVS_KEY_SIZE)
        data_key, tweak_key = material[:NVS_KEY_SIZE], material[NVS_KEY_SIZE:]
        if data_key != tweak_key and not {data_key, tweak_key} & set(_WEAK_HALVES):
            return NvsKeys(data_key, tweak_key)


def generate_hmac_key(rng: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A fresh 32-byte HMAC key to burn into an eFuse key block (purpose HMAC_UP)."""
    return rng(HMAC_KEY_SIZE)


def derive_nvs_keys_from_hmac(hmac_key: bytes) -> NvsKeys:
    """The keys the chip derives from an HMAC eFuse key (``compute_nvs_keys_with_hmac``).

    eky = HMAC-SHA256(key, EKEY_SEED x 8), tky = HMAC-SHA256(key, TKEY_SEED x 8).
    """
    if len(hmac_key) != HMAC_KEY_SIZE:
        raise KeyMaterialError(
            f"an HMAC eFuse key is {HMAC_KEY_SIZE} bytes, got {len(hmac_key)}"
        )
    data_key = hmac.new(hmac_key, _HMAC_EKEY_SEED, hashlib.sha256).digest()
    tweak_key = hmac.new(hmac_key, _HMAC_TKEY_SEED, hashlib.sha256).digest()
    return NvsKeys(data_key, tweak_key)

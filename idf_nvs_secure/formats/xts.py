"""AES-XTS-256 as NVS encryption uses it, batched over many 32-byte data units.

ESP-IDF (nvs_encrypted_partition.cpp) encrypts every 32-byte entry on its own as one
XTS data unit (IEEE 1619, no ciphertext stealing needed): the data key ``eky``
encrypts, the tweak key ``tky`` encrypts the tweak, and the tweak is the entry's byte
offset from the partition start as a 16-byte little-endian number.  Page headers and
state bitmaps are not encrypted; that is the caller's business.

For one data unit of two AES blocks P0, P1 at offset ``o``::

    T0 = AES-ECB(tky, o as 16 bytes LE)       T1 = T0 * alpha in GF(2^128)
    C0 = AES-ECB(eky, P0 ^ T0) ^ T0           C1 = AES-ECB(eky, P1 ^ T1) ^ T1

Instead of one cipher object per entry this module makes two ECB passes per call: one
over all tweaks, one over all data, and does the XOR masks and the multiplication by
alpha on big integers (one lane of 256 bits per data unit), 1,024 units at a time so
that the integers stay in the CPU's cache and the cost stays linear in the image size.  For speed over many images
it keeps, per process, the tweak masks of recently used (tweak key, offsets) and, per
thread, ECB contexts of recently used keys: key-derived material stays in memory as long
as the process runs, like the keys themselves in the caller.
"""

from __future__ import annotations

import struct
import threading
from functools import lru_cache
from typing import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import KeyMaterialError

__all__ = [
    "XTS_DATA_UNIT_SIZE",
    "XTS_HALF_KEY_SIZE",
    "xts_encrypt_units",
    "xts_decrypt_units",
    "xts_encrypt_runs",
    "xts_decrypt_runs",
]

#: Bytes per XTS data unit: one NVS entry (NVS_CONST_ENTRY_SIZE).
XTS_DATA_UNIT_SIZE = 32
#: Bytes of each of the two AES-256 keys (NVS_KEY_SIZE).
XTS_HALF_KEY_SIZE = 32

_UNIT = XTS_DATA_UNIT_SIZE
_GF128_POLY = 0x87  # x^128 = x^7 + x^2 + x + 1 (reduction after a carry out of bit 127)
_BLOCK_UNITS = 128  # units per cached tweak-mask block (a little more than an NVS page)
_CACHE_UNITS = 1024  # units per step of the big-integer work (32 KB: stays in cache)
_local = threading.local()  # per-thread ECB contexts: contexts are not shared across threads


def _ecb(key: bytes, encrypt: bool):
    """A reusable AES-ECB context for ``key`` (ECB keeps no state between updates)."""
    contexts = getattr(_local, "contexts", None)
    if contexts is None:
        contexts = _local.contexts = {}
    context = contexts.get((key, encrypt))
    if context is None:
        if len(contexts) >= 16:
            contexts.clear()
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        context = contexts[(key, encrypt)] = cipher.encryptor() if encrypt else cipher.decryptor()
    return context


@lru_cache(maxsize=64)
def _lane_masks(units: int) -> tuple[int, int, int]:
    """Per-unit bit masks over ``units`` 256-bit lanes (little-endian big integers).

    low_half: bits 0..127 of every lane (T0); low_half_no_bit0: bits 1..127;
    bit0: bit 0 of every lane.
    """
    low_half = int.from_bytes((b"\xff" * 16 + b"\x00" * 16) * units, "little")
    low_half_no_bit0 = int.from_bytes((b"\xfe" + b"\xff" * 15 + b"\x00" * 16) * units, "little")
    bit0 = int.from_bytes((b"\x01" + b"\x00" * 31) * units, "little")
    return low_half, low_half_no_bit0, bit0


@lru_cache(maxsize=64)
def _tweak_struct(units: int) -> struct.Struct:
    return struct.Struct(f"<{4 * units}Q")


def _check_keys(data_key: bytes, tweak_key: bytes) -> None:
    if len(data_key) != XTS_HALF_KEY_SIZE or len(tweak_key) != XTS_HALF_KEY_SIZE:
        raise KeyMaterialError(
            f"XTS-AES-256 needs a {XTS_HALF_KEY_SIZE}-byte data key and a "
            f"{XTS_HALF_KEY_SIZE}-byte tweak key"
        )


def _tweak_mask_block(tweak_key: bytes, offsets: Sequence[int]) -> bytes:
    """T0 || T1 of every unit, 32 little-endian bytes per unit (one block of units).

    The tweak block of a unit at offset ``o`` is ``o`` as 16 bytes LE; it is encrypted
    next to a zero block in the unit's own 32-byte lane, and the zero block's
    ciphertext is masked off and replaced by T0 * alpha.
    """
    units = len(offsets)
    words = [0] * (4 * units)
    words[0::4] = offsets  # low 64 bits of each tweak; the rest of the lane is 0
    try:
        tweaks = _tweak_struct(units).pack(*words)
    except struct.error:
        raise ValueError("XTS offsets must be 0 <= offset < 2**64") from None
    low_half, low_half_no_bit0, bit0 = _lane_masks(units)
    t0 = int.from_bytes(_ecb(tweak_key, True).update(tweaks), "little") & low_half
    # multiply each T0 by alpha: shift left by one inside its 128 bits, and fold the
    # bit shifted out of bit 127 back in as 0x87
    t1 = ((t0 << 1) & low_half_no_bit0) ^ (((t0 >> 127) & bit0) * _GF128_POLY)
    return (t0 | (t1 << 128)).to_bytes(units * _UNIT, "little")


def _tweak_mask(tweak_key: bytes, offsets: Sequence[int]) -> bytes:
    """The tweak masks of ``offsets``, made block by block: big-integer work on a block
    that stays in the CPU's cache, so the cost is linear in the number of units."""
    return b"".join(_tweak_mask_block(tweak_key, offsets[a:a + _CACHE_UNITS])
                    for a in range(0, len(offsets), _CACHE_UNITS))


@lru_cache(maxsize=512)
def _block_mask(tweak_key: bytes, offset: int) -> bytes:
    """Tweak mask of _BLOCK_UNITS consecutive units, the first at ``offset``, as
    little-endian bytes (32 per unit)."""
    return _tweak_mask_block(tweak_key, range(offset, offset + _BLOCK_UNITS * _UNIT, _UNIT))


@lru_cache(maxsize=256)
def _runs_mask(tweak_key: bytes, runs: tuple[tuple[int, int], ...]) -> bytes:
    """The tweak mask of ``runs``, made in one pass from cached blocks (linear in the
    number of units)."""
    pieces = []
    for offset, units in runs:
        done = 0
        while done < units:
            part = min(_BLOCK_UNITS, units - done)
            pieces.append(_block_mask(tweak_key, offset + done * _UNIT)[:part * _UNIT])
            done += part
    return b"".join(pieces)


def _crypt(data_key: bytes, tweak_key: bytes, data: bytes, mask: bytes, units: int,
           encrypt: bool) -> bytes:
    size = units * _UNIT
    if len(data) != size:
        raise ValueError(
            f"XTS input is {len(data)} bytes; expected {units} units of {_UNIT} bytes"
        )
    if not units:
        return b""
    context = _ecb(data_key, encrypt)
    step = _CACHE_UNITS * _UNIT
    out = []
    for a in range(0, size, step):  # a block at a time: the integers stay in cache
        b = min(a + step, size)
        m = int.from_bytes(mask[a:b], "little")
        whitened = (int.from_bytes(data[a:b], "little") ^ m).to_bytes(b - a, "little")
        out.append((int.from_bytes(context.update(whitened), "little") ^ m)
                   .to_bytes(b - a, "little"))
    return out[0] if len(out) == 1 else b"".join(out)


def xts_encrypt_units(data_key: bytes, tweak_key: bytes, data: bytes,
                      offsets: Sequence[int]) -> bytes:
    """Encrypt ``len(offsets)`` consecutive 32-byte data units of ``data``.

    ``offsets[i]`` is unit i's tweak: its byte offset from the partition start (for an
    NVS entry a multiple of 32, 64 bytes past a page boundary or more).  ``data`` is
    exactly ``32 * len(offsets)`` bytes.  Equivalent to AES-256-XTS with the 64-byte
    key ``data_key + tweak_key`` applied to each unit separately.
    """
    _check_keys(data_key, tweak_key)
    return _crypt(data_key, tweak_key, data, _tweak_mask(tweak_key, offsets), len(offsets),
                  True)


def xts_decrypt_units(data_key: bytes, tweak_key: bytes, data: bytes,
                      offsets: Sequence[int]) -> bytes:
    """Inverse of :func:`xts_encrypt_units` for the same keys and offsets."""
    _check_keys(data_key, tweak_key)
    return _crypt(data_key, tweak_key, data, _tweak_mask(tweak_key, offsets), len(offsets),
                  False)


def xts_encrypt_runs(data_key: bytes, tweak_key: bytes, data: bytes,
                     runs: Sequence[tuple[int, int]]) -> bytes:
    """Like :func:`xts_encrypt_units` for units given as runs of consecutive offsets.

    ``runs`` is a sequence of ``(offset of the first unit, number of units)``; units of
    one run follow each other 32 bytes apart, and ``data`` holds all runs' units in
    order.  The tweak masks of runs are cached per tweak key, so images that share a
    key and a layout cost one ECB pass each.
    """
    _check_keys(data_key, tweak_key)
    units = sum(count for _offset, count in runs)
    return _crypt(data_key, tweak_key, data, _runs_mask(tweak_key, tuple(runs)), units, True)


def xts_decrypt_runs(data_key: bytes, tweak_key: bytes, data: bytes,
                     runs: Sequence[tuple[int, int]]) -> bytes:
    """Inverse of :func:`xts_encrypt_runs` for the same keys and runs."""
    _check_keys(data_key, tweak_key)
    units = sum(count for _offset, count in runs)
    return _crypt(data_key, tweak_key, data, _runs_mask(tweak_key, tuple(runs)), units, False)

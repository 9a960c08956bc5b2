"""Where keys come from: a master secret and HKDF-SHA256, so any machine can rebuild them.

The same secret gives the same keys everywhere: the HKDF ``info`` names what the key is
for (nvs_keys or an HMAC eFuse key), the product, the NVS partition and, for
manufacturing, the device.  Secrets are read from an environment variable or a file;
a project's documented development default is accepted only outside release builds.

Derivation version 2 (:data:`DERIVATION_VERSION`) encodes the ``info`` as the label
``idf-nvs-secure/derive/v2`` followed by each field as a 2-byte big-endian length and its
UTF-8 bytes: purpose, product, partition, and the device id only when there is one (so
no device and an empty device id differ, and no field can run into the next).  Version 1
joined the fields with NUL, so ``product="pro\0nvs_keys"`` collided with another context;
keys derived by version 1 differ from version 2's.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import KeyMaterialError
from ..formats.nvs_keys import HMAC_KEY_SIZE, NVS_KEY_SIZE, NvsKeys, key_fingerprint
from ..fsutil import read_input_bytes

__all__ = [
    "DERIVATION_VERSION",
    "MIN_SECRET_BYTES",
    "SecretSpec",
    "MasterSecret",
    "read_master_secret",
    "derive_nvs_keys",
    "derive_hmac_key",
]

#: A master secret must carry at least this many bytes (256 bits).
MIN_SECRET_BYTES = 32
#: HKDF salt: fixed, versioned, so a future scheme can never collide with this one.
_SALT = b"idf-nvs-secure/v1"
#: Version of the HKDF ``info`` encoding; a manifest records it next to derived keys.
DERIVATION_VERSION = 2
#: Starts every ``info`` of :data:`DERIVATION_VERSION`.
_INFO_LABEL = b"idf-nvs-secure/derive/v2"
#: Longest ``info`` field in bytes (its length is stored in two bytes).
_MAX_FIELD_BYTES = 0xFFFF


@dataclass(frozen=True)
class SecretSpec:
    """How to find a master secret: an environment variable, a file, or (development
    only) a default written in the project file."""

    env: str | None = None
    file: Path | None = None
    development_default: str | None = None
    where: str | None = None  # "file:line" of the spec, for messages


@dataclass(frozen=True)
class MasterSecret:
    """Secret bytes plus where they came from (safe to print: no secret in it)."""

    material: bytes
    origin: str
    development: bool = False

    def __repr__(self) -> str:
        return f"MasterSecret({self.origin}, {key_fingerprint(self.material)})"

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.material)


#: What a master secret may look like, for messages (never the value itself).
_SECRET_FORMS = (f"expected {2 * MIN_SECRET_BYTES} or more hex digits (an even number; an "
                 f"optional 0x and whitespace anywhere are ignored), or at least "
                 f"{MIN_SECRET_BYTES} bytes that are not hex text; make one with: python3 -c "
                 f"'import secrets; print(secrets.token_hex(32))'")
_HEXDIGITS = frozenset(string.hexdigits)


def _is_text(raw: bytes) -> str | None:
    """``raw`` as text when it is UTF-8 without control characters (tab, CR and LF
    allowed); None for binary data."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 0x20 and c not in "\t\r\n") or 0x7F <= ord(c) < 0xA0 for c in text):
        return None
    return text


def _decode(raw: bytes, origin: str, where: str | None = None) -> bytes:
    """The secret bytes of ``raw``, read from ``origin`` (named in errors, never shown;
    ``"it"`` when ``where`` is the secret's own file).

    Accepted forms:

    * hex text: an optional ``0x`` prefix, then an even number of at least 64 hex
      digits (32 bytes); whitespace anywhere (spaces, line breaks) is ignored;
    * any other text (UTF-8, no control characters) of at least 32 bytes, used as it
      is less one trailing newline;
    * binary data (not text) of at least 32 bytes, used exactly as it is.

    Text made only of hex digits (after the optional ``0x`` and whitespace) is always
    taken as hex, so 63 or 65 digits, an odd count or ``0x`` followed by anything but hex
    digits is a :class:`KeyMaterialError`, never silently another secret.
    """
    def refuse(problem: str) -> KeyMaterialError:
        subject = "the master secret" if origin == "it" else f"the master secret in {origin}"
        return KeyMaterialError(f"{subject} {problem}", file=where, hint=_SECRET_FORMS)

    text = _is_text(raw)
    if text is None:
        if len(raw) < MIN_SECRET_BYTES:
            raise refuse(f"is {len(raw)} bytes of binary data; at least {MIN_SECRET_BYTES} "
                         f"are needed")
        return raw
    compact = "".join(text.split())
    prefixed = compact[:2] in ("0x", "0X")
    digits = compact[2:] if prefixed else compact
    if digits and all(c in _HEXDIGITS for c in digits):
        if len(digits) % 2:
            raise refuse(f"is {len(digits)} hex digits, an odd number")
        if len(digits) < 2 * MIN_SECRET_BYTES:
            raise refuse(f"is {len(digits)} hex digits ({len(digits) // 2} bytes); at least "
                         f"{2 * MIN_SECRET_BYTES} are needed")
        return bytes.fromhex(digits)
    if prefixed:
        raise refuse("starts with 0x but is not all hex digits after it")
    material = raw[:-1] if raw.endswith(b"\n") else raw
    if len(material) < MIN_SECRET_BYTES:
        raise refuse(f"is {len(material)} bytes of text that is not hex; at least "
                     f"{MIN_SECRET_BYTES} are needed")
    return material


def read_master_secret(spec: SecretSpec, *, env: Mapping[str, str] | None = None,
                       base_dir: Path = Path("."), release: bool = False) -> MasterSecret:
    """Read the secret ``spec`` describes (forms: see :func:`_decode`); refuse a short or
    malformed one, and in ``release`` mode refuse the development default."""
    env = os.environ if env is None else env
    if spec.env and spec.env in env and env[spec.env] != "":
        origin = f"environment variable {spec.env}"
        secret = MasterSecret(_decode(env[spec.env].encode("utf-8"), origin, spec.where),
                              origin)
    elif spec.file is not None:
        path = spec.file if spec.file.is_absolute() else base_dir / spec.file
        origin = f"file {spec.file}"
        # Located at the project file's line when the spec came from one, else at the file.
        secret = MasterSecret(_decode(read_input_bytes(path), origin if spec.where else "it",
                                      spec.where or str(spec.file)), origin)
    elif spec.development_default is not None:
        if release:
            raise KeyMaterialError(
                "refusing the development default master secret in a release"
                + (f" ({spec.env} is not set)" if spec.env else ""),
                file=spec.where, hint=f"set {spec.env} or pass --master-secret-file FILE"
                if spec.env else "pass --master-secret-file FILE")
        secret = MasterSecret(_decode(spec.development_default.encode("utf-8"),
                                      "development_default", spec.where),
                              "development default (not for production)", development=True)
    elif spec.env:
        raise KeyMaterialError(f"environment variable {spec.env} (the master secret) is not set",
                               file=spec.where, hint=f"export {spec.env}=<64 hex digits>")
    else:
        raise KeyMaterialError("no master secret configured", file=spec.where,
                               hint="add master_secret: {env: NAME} to nvs_secure.yaml")
    return secret


def _info(purpose: str, product: str, partition: str, device_id: str | None) -> bytes:
    """The version-2 HKDF ``info``: label, then length-prefixed fields (see module doc)."""
    parts = [purpose, product, partition] + ([device_id] if device_id is not None else [])
    info = bytearray(_INFO_LABEL)
    for name, part in zip(("purpose", "product", "partition", "device id"), parts):
        encoded = part.encode("utf-8")
        if len(encoded) > _MAX_FIELD_BYTES:
            raise KeyMaterialError(f"the {name} is {len(encoded)} bytes; key derivation "
                                   f"takes at most {_MAX_FIELD_BYTES}")
        info += len(encoded).to_bytes(2, "big") + encoded
    return bytes(info)


def _hkdf(secret: bytes, length: int, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


def derive_nvs_keys(secret: MasterSecret | bytes, *, product: str, partition: str,
                    device_id: str | None = None) -> NvsKeys:
    """The XTS key pair for one NVS partition of one product (and device)."""
    material = secret.material if isinstance(secret, MasterSecret) else secret
    okm = _hkdf(material, 2 * NVS_KEY_SIZE, _info("nvs_keys", product, partition, device_id))
    return NvsKeys(okm[:NVS_KEY_SIZE], okm[NVS_KEY_SIZE:])


def derive_hmac_key(secret: MasterSecret | bytes, *, product: str, partition: str,
                    device_id: str | None = None) -> bytes:
    """The 32-byte HMAC eFuse key for one product/partition (and device), HMAC scheme."""
    material = secret.material if isinstance(secret, MasterSecret) else secret
    return _hkdf(material, HMAC_KEY_SIZE, _info("hmac_key", product, partition, device_id))

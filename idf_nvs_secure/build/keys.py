"""Key material for a :class:`~..plan.outputs.KeyPlan`: the one place that turns a key
source into bytes (builds, CMake builds, releases and batches all call it).

* ``file``: the user's key file, read and checked (never written).
* ``derive``: HKDF-SHA256 from the master secret, with the product, the key plan's
  context and (batches) the device id.
* ``generate``: from the OS CSPRNG, once: a keystore keeps it, and a later build reads
  it back; :attr:`KeyResolver.new_keystore_files` lists what the caller must persist
  (the library writes no file), and without a keystore (releases with
  ``--random-keys``) the keys are fresh each time and the build is not reproducible.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Mapping

from ..errors import KeyMaterialError, NvsSecureError
from ..formats.nvs_keys import (
    HMAC_KEY_SIZE,
    NvsKeys,
    build_nvs_keys,
    derive_nvs_keys_from_hmac,
    generate_hmac_key,
    generate_nvs_keys,
    parse_nvs_keys,
)
from ..fsutil import read_input_bytes
from ..inputs.keysource import MasterSecret, derive_hmac_key, derive_nvs_keys, read_master_secret
from ..inputs.project import ResolvedProject
from ..plan.outputs import KeyPlan
from ..words import KeySource, OutputKind

__all__ = ["KeyResolver", "keystore_path", "key_material"]


def keystore_path(keystore: Path, label: str, key: KeyPlan) -> Path:
    """Where a keystore keeps the generated material of ``key`` for product ``label``."""
    name = "hmac_key.bin" if key.kind == OutputKind.HMAC_KEY else f"{key.context}.nvs_keys.bin"
    return Path(keystore) / label / name


def key_material(key: KeyPlan, *, master: bytes | MasterSecret | None, product: str,
                 device_id: str | None = None,
                 rng: Callable[[int], bytes] = secrets.token_bytes,
                 kept: Mapping[str, bytes] | None = None) -> bytes:
    """The file bytes of ``key`` (an nvs_keys image or an HMAC key) for source ``derive``
    (from ``master``) or ``generate`` (``kept[key.name]`` when an earlier run made it,
    else fresh from ``rng``).  Pure: no file is read or written."""
    hmac = key.kind == OutputKind.HMAC_KEY
    if key.source == KeySource.DERIVE:
        if master is None:
            raise KeyMaterialError("keys source 'derive' needs a master secret", file=key.where)
        if hmac:
            return derive_hmac_key(master, product=product, partition=key.context,
                                   device_id=device_id)
        return build_nvs_keys(derive_nvs_keys(master, product=product, partition=key.context,
                                              device_id=device_id))
    if key.source != KeySource.GENERATE:
        raise KeyMaterialError(f"{key.name}: keys of source {key.source} are not made here")
    if kept and key.name in kept and (not hmac or len(kept[key.name]) == HMAC_KEY_SIZE):
        return kept[key.name]
    return generate_hmac_key(rng) if hmac else build_nvs_keys(generate_nvs_keys(rng))


class KeyResolver:
    """Resolves each key plan once (per device, in batches).

    ``master_secret`` overrides the project's (``--master-secret-file``); ``release``
    refuses the development default; ``kept`` (batches) are a device's earlier key files
    by name, reused for source ``generate``."""

    def __init__(self, resolved: ResolvedProject, *, env: Mapping[str, str] | None = None,
                 keystore: Path | None = None, rng: Callable[[int], bytes] = secrets.token_bytes,
                 release: bool = False, master_secret: MasterSecret | None = None) -> None:
        self.resolved = resolved
        self.env = os.environ if env is None else env
        self.keystore, self.rng, self.release = keystore, rng, release
        self.master = master_secret
        self.new_keystore_files: dict[Path, bytes] = {}
        self.notes: list[str] = []
        self.random = False
        self._cache: dict[tuple[str, str | None], bytes] = {}

    def master_secret(self, key: KeyPlan) -> MasterSecret:
        """The master secret ``key`` derives from (read once)."""
        if self.master is None:
            if key.master_secret is None:
                raise KeyMaterialError("keys source 'derive' needs a master secret",
                                       file=key.where,
                                       hint="add master_secret: {env: NAME} to nvs_secure.yaml, "
                                            "or pass --master-secret-file")
            self.master = read_master_secret(key.master_secret, env=self.env,
                                             base_dir=self.resolved.project.root,
                                             release=self.release)
            if self.master.development:
                self.notes.append("keys derived from the project's development default "
                                  "master secret: not for production devices")
        return self.master

    def material(self, key: KeyPlan, *, device_id: str | None = None,
                 kept: Mapping[str, bytes] | None = None) -> bytes:
        """The bytes of ``key``'s file: an nvs_keys image, or a 32-byte HMAC key."""
        cache_key = (key.name, device_id)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._make(key, device_id, kept or {})
        return self._cache[cache_key]

    def nvs_keys(self, key: KeyPlan, *, device_id: str | None = None,
                 kept: Mapping[str, bytes] | None = None) -> NvsKeys:
        """The XTS keys ``key`` encrypts NVS images with."""
        raw = self.material(key, device_id=device_id, kept=kept)
        if key.kind == OutputKind.HMAC_KEY:
            return derive_nvs_keys_from_hmac(raw)
        return parse_nvs_keys(raw)

    def _make(self, key: KeyPlan, device_id: str | None, kept: Mapping[str, bytes]) -> bytes:
        hmac = key.kind == OutputKind.HMAC_KEY
        label = self.resolved.product_label
        if key.source == KeySource.FILE:
            raw = read_input_bytes(key.file)
            if hmac:
                if len(raw) != HMAC_KEY_SIZE:
                    raise KeyMaterialError(f"the HMAC scheme needs a {HMAC_KEY_SIZE}-byte HMAC "
                                           f"key file, this one has {len(raw)} bytes",
                                           file=str(key.file))
                return raw
            try:
                return build_nvs_keys(parse_nvs_keys(raw))
            except NvsSecureError as exc:
                raise exc.located(str(key.file)) from None
        if key.source == KeySource.DERIVE:
            return key_material(key, master=self.master_secret(key), product=label,
                                device_id=device_id)
        if key.source != KeySource.GENERATE:
            raise KeyMaterialError(f"{key.name}: keys made on the chip have no host copy")
        if key.name in kept or self.keystore is None or device_id is not None:
            self.random = self.random or key.name not in kept
            return key_material(key, master=None, product=label, rng=self.rng, kept=kept)
        path = keystore_path(self.keystore, label, key)
        if path in self.new_keystore_files:
            return self.new_keystore_files[path]
        if path.exists():
            return read_input_bytes(path)
        data = self.new_keystore_files[path] = key_material(key, master=None, product=label,
                                                            rng=self.rng)
        self.notes.append(f"generated new key material {path} (keep it: it cannot be remade)")
        return data

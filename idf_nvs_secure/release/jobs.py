"""What a manufacturing batch builds for every device: one job per NVS partition."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from ..build.flasher import FlashSettings, flash_settings
from ..build.keys import KeyResolver
from ..errors import KeyMaterialError, NvsSecureError
from ..formats.nvs_image import NvsEntry
from ..formats.nvs_keys import key_fingerprint
from ..fsutil import read_input_text
from ..inputs.yamlsource import load_yaml
from ..plan.outputs import KeyPlan, plan_outputs
from ..words import FlashEncryptionMode, KeySource, OutputKind

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs.keysource import MasterSecret
    from ..inputs.project import ResolvedProject
    from ..plan.security import SecurityPlan

__all__ = ["PartitionJob", "BatchPlan", "plan_batch"]


@dataclass(frozen=True)
class PartitionJob:
    """One NVS partition every device gets: its base values, and the key plan that
    encrypts it (from the output plan; None: plain).

    ``keys_encrypted``: the keys file is written through flash encryption at flashing
    time (development mode: ``esptool write-flash --encrypt-files``)."""

    name: str
    offset: int
    size: int
    version: int
    entries: tuple[NvsEntry, ...]
    from_file: frozenset[tuple[str, str]]
    keys: KeyPlan | None = None
    keys_encrypted: bool = False
    image: bool = True  # False: keys only (the partition has no values file)

    @property
    def key_source(self) -> KeySource | None:
        return self.keys.source if self.keys else None


@dataclass(frozen=True)
class BatchPlan:
    """What a batch builds for every device (``master``: the derivation secret)."""

    product: str
    jobs: tuple[PartitionJob, ...]
    master: bytes | None = field(default=None, repr=False)
    #: How esptool writes a device (each device's flash_args and flasher_args.json).
    flash: FlashSettings | None = None

    @property
    def master_fingerprint(self) -> str | None:
        return key_fingerprint(self.master) if self.master is not None else None

    def job(self, name: str) -> PartitionJob | None:
        return next((j for j in self.jobs if j.name == name), None)


def _file_valued(paths: Sequence[Path]) -> frozenset[tuple[str, str]]:
    """(namespace, key) pairs whose value the values files (base, then overlays) take
    from a file (``file:``)."""
    keys: set[tuple[str, str]] = set()
    for path in paths:
        doc = load_yaml(read_input_text(path), str(path))
        for ns, items in (doc.data or {}).items():
            if items is None:
                keys = {k for k in keys if k[0] != ns}
                continue
            for key, spec in items.items():
                if isinstance(spec, dict) and "file" in spec:
                    keys.add((ns, key))
                else:
                    keys.discard((ns, key))
    return frozenset(keys)


def plan_batch(resolved: ResolvedProject, plan: SecurityPlan, *,
               master_secret: MasterSecret | None = None,
               env: Mapping[str, str] | None = None) -> BatchPlan:
    """The per-device work for ``resolved`` under ``plan``: its output plan, per device.

    ``master_secret`` (``--master-secret-file``) overrides the project's and makes every
    host key derived from it.  Otherwise key files are refused (every device would share
    one key), and so is the development default master secret."""
    env = os.environ if env is None else env
    if not plan.ok:
        raise NvsSecureError(f"the security plan has {len(plan.errors)} error(s): "
                             f"{plan.errors[0].message}",
                             hint="run 'idf-nvs-secure detect' for all")
    outputs = plan_outputs(plan, resolved)
    keys: dict[str, KeyPlan] = {}
    for key in outputs.keys:
        if master_secret is not None:
            key = replace(key, source=KeySource.DERIVE)
        if key.source == KeySource.FILE:
            raise KeyMaterialError(
                f"the keys of {key.name} come from a key file: every device of the batch "
                f"would share them", file=key.where,
                hint="per-device keys need keys: {source: derive} (a master secret) or "
                     "{source: generate}; or pass --master-secret-file")
        keys[key.name] = key
    master = master_secret
    if master is None and any(k.source == KeySource.DERIVE for k in keys.values()):
        resolver = KeyResolver(resolved, env=env, release=True)
        master = resolver.master_secret(next(k for k in keys.values()
                                             if k.source == KeySource.DERIVE))
    development = plan.flash_encryption_mode == FlashEncryptionMode.DEVELOPMENT
    jobs = []
    for name, values in resolved.values.items():
        image = outputs.find(OutputKind.NVS_IMAGE, name)
        key = keys.get(image.keys) if image is not None and image.keys else None
        if image is None:  # keys only: an encrypted partition without values
            key = next((k for k in keys.values() if k.context ==
                        (resolved.nvs_keys_pairs.get(name) or plan.keys_partition)), None)
            if key is None:
                continue
        part = resolved.table.find(name)
        jobs.append(PartitionJob(name, part.offset, part.size,
                                 resolved.format_versions.get(name, 2), tuple(values.entries),
                                 _file_valued(values.files), key,
                                 bool(key and key.flash_encrypted and development),
                                 image=image is not None))
    settings = flash_settings(plan.target, plan.symbols, flash_size=plan.flash_size,
                              secure=plan.flash_encryption or
                              bool(plan.symbols.get("SECURE_BOOT")))
    return BatchPlan(resolved.product_label, tuple(jobs),
                     master.material if master is not None else None, settings)

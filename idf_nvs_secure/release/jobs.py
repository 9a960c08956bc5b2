"""What a manufacturing batch builds for every device: one job per NVS partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.nvs_image import NvsEntry
from ..formats.nvs_keys import key_fingerprint
from ..plan.outputs import KeyPlan
from ..words import KeySource

__all__ = ["PartitionJob", "BatchPlan"]


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

    @property
    def keys_context(self) -> str | None:
        return self.keys.context if self.keys else None


@dataclass(frozen=True)
class BatchPlan:
    """What a batch builds for every device (``master``: the derivation secret)."""

    product: str
    jobs: tuple[PartitionJob, ...]
    master: bytes | None = field(default=None, repr=False)

    @property
    def master_fingerprint(self) -> str | None:
        return key_fingerprint(self.master) if self.master is not None else None

    def job(self, name: str) -> PartitionJob | None:
        return next((j for j in self.jobs if j.name == name), None)

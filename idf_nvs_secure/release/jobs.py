"""What a manufacturing batch builds for every device: one job per NVS partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.nvs_image import NvsEntry
from ..formats.nvs_keys import key_fingerprint

__all__ = ["PartitionJob", "BatchPlan"]


@dataclass(frozen=True)
class PartitionJob:
    """One NVS partition every device gets: its base values and how it is keyed.

    ``key_mode``: ``"nvs_keys"`` (an nvs_keys image, flash-encryption or app scheme),
    ``"hmac"`` (an eFuse HMAC key) or None (plain).  ``key_source``: ``"derive"`` or
    ``"generate"``.  ``keys_context``: the keys partition named in derivation and in the
    key file's name; ``keys_encrypted``: the nvs_keys image is written through flash
    encryption (development mode: ``esptool write-flash --encrypt-files``)."""

    name: str
    offset: int
    size: int
    version: int
    entries: tuple[NvsEntry, ...]
    from_file: frozenset[tuple[str, str]]
    key_mode: str | None = None
    key_source: str | None = None
    keys_context: str | None = None
    keys_offset: int | None = None
    keys_encrypted: bool = False


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

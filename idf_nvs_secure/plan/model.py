"""The data of a security plan: what sdkconfig and the project file mean for NVS.

Frozen records only; :mod:`.security` computes them and :mod:`.checks` finds what is
wrong with them.  The domain's words are enums (:mod:`..words`), whose values are the
strings that JSON outputs and earlier manifests carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..formats.partition_table import PartitionTable
from ..words import FlashEncryptionMode, KeyProtection, KeyProvider, Severity

__all__ = ["SEVERITIES", "Diagnostic", "PlanIntent", "TableSource", "NvsPartitionPlan",
           "SecurityPlan"]

#: Diagnostic severities, most severe first.
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Diagnostic:
    """One finding: ``severity`` is ``error``, ``warning`` or ``info``; ``code`` is a
    stable kebab-case id; ``message`` says what is wrong and how to fix it; ``file``
    and ``line`` point at the setting when it is known."""

    severity: Severity
    code: str
    message: str
    file: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))

    @property
    def located(self) -> str:
        """``file:line: message`` (``file: message``, or the message alone when the
        location is unknown), as error lines show it."""
        if not self.file:
            return self.message
        return f"{self.file}:{self.line}: {self.message}" if self.line else \
            f"{self.file}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.file is not None:
            out["file"] = self.file
            if self.line is not None:
                out["line"] = self.line
        return out


@dataclass(frozen=True)
class PlanIntent:
    """What the project file (``nvs_secure.yaml``) adds to sdkconfig's facts.

    ``values_files``: NVS partition name -> values file the host turns into an image.
    ``host_keys``: the host provides the keys (an nvs_keys image, or the HMAC key it
    burns into eFuse); False means the chip generates them on first boot.
    ``generated_csv``: the partition CSV the plugin generates from partitions.yaml
    (relative to the project directory); ``generated_table`` its table, when known.
    ``secure_partitions``: NVS partitions besides ``nvs`` that the application opens
    with ``nvs_flash_secure_init_partition()``.
    ``nvs_keys_pre_encrypted``: the host encrypts the nvs_keys image with the device's
    flash-encryption key before flashing it.
    """

    values_files: Mapping[str, str] = field(default_factory=dict)
    host_keys: bool = False
    generated_csv: str | None = None
    generated_table: PartitionTable | None = None
    secure_partitions: frozenset[str] = frozenset()
    nvs_keys_pre_encrypted: bool = False
    #: Where the user writes the generated table (partitions.yaml), for diagnostics.
    table_source: "TableSource | None" = None


@dataclass(frozen=True)
class TableSource:
    """The file a user edits to change the partition table, so that diagnostics name it
    (never a generated CSV) and say what to write there in its own syntax.

    ``file``: its path as messages show it; ``yaml``: partitions.yaml (else an ESP-IDF
    partitions CSV); ``rows``: partition name -> (file, line) of the entry that made the
    partition (a product's change names its line in nvs_secure.yaml); ``removed``:
    (name, type, subtype) of each partition a product removes -> (file, line) of the
    line that removes it.
    """

    file: str
    yaml: bool = False
    rows: Mapping[str, tuple[str | None, int | None]] = field(default_factory=dict)
    removed: Mapping[tuple[str, int, int], tuple[str | None, int | None]] = \
        field(default_factory=dict)

    def at(self, name: str) -> tuple[str | None, int | None]:
        """(file, line) of partition ``name``'s entry; the file alone when unknown."""
        return self.rows.get(name, (self.file, None))


@dataclass(frozen=True)
class NvsPartitionPlan:
    """One NVS partition: where it is, whether it is written encrypted, and where its
    keys come from (see the module docstring).  Offsets and sizes are in bytes."""

    name: str
    offset: int
    size: int
    encrypted: bool
    key_source: KeyProvider | None
    values_file: str | None = None
    #: The partition table's ``encrypted`` flag (which NVS must not have).
    flagged_encrypted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "offset": self.offset, "size": self.size,
                "encrypted": self.encrypted, "key_source": self.key_source,
                "values_file": self.values_file, "flagged_encrypted": self.flagged_encrypted}


@dataclass(frozen=True)
class SecurityPlan:
    """How NVS is protected in one ESP-IDF project, resolved from its sdkconfig.

    ``scheme`` is ``"flash_enc"``, ``"hmac"``, ``"none"`` or None when NVS encryption is
    off.  ``flash_encryption_mode`` is ``"development"``/``"release"`` or None.
    ``flash_encryption_key`` is ``"aes-256"`` (ESP32), ``"xts-aes-128"``,
    ``"xts-aes-128-derived"``, ``"xts-aes-256"`` or None.  ``partition_table`` is
    ``{"file": ..., "offset": ...}`` where ``file`` is the CSV as sdkconfig names it, or
    ``"builtin:<csv name>"`` for ESP-IDF's built-in tables, or None when unknown.
    ``table`` is the parsed table (None when it cannot be read yet).  ``symbols`` maps
    every symbol of the Kconfig model to its resolved value (see
    :class:`~.sdkconfig.ResolvedConfig`).  ``config`` records where the values came from.
    """

    target: str
    nvs_encryption: bool
    scheme: KeyProtection | None
    hmac_efuse_key_id: int | None
    flash_encryption: bool
    flash_encryption_mode: FlashEncryptionMode | None
    flash_encryption_key: str | None
    partition_table: Mapping[str, Any]
    flash_size: str | None
    table: PartitionTable | None
    nvs_partitions: tuple[NvsPartitionPlan, ...]
    keys_partition: str | None
    diagnostics: tuple[Diagnostic, ...]
    notes: tuple[str, ...]
    symbols: Mapping[str, Any]
    config: Mapping[str, Any]
    #: The firmware's ESP-IDF (``"v6.0.2"``) and where that came from; None: unknown.
    idf_version: str | None = None
    idf_version_source: str | None = None
    #: False when NVS encryption is on but the build has no nvs_sec_provider (no
    #: CONFIG_NVS_SEC_* in an ESP-IDF-written sdkconfig, v5.2 to v5.5): no scheme.
    nvs_sec_provider: bool = True

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The error diagnostics (a check fails when there is any)."""
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def ok(self) -> bool:
        """True when no diagnostic is an error."""
        return not self.errors

    def nvs_partition(self, name: str) -> NvsPartitionPlan | None:
        """The plan for NVS partition ``name``, or None."""
        return next((p for p in self.nvs_partitions if p.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready data (deterministic; offsets are integers)."""
        return {
            "target": self.target,
            "idf_version": self.idf_version,
            "idf_version_source": self.idf_version_source,
            "nvs_encryption": self.nvs_encryption,
            "nvs_sec_provider": self.nvs_sec_provider,
            "scheme": self.scheme,
            "hmac_efuse_key_id": self.hmac_efuse_key_id,
            "flash_encryption": self.flash_encryption,
            "flash_encryption_mode": self.flash_encryption_mode,
            "flash_encryption_key": self.flash_encryption_key,
            "partition_table": dict(self.partition_table),
            "flash_size": self.flash_size,
            "keys_partition": self.keys_partition,
            "nvs_partitions": [p.to_json() for p in self.nvs_partitions],
            "diagnostics": [d.to_json() for d in self.diagnostics],
            "notes": list(self.notes),
            "config": {key: list(val) if isinstance(val, tuple) else val
                       for key, val in self.config.items()},
            "symbols": dict(self.symbols),
        }



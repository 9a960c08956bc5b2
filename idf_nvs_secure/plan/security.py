"""The NVS security plan: what a project's sdkconfig means for NVS, and what is broken.

:func:`detect_plan` reads a project's configuration (:mod:`.sdkconfig`) and partition
table, and returns a :class:`SecurityPlan`: the single source every later step uses
(nothing else in the package re-reads sdkconfig).  The plan says which NVS partitions
are written encrypted, where their keys come from, which artifacts the build must
produce, and carries :class:`Diagnostic` entries for set-ups that would fail on the
device, each with the fix in its message.

Key sources of an NVS partition (``NvsPartitionPlan.key_source``):

* ``"nvs_keys_host"``: flash-encryption scheme; the host writes the nvs_keys partition.
* ``"nvs_keys_chip"``: flash-encryption scheme; nvs_keys stays erased and
  ``nvs_flash_generate_keys()`` fills it on first boot (ESP-IDF's automatic method).
* ``"hmac"``: HMAC scheme; the chip derives the keys from the HMAC key in eFuse.
* ``"app"``: scheme "none"; the application passes its own keys to
  ``nvs_flash_secure_init()``.
* None: the partition is plain text.

``nvs_flash_init()`` only opens the default partition ``nvs`` encrypted; another NVS
partition is encrypted only when the application opens it with
``nvs_flash_secure_init_partition()``, which :attr:`PlanIntent.secure_partitions` says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..config.chips import Chip, get_chip
from ..config.sdkconfig import ResolvedConfig, read_config
from ..errors import InputError, NvsSecureError
from ..formats.partition_table import (
    DATA_TYPE,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    PartitionTable,
    parse_flash_size,
)
from ..fsutil import display_path, read_input_text
from ..inputs.partition_csv import parse_partition_csv_specs, place_partitions
from ..words import FlashEncryptionMode, KeyProtection, KeyProvider
from ..config.idf_versions import parse_idf_version
from .checks import check_plan
from .firmware import firmware_diagnostics, nvs_sec_provider_missing, with_idf_version
from .model import (
    SEVERITIES,
    Diagnostic,
    NvsPartitionPlan,
    PlanIntent,
    SecurityPlan,
    TableSource,
)

__all__ = [
    "Diagnostic",
    "PlanIntent",
    "NvsPartitionPlan",
    "SecurityPlan",
    "DEFAULT_NVS_PARTITION",
    "NVS_KEYS_MIN_SIZE",
    "BUILTIN_PREFIX",
    "detect_plan",
    "plan_from_config",
]

#: ``NVS_DEFAULT_PART_NAME`` (nvs_flash/include/nvs.h): what ``nvs_flash_init()`` opens.
DEFAULT_NVS_PARTITION = "nvs"
#: One flash sector: the nvs_keys partition holds two 32-byte XTS keys and a CRC.
NVS_KEYS_MIN_SIZE = 0x1000
#: ``partition_table["file"]`` for ESP-IDF's built-in tables: ``builtin:<csv name>``.
BUILTIN_PREFIX = "builtin:"

# --- reading the partition table -----------------------------------------------------


@dataclass(frozen=True)
class _TableInfo:
    file: str | None
    offset: int
    table: PartitionTable | None
    diagnostics: tuple[Diagnostic, ...] = ()
    notes: tuple[str, ...] = ()
    source: TableSource | None = None


def _builtin_csv_text(name: str) -> str | None:
    item = resources.files("idf_nvs_secure").joinpath(f"data/builtin_tables/{name}")
    return item.read_text(encoding="utf-8") if item.is_file() else None


def _parse_table(text: str, filename: str, offset: int, flash_bytes: int | None,
                 env: Mapping[str, str], *, shown: str | None = None
                 ) -> tuple[PartitionTable | None, tuple[Diagnostic, ...], TableSource | None]:
    """The placed table of a partitions CSV, or the diagnostic why not; and, with
    ``shown`` (the user's own CSV as messages name it), its rows as a TableSource."""
    try:
        specs = parse_partition_csv_specs(text, filename=filename, variables=env)
        source = None if shown is None else TableSource(
            shown, rows={s.name: (shown, s.line) for s in specs})
        return place_partitions(specs, table_offset=offset, flash_size=flash_bytes), (), source
    except NvsSecureError as exc:
        fix = f"; {exc.hint}" if exc.hint else ""
        return None, (Diagnostic("error", "partition-table-invalid",
                                 f"not a usable partition table: {exc.message}{fix}",
                                 exc.file or filename, exc.line),), None


def _read_table(config: ResolvedConfig, project_dir: Path, intent: PlanIntent,
                env: Mapping[str, str]) -> _TableInfo:
    """Locate and parse the partition table sdkconfig selects (this reads files)."""
    v = config.values
    offset = v.get("PARTITION_TABLE_OFFSET") or 0x8000
    size_text = v.get("ESPTOOLPY_FLASHSIZE")
    try:
        flash_bytes = parse_flash_size(size_text) if size_text else None
    except InputError:
        flash_bytes = None
    generated = (project_dir / intent.generated_csv) if intent.generated_csv else None
    diags: list[Diagnostic] = []
    req = config.requested

    if not v.get("PARTITION_TABLE_CUSTOM"):
        name = v.get("PARTITION_TABLE_FILENAME") or ""
        where = next((a for k, a in req.items()
                      if k.startswith("PARTITION_TABLE_") and a.value == "y" and v.get(k) is True), None)
        if generated is not None:
            diags.append(Diagnostic(
                "error", "partition-table-not-generated",
                f"sdkconfig selects ESP-IDF's built-in partition table {name or '(none)'}, but "
                f"the plugin generates {intent.generated_csv} from partitions.yaml; set "
                f'CONFIG_PARTITION_TABLE_CUSTOM=y and CONFIG_PARTITION_TABLE_CUSTOM_FILENAME='
                f'"{intent.generated_csv}"', where.file if where else None, where.line if where else None))
        text = _builtin_csv_text(name) if name else None
        if text is None:
            diags.append(Diagnostic(
                "error", "builtin-table-unknown",
                f"no ESP-IDF built-in partition table matches this configuration "
                f"(PARTITION_TABLE_FILENAME={name!r}); choose another built-in table or a "
                "custom CSV (CONFIG_PARTITION_TABLE_CUSTOM=y)"))
            return _TableInfo(None, offset, None, tuple(diags))
        table, bad, _ = _parse_table(text, f"{BUILTIN_PREFIX}{name}", offset, flash_bytes, env)
        return _TableInfo(f"{BUILTIN_PREFIX}{name}", offset, table, tuple(diags) + bad)

    name = v.get("PARTITION_TABLE_CUSTOM_FILENAME") or "partitions.csv"
    path = Path(name) if os.path.isabs(name) else project_dir / name
    where = req.get("PARTITION_TABLE_CUSTOM_FILENAME") or req.get("PARTITION_TABLE_CUSTOM")
    loc = (where.file, where.line) if where else (None, None)
    is_generated = generated is not None and path.resolve() == generated.resolve()
    if generated is not None and not is_generated:
        diags.append(Diagnostic(
            "error", "partition-table-not-generated",
            f"sdkconfig names the partition table {name}, but the plugin generates "
            f"{intent.generated_csv} from partitions.yaml; set "
            f'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="{intent.generated_csv}"', *loc))
    if is_generated and intent.generated_table is not None:
        return _TableInfo(name, offset, intent.generated_table, tuple(diags),
                          source=intent.table_source)
    if not path.is_file():
        if is_generated:
            return _TableInfo(name, offset, None, tuple(diags),
                              (f"{name} does not exist yet (it is generated from partitions.yaml); "
                               "partition checks wait for it",))
        diags.append(Diagnostic(
            "error", "partition-table-missing",
            f"the partition table {name} named by CONFIG_PARTITION_TABLE_CUSTOM_FILENAME does "
            f"not exist (looked in {path}); create it, or fix the name (it is relative to the "
            "project directory)", *loc))
        return _TableInfo(name, offset, None, tuple(diags))
    table, bad, source = _parse_table(read_input_text(path), name, offset, flash_bytes, env,
                                      shown=display_path(path))
    if is_generated:  # a stale generated CSV: the user edits partitions.yaml
        source = intent.table_source
    return _TableInfo(name, offset, table, tuple(diags) + bad, source=source)


# --- building the plan ---------------------------------------------------------------


def _scheme(v: Mapping[str, Any]) -> KeyProtection | None:
    if not v.get("NVS_ENCRYPTION"):
        return None
    if v.get("NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"):
        return KeyProtection.FLASH_ENC
    if v.get("NVS_SEC_KEY_PROTECT_USING_HMAC"):
        return KeyProtection.HMAC
    return KeyProtection.NONE


def _flash_encryption_key(chip: Chip, v: Mapping[str, Any]) -> str | None:
    if not v.get("SECURE_FLASH_ENC_ENABLED"):
        return None
    if not chip.xts_aes:
        return "aes-256"
    if v.get("SECURE_FLASH_ENCRYPTION_AES256"):
        return "xts-aes-256"
    if v.get("SECURE_FLASH_ENCRYPTION_AES128_DERIVED"):
        return "xts-aes-128-derived"
    return "xts-aes-128"


def _key_source(scheme: KeyProtection | None, intent: PlanIntent) -> KeyProvider | None:
    if scheme is None:
        return None
    return {KeyProtection.FLASH_ENC: KeyProvider.HOST_NVS_KEYS if intent.host_keys
            else KeyProvider.CHIP_NVS_KEYS,
            KeyProtection.HMAC: KeyProvider.HMAC,
            KeyProtection.NONE: KeyProvider.APPLICATION}[scheme]


def plan_from_config(config: ResolvedConfig, project_dir: Path, *,
                     intent: PlanIntent | None = None,
                     env: Mapping[str, str] | None = None) -> SecurityPlan:
    """The plan for a resolved configuration (reads the partition CSV it names)."""
    intent = intent or PlanIntent()
    env = os.environ if env is None else env
    project_dir = Path(project_dir)
    v = config.values
    chip = get_chip(config.target)
    flash_encryption = bool(v.get("SECURE_FLASH_ENC_ENABLED")) and not chip.host
    mode = None
    if flash_encryption:
        mode = (FlashEncryptionMode.RELEASE if v.get("SECURE_FLASH_ENCRYPTION_MODE_RELEASE")
                else FlashEncryptionMode.DEVELOPMENT)
    version = parse_idf_version(config.idf_version) if config.idf_version else None
    provider = not nvs_sec_provider_missing(config, version)
    # Without nvs_sec_provider no scheme is registered: nvs_flash_init() has no keys.
    scheme = None if chip.host else (_scheme(v) if provider else KeyProtection.NONE)
    nvs_encryption = scheme is not None
    key_id = v.get("NVS_SEC_HMAC_EFUSE_KEY_ID") if scheme == "hmac" else None

    info = _read_table(config, project_dir, intent, env)
    table = info.table
    keys_part = None
    parts: list[NvsPartitionPlan] = []
    if table is not None:
        keys = table.of_type(DATA_TYPE, NVS_KEYS_SUBTYPE)
        keys_part = keys[0] if keys and scheme == "flash_enc" else None
        for part in table.of_type(DATA_TYPE, NVS_SUBTYPE):
            secure = nvs_encryption and (part.name == DEFAULT_NVS_PARTITION
                                         or part.name in intent.secure_partitions)
            parts.append(NvsPartitionPlan(
                part.name, part.offset, part.size, secure,
                _key_source(scheme, intent) if secure else None,
                intent.values_files.get(part.name), part.encrypted))
    nvs_parts = tuple(parts)

    plan = SecurityPlan(
        target=config.target,
        nvs_encryption=nvs_encryption,
        scheme=scheme,
        hmac_efuse_key_id=key_id,
        flash_encryption=flash_encryption,
        flash_encryption_mode=mode,
        flash_encryption_key=_flash_encryption_key(chip, v) if flash_encryption else None,
        partition_table=MappingProxyType({"file": info.file, "offset": info.offset}),
        flash_size=v.get("ESPTOOLPY_FLASHSIZE"),
        table=table,
        nvs_partitions=nvs_parts,
        keys_partition=keys_part.name if keys_part is not None else None,
        diagnostics=(),
        notes=tuple(config.notes) + info.notes,
        symbols=MappingProxyType(dict(v)),
        config=MappingProxyType({"kind": config.kind, "files": tuple(config.loaded),
                                 "model": config.model, "target_source": config.target_source}),
        idf_version=config.idf_version, idf_version_source=config.idf_version_source,
        nvs_sec_provider=provider,
    )
    diagnostics = (info.diagnostics + check_plan(plan, config, chip, intent, info.source)
                   + tuple(firmware_diagnostics(plan, config)))
    order = {sev: i for i, sev in enumerate(SEVERITIES)}
    diagnostics = tuple(sorted(diagnostics, key=lambda d: order[d.severity]))
    return replace(plan, diagnostics=diagnostics)


def detect_plan(project_dir: Path, *, sdkconfig: Path | None = None,
                env: Mapping[str, str] | None = None, intent: PlanIntent | None = None,
                build_dir: Path | None = None, idf_version: str | None = None) -> SecurityPlan:
    """Read ``project_dir``'s configuration and partition table into a plan.

    ``sdkconfig`` overrides which file is read; ``env`` (default ``os.environ``) supplies
    ``IDF_TARGET``, ``SDKCONFIG_DEFAULTS`` and ``IDF_PATH``; ``intent`` carries what the
    project file adds; ``build_dir`` (default ``<project>/build``) is where a resolved
    ``config/sdkconfig.json`` is looked for.  Raises :class:`~.errors.InputError` for a
    missing project directory or unreadable configuration; problems of the set-up
    itself are diagnostics in the plan.
    """
    env = os.environ if env is None else env
    given = str(parse_idf_version(idf_version)) if idf_version is not None else None
    config = read_config(Path(project_dir), sdkconfig=sdkconfig, env=env, build_dir=build_dir,
                         idf_version=given)
    config = with_idf_version(config, idf_version, source="--idf-version")
    return plan_from_config(config, Path(project_dir), intent=intent, env=env)

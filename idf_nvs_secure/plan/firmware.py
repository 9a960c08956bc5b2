"""What the firmware's ESP-IDF can read, checked against the plan and the values.

The version is a fact of the plan (:attr:`ResolvedConfig.idf_version`): found from
``IDF_PATH`` or sdkconfig's header by :mod:`..config.sdkconfig`, or given by the user
(``--idf-version``, ``idf_version:`` in nvs_secure.yaml), which wins.  Each check names
the row of :data:`..config.idf_versions.IDF_FEATURES` it rests on.

* A value the firmware cannot read (float/double before v6.1) is a user error at its
  ``file:line:col``; with the version unknown it is a warning, never silence.
* float/double in a format version 1 image is an error whatever the version: version 1
  is for firmware before v3.2, which has no such types.
* Plan diagnostics (:func:`firmware_diagnostics`): the HMAC scheme or read-only NVS
  partitions on a firmware that predates them; nvs_sec_provider left out of a v5.2-v5.x
  build (``MINIMAL_BUILD``) while NVS encryption is on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from dataclasses import replace

from ..config.idf_versions import (
    FLOAT_TYPES,
    HMAC_SCHEME,
    MULTIPAGE_BLOBS,
    NVS_ENCRYPTION,
    NVS_SEC_PROVIDER_ALWAYS,
    READONLY_PARTITIONS,
    SMALL_READONLY_NVS,
    IdfVersion,
    parse_idf_version,
)
from ..errors import InputError
from ..formats.nvs_layout import NvsEntry
from ..formats.partition_table import DATA_TYPE, NVS_SUBTYPE
from .model import Diagnostic, SecurityPlan

if TYPE_CHECKING:  # pragma: no cover
    # Annotations only: `nvs build` checks values against the firmware without loading
    # the Kconfig machinery.
    from ..config.sdkconfig import ResolvedConfig

__all__ = ["with_idf_version", "plan_idf_version", "check_entries_for_firmware",
           "firmware_diagnostics", "nvs_sec_provider_missing", "FLOAT_TYPE_NAMES", "SMALL_READONLY_LIMIT"]

#: The NVS value types :data:`FLOAT_TYPES` brought.
FLOAT_TYPE_NAMES = ("float", "double")
#: Below this size an NVS partition must be read-only, and needs :data:`SMALL_READONLY_NVS`.
SMALL_READONLY_LIMIT = 0x3000


def with_idf_version(config: ResolvedConfig, given: str | None, *, source: str,
                     file: str | None = None, line: int | None = None) -> ResolvedConfig:
    """``config`` with the user's ``given`` version (when not None) in place of the one
    found; a note says when they disagree.  Raises :class:`InputError` (at ``file``/
    ``line``) for text that is not a version."""
    if given is None:
        return config
    version = parse_idf_version(given, file=file, line=line)
    notes = list(config.notes)
    if config.idf_version and parse_idf_version(config.idf_version).key != version.key:
        notes.append(f"{source} says ESP-IDF {version}; {config.idf_version_source} says "
                     f"{config.idf_version}; used {version}")
    return replace(config, idf_version=str(version), idf_version_source=source, notes=tuple(notes))


def plan_idf_version(plan: SecurityPlan) -> IdfVersion | None:
    return parse_idf_version(plan.idf_version) if plan.idf_version else None


def check_entries_for_firmware(entries: Mapping[str, list[NvsEntry]], *,
                               version: str | None,
                               format_versions: Mapping[str, int] | None = None) -> list[Diagnostic]:
    """Refuse values the firmware cannot read; warn when its version is unknown.

    ``entries`` maps NVS partition name to its entries.  Raises :class:`InputError` at
    the first unreadable value (its ``file:line:col``); returns one warning per float/
    double value when ``version`` is None."""
    known = parse_idf_version(version) if version else None
    format_versions = format_versions or {}
    warnings: list[Diagnostic] = []
    for part, items in entries.items():
        fmt = format_versions.get(part, 2)
        if known is not None and fmt == 2 and not MULTIPAGE_BLOBS.available_in(known):
            raise InputError(f"ESP-IDF {known} cannot read format version 2 NVS pages (added "
                             f"in {MULTIPAGE_BLOBS.since_text}); use format_version: 1 for "
                             f"partition {part}")
        for entry in items:
            if entry.type not in FLOAT_TYPE_NAMES:
                continue
            where = dict(file=entry.file, line=entry.line, col=entry.col)
            if fmt == 1:
                raise InputError(f"{entry.type} value {entry.namespace}.{entry.key} cannot be "
                                 f"written in format version 1 (firmware before ESP-IDF "
                                 f"{MULTIPAGE_BLOBS.since_text}); {entry.type} needs ESP-IDF "
                                 f"{FLOAT_TYPES.since_text}+ and format version 2", **where,
                                 hint="use a u32 or string, or format version 2")
            if known is not None and not FLOAT_TYPES.available_in(known):
                raise InputError(f"ESP-IDF {known} cannot read {entry.type} values (added in "
                                 f"{FLOAT_TYPES.since_text}); use a u32 or string, or build "
                                 f"with {FLOAT_TYPES.since_text}+", **where,
                                 hint=f"ESP-IDF {known} erases an entry of an unknown type "
                                      "when it meets it")
            if known is None:
                warnings.append(Diagnostic(
                    "warning", "firmware-version-unknown",
                    f"{entry.namespace}.{entry.key} is a {entry.type} value, which only "
                    f"firmware built with ESP-IDF {FLOAT_TYPES.since_text}+ reads (older "
                    f"firmware erases it); the ESP-IDF version is unknown: set IDF_PATH, or "
                    f"say it with --idf-version or idf_version: in nvs_secure.yaml",
                    entry.file, entry.line))
    return warnings


def _diag(severity: str, code: str, message: str) -> Diagnostic:
    return Diagnostic(severity, code, message)


def firmware_diagnostics(plan: SecurityPlan, config: ResolvedConfig) -> Iterator[Diagnostic]:
    """Plan findings that depend on the firmware's ESP-IDF version."""
    version = plan_idf_version(plan)
    if version is not None and plan.nvs_encryption and not NVS_ENCRYPTION.available_in(version):
        yield _diag("error", "firmware-lacks-nvs-encryption",
                    f"ESP-IDF {version} has no NVS encryption (added in "
                    f"{NVS_ENCRYPTION.since_text}); turn CONFIG_NVS_ENCRYPTION off")
    elif version is not None and plan.scheme == "hmac" and not HMAC_SCHEME.available_in(version):
        yield _diag("error", "firmware-lacks-hmac-scheme",
                    f"ESP-IDF {version} has no HMAC key protection scheme (added in "
                    f"{HMAC_SCHEME.since_text}): its NVS encryption needs an nvs_keys "
                    "partition under flash encryption")
    if version is not None and plan.table is not None:
        for part in plan.table.of_type(DATA_TYPE, NVS_SUBTYPE):
            if part.readonly and not READONLY_PARTITIONS.available_in(version):
                yield _diag("error", "firmware-lacks-readonly",
                            f"NVS partition {part.name} is read-only, which ESP-IDF {version} "
                            f"does not know (added in {READONLY_PARTITIONS.since_text}); "
                            "remove the readonly flag")
            elif (part.readonly and part.size < SMALL_READONLY_LIMIT
                  and not SMALL_READONLY_NVS.available_in(version)):
                yield _diag("error", "firmware-lacks-small-readonly-nvs",
                            f"NVS partition {part.name} is {part.size:#x} bytes; ESP-IDF "
                            f"{version} mounts read-only NVS partitions only from 0x3000 "
                            f"bytes (smaller ones from {SMALL_READONLY_NVS.since_text})")
    yield from _sec_provider(plan, config, version)


def nvs_sec_provider_missing(config: ResolvedConfig, version: IdfVersion | None) -> bool:
    """NVS encryption is on, but the build's Kconfig tree had no nvs_sec_provider.

    From v5.2 nvs_flash_init() takes its keys from the scheme nvs_sec_provider
    registers; up to v5.5 nvs_flash does not require that component, so a
    MINIMAL_BUILD (or COMPONENTS) that does not name it leaves it out: sdkconfig then
    has no CONFIG_NVS_SEC_* and nvs_flash_init() fails (ESP_ERR_INVALID_ARG from
    nvs_flash_read_security_cfg_v2() with no scheme).  From v6.0 nvs_flash requires it;
    before v5.2 there is no scheme (nvs_flash_init() reads nvs_keys itself).  Only an
    ESP-IDF-written configuration can tell (:attr:`ResolvedConfig.idf_symbols`)."""
    names = config.idf_symbols
    if names is None or config.target == "linux" or not config.values.get("NVS_ENCRYPTION"):
        return False
    if any(name.startswith("NVS_SEC_") for name in names):
        return False
    return version is None or (HMAC_SCHEME.available_in(version)
                               and not NVS_SEC_PROVIDER_ALWAYS.available_in(version))


def _sec_provider(plan: SecurityPlan, config: ResolvedConfig,
                  version: IdfVersion | None) -> Iterator[Diagnostic]:
    if plan.nvs_sec_provider:
        return
    yield _diag("error", "nvs-sec-provider-missing",
                "NVS encryption is on but nvs_sec_provider is not part of this build (the "
                "sdkconfig has no CONFIG_NVS_SEC_* symbols: ESP-IDF "
                f"{version or 'v5.2 to v5.5'} leaves it out of a MINIMAL_BUILD unless a "
                "component requires it), so nvs_flash_init() has no key protection scheme and "
                "fails; add nvs_sec_provider to main's PRIV_REQUIRES (ESP-IDF "
                f"{NVS_SEC_PROVIDER_ALWAYS.since_text}+ adds it itself)")

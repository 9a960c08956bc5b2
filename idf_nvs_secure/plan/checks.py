"""Diagnostics for a :class:`~.plan.SecurityPlan`: set-ups that fail on the device.

Each check is a small function over the plan, the resolved configuration, the chip
facts and the project's intent; each message says what is wrong and how to fix it.
Codes are stable kebab-case ids:

=========================================== ========= ==========================================
code                                        severity  when
=========================================== ========= ==========================================
target-mismatch                             error     sdkconfig's target != ``IDF_TARGET``
config-warning                              warning   a bad value or line for a model symbol
config-value-ignored                        warning   an assignment ESP-IDF would drop (deps)
linux-no-nvs-encryption                     warn/info the linux host target
nvs-encryption-unavailable                  error     NVS_ENCRYPTION=y without FE or HMAC
hmac-unsupported                            error     HMAC scheme on a chip without HMAC
flash-enc-scheme-without-flash-encryption   error     flash-encryption scheme, FE off
nvs-encryption-off                          info      NVS data stays plain text
scheme-none                                 warning   NVS encryption, scheme "none"
hmac-key-id-unset                           error     HMAC scheme, key id -1 (build #error)
hmac-key-on-chip                            info      HMAC key generated and burned on chip
nvs-keys-partition-missing                  error     flash-encryption scheme, no nvs_keys
nvs-keys-not-encrypted                      error     nvs_keys without the encrypted flag
nvs-keys-too-small                          error     nvs_keys smaller than 4 KB
nvs-keys-multiple                           info      several nvs_keys partitions
nvs-keys-unused                             info      nvs_keys present, another scheme
release-plaintext-nvs-keys                  warning   release mode, plain host nvs_keys
nvs-partition-encrypted-flag                err/w/i   an NVS partition flagged encrypted
default-nvs-partition-missing               warning   no ``nvs`` partition for nvs_flash_init
intent-partition-unknown                    error     the project file names no NVS partition
values-need-host-keys                       error     values file, keys the host never sees
plain-nvs-values                            info      values file for a plain partition
partition-table-missing                     error     (plan.py) custom CSV not found
partition-table-not-generated               error     (plan.py) sdkconfig names another table
partition-table-invalid                     error     (plan.py) the CSV does not parse/fit
builtin-table-unknown                       error     (plan.py) no built-in table matches
firmware-lacks-nvs-encryption               error     (firmware.py) ESP-IDF before v3.2
firmware-lacks-hmac-scheme                  error     (firmware.py) HMAC scheme before v5.2
firmware-lacks-readonly                     error     (firmware.py) read-only NVS before v5.2
firmware-lacks-small-readonly-nvs           error     (firmware.py) <0x3000 read-only before v5.5
nvs-sec-provider-missing                    error     (firmware.py) v5.2-v5.5 build without it
firmware-version-unknown                    warning   (firmware.py) float/double, version unknown
=========================================== ========= ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config.chips import Chip
from ..config.sdkconfig import Assignment, ResolvedConfig
from ..formats.partition_table import DATA_TYPE, NVS_KEYS_SUBTYPE, NVS_SUBTYPE
from .model import SEVERITIES, Diagnostic, PlanIntent, SecurityPlan, TableSource

__all__ = ["SEVERITIES", "Diagnostic", "check_plan"]

_DEFAULT_PART = "nvs"  # NVS_DEFAULT_PART_NAME
_KEYS_MIN_SIZE = 0x1000
_SPECIFIC = {"NVS_ENCRYPTION", "NVS_SEC_KEY_PROTECT_USING_HMAC", "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"}


@dataclass(frozen=True)
class _Ctx:
    plan: SecurityPlan
    config: ResolvedConfig
    chip: Chip
    intent: PlanIntent
    #: The file the user edits for the table (None: a built-in table).
    source: TableSource | None = None

    @property
    def table_file(self) -> str | None:
        """The user's own partition table file (never the generated CSV)."""
        return self.source.file if self.source is not None else self.plan.partition_table.get("file")

    def row(self, name: str) -> tuple[str | None, int | None]:
        """(file, line) of partition ``name``'s entry in the user's file."""
        return self.source.at(name) if self.source is not None else (None, None)

    def write(self, yaml: str, csv: str) -> str:
        """The fix in the syntax of the user's file: partitions.yaml or a CSV."""
        return yaml if self.source is not None and self.source.yaml else csv

    def asked(self, name: str, value: str = "y") -> Assignment | None:
        """The assignment of ``name`` when the files set it to ``value``.

        Selecting a choice member (``=y``) counts only while no other member of the same
        choice is selected after it: a later defaults file (``sdkconfig.defaults.<target>``)
        overrides an earlier one's choice, as ESP-IDF applies them in order.
        """
        requested = self.config.requested
        item = requested.get(name)
        if item is None or item.value != value:
            return None
        choice = self.config.choices.get(name)
        if choice and value == "y":
            order = list(requested)
            later = order[order.index(name) + 1:]
            if any(self.config.choices.get(other) == choice and requested[other].value == "y"
                   for other in later):
                return None
        return item


def _diag(severity: str, code: str, message: str,
          where: Assignment | tuple[str | None, int | None] | None = None) -> Diagnostic:
    if isinstance(where, tuple):
        return Diagnostic(severity, code, message, *where)
    return Diagnostic(severity, code, message, where.file if where else None,
                      where.line if where else None)


_Check = Callable[[_Ctx], Iterator[Diagnostic]]
_CHECKS: list[_Check] = []


def _check(fn: _Check) -> _Check:
    _CHECKS.append(fn)
    return fn


# --- configuration -------------------------------------------------------------------


@_check
def _target(c: _Ctx) -> Iterator[Diagnostic]:
    env = c.config.env_target
    if env:
        yield _diag("error", "target-mismatch",
                    f"the configuration was made for {c.config.target} ({c.config.target_source}) but "
                    f"IDF_TARGET={env} in the environment, and ESP-IDF refuses to build; run "
                    f"`idf.py set-target {env}` to switch, or unset IDF_TARGET")


@_check
def _config_warnings(c: _Ctx) -> Iterator[Diagnostic]:
    for w in c.config.warnings:
        fix = ("fix or remove the line" if "malformed line" in w.message
               else "fix the value (see `idf.py menuconfig`)")
        yield Diagnostic("warning", "config-warning", f"{w.message.rstrip('.')}; {fix}",
                         w.file, w.line)


def _normal(value: str, resolved: Any) -> Any:
    if isinstance(resolved, bool):
        return value.startswith("y")
    if isinstance(resolved, int):
        try:
            return int(value, 0) if value.lower().startswith(("0x", "-0x")) else int(value)
        except ValueError:
            try:
                return int(value, 16)
            except ValueError:
                return value
    return value


@_check
def _ignored_values(c: _Ctx) -> Iterator[Diagnostic]:
    cfg = c.config
    warned = {n for w in cfg.warnings for n in cfg.requested if n in w.message}
    order = list(cfg.requested)
    for index, (name, item) in enumerate(cfg.requested.items()):
        deps = cfg.dependencies.get(name)
        if deps is None or name in _SPECIFIC or name in warned:
            continue
        resolved = cfg.values.get(name)
        if item.value == "n" and not resolved:
            continue
        choice = cfg.choices.get(name)
        if choice is not None and any(cfg.choices.get(later) == choice and cfg.requested[later].value == "y"
                                      for later in order[index + 1:]):
            continue  # a later assignment picked another member of the same choice
        if resolved is not None and _normal(item.value, resolved) == resolved:
            continue
        shown = "unset" if resolved is None else ("y" if resolved is True else "n" if resolved is False
                                                  else resolved)
        yield _diag("warning", "config-value-ignored",
                    f"{item.text} has no effect: ESP-IDF resolves CONFIG_{name} to {shown} because its "
                    f"dependencies ({deps}) are not met; satisfy them or remove the line", item)


@_check
def _linux(c: _Ctx) -> Iterator[Diagnostic]:
    if not c.chip.host:
        return
    asked = c.asked("NVS_ENCRYPTION")
    yield _diag("warning" if asked else "info", "linux-no-nvs-encryption",
                "NVS encryption is not available for the linux host target (ESP-IDF builds NVS "
                "without it there): NVS data stays plain text"
                + ("; remove CONFIG_NVS_ENCRYPTION=y for this target" if asked else ""), asked)


@_check
def _scheme_requests(c: _Ctx) -> Iterator[Diagnostic]:
    if c.chip.host:
        return
    t, plan = c.config.target, c.plan
    asked = c.asked("NVS_ENCRYPTION")
    if asked and not plan.nvs_encryption:
        yield _diag("error", "nvs-encryption-unavailable",
                    f"{asked.text} has no effect on {t}: NVS encryption needs flash encryption there "
                    f"({t} has no HMAC peripheral); set CONFIG_SECURE_FLASH_ENC_ENABLED=y", asked)
    hmac = c.asked("NVS_SEC_KEY_PROTECT_USING_HMAC")
    if hmac and not c.chip.hmac:
        now = f"the {plan.scheme} scheme" if plan.scheme else "no NVS encryption"
        yield _diag("error", "hmac-unsupported",
                    f"{hmac.text} cannot work: {t} has no HMAC peripheral, so ESP-IDF drops it and uses "
                    f"{now}; select CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y (with flash encryption "
                    "and an nvs_keys partition), or use a chip with HMAC", hmac)
    fe = c.asked("NVS_SEC_KEY_PROTECT_USING_FLASH_ENC")
    if fe and not plan.flash_encryption:
        now = f"the {plan.scheme} scheme" if plan.scheme else "no NVS encryption"
        other = " or select CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y" if c.chip.hmac else ""
        yield _diag("error", "flash-enc-scheme-without-flash-encryption",
                    f"{fe.text} needs flash encryption, which is off, so ESP-IDF uses {now}; set "
                    f"CONFIG_SECURE_FLASH_ENC_ENABLED=y{other}", fe)


@_check
def _scheme_facts(c: _Ctx) -> Iterator[Diagnostic]:
    plan = c.plan
    if c.chip.host:
        return
    if not plan.nvs_encryption:
        extra = (" (flash encryption does not cover NVS data)" if plan.flash_encryption else "")
        yield _diag("info", "nvs-encryption-off",
                    f"NVS encryption is off: NVS partitions are written and stored in plain text{extra}; "
                    "set CONFIG_NVS_ENCRYPTION=y to encrypt them")
    elif not plan.nvs_sec_provider:
        return  # no scheme at all: plan.firmware's nvs-sec-provider-missing says so
    elif plan.scheme == "none":
        yield _diag("warning", "scheme-none",
                    "NVS encryption is on with key protection scheme None: nvs_flash_init() cannot get "
                    "keys, so the application must call nvs_flash_secure_init() with its own keys; "
                    "choose the HMAC or flash-encryption scheme unless that is intended",
                    c.asked("NVS_SEC_KEY_PROTECT_NONE"))
    elif plan.scheme == "hmac":
        key_id = plan.hmac_efuse_key_id
        if key_id is None or key_id < 0:
            yield _diag("error", "hmac-key-id-unset",
                        "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID is -1: ESP-IDF's nvs_sec_provider stops the build "
                        "(#error ... out of range); set it to the eFuse key block (0-5) that holds, or "
                        "on first boot will get, the HMAC key", c.config.requested.get("NVS_SEC_HMAC_EFUSE_KEY_ID"))
        elif not c.intent.host_keys:
            yield _diag("info", "hmac-key-on-chip",
                        f"on first boot, if eFuse BLOCK_KEY{key_id} is empty, nvs_flash_init() burns a random "
                        "HMAC key there (purpose HMAC_UP) and derives the NVS keys from it; the key never "
                        "leaves the chip")


# --- the partition table -------------------------------------------------------------


@_check
def _nvs_keys(c: _Ctx) -> Iterator[Diagnostic]:
    plan, table = c.plan, c.plan.table
    if table is None:
        return
    keys = table.of_type(DATA_TYPE, NVS_KEYS_SUBTYPE)
    src = c.table_file
    if plan.scheme != "flash_enc":
        for part in keys:
            why = "NVS encryption is off" if not plan.nvs_encryption else f"the {plan.scheme} scheme keeps no keys there"
            yield _diag("info", "nvs-keys-unused",
                        f"partition {part.name} (nvs_keys) is not used: {why}; remove it from "
                        f"{_name(c, part.name)} if nothing else needs it", c.row(part.name))
        return
    if not keys:
        # ESP-IDF v5.5's nvs_sec_provider logs this and fails at startup; v6.0/v6.1 log it
        # as a warning, and nvs_flash_init() then fails (no scheme is registered).
        firmware = 'the device logs `partition with subtype "nvs_keys" not found` at boot'
        cut = next(((name, where) for (name, ptype, subtype), where in
                    (c.source.removed.items() if c.source else ())
                    if (ptype, subtype) == (DATA_TYPE, NVS_KEYS_SUBTYPE)), None)
        if cut is not None:
            name, where = cut
            yield _diag("error", "nvs-keys-partition-missing",
                        f"NVS encryption with the flash-encryption scheme needs an nvs_keys "
                        f"partition, and this product removes {name} ({firmware}); keep it: "
                        f"drop `{name}: null` from the product's partitions", where)
            return
        if c.source is None:
            fix = ("select a built-in table with encrypted NVS (CONFIG_PARTITION_TABLE_SINGLE_APP_"
                   "ENCRYPTED_NVS or CONFIG_PARTITION_TABLE_TWO_OTA_ENCRYPTED_NVS), or a custom "
                   "table with `nvs_key, data, nvs_keys, , 0x1000, encrypted`")
        else:
            fix = c.write("add `- {name: nvs_key, type: data, subtype: nvs_keys, size: 4K, "
                          "flags: [encrypted]}` to its partitions list",
                          "add the row `nvs_key, data, nvs_keys, , 0x1000, encrypted`")
        yield _diag("error", "nvs-keys-partition-missing",
                    f"NVS encryption with the flash-encryption scheme needs an nvs_keys partition, and "
                    f"{src} has none ({firmware}); {fix}", (c.source.file, None) if c.source else None)
        return
    part = keys[0]
    if len(keys) > 1:
        yield _diag("info", "nvs-keys-multiple",
                    f"{src} has {len(keys)} nvs_keys partitions; nvs_sec_provider uses the first, {part.name}",
                    c.row(part.name))
    if not part.encrypted:
        # nvs_flash_read_security_cfg() (v5.5, v6.0, v6.1): keys whose CRC does not match
        # are ESP_ERR_NVS_CORRUPT_KEY_PART.
        yield _diag("error", "nvs-keys-not-encrypted",
                    f"nvs_keys partition {part.name} lacks the encrypted flag, so the device reads the "
                    "keys flashed through flash encryption without decrypting them, and "
                    "nvs_flash_init() fails with ESP_ERR_NVS_CORRUPT_KEY_PART; "
                    + c.write("add `flags: [encrypted]` to its entry",
                              "write `encrypted` in its Flags column")
                    + f" in {_name(c, part.name)}", c.row(part.name))
    if part.size < _KEYS_MIN_SIZE:
        yield _diag("error", "nvs-keys-too-small",
                    f"nvs_keys partition {part.name} is {part.size:#x} bytes; it must be at least one 4 KB "
                    "sector (0x1000); " + c.write("write `size: 4K` in its entry",
                                                  "make its Size 0x1000")
                    + f" in {_name(c, part.name)}", c.row(part.name))
    if plan.flash_encryption_mode == "release" and c.intent.host_keys and not c.intent.nvs_keys_pre_encrypted:
        yield _diag("warning", "release-plaintext-nvs-keys",
                    "release-mode flash encryption with host-generated nvs_keys flashed in plain text: that "
                    "only works before the device's first boot (the bootloader then encrypts the partition), "
                    "and once encryption is on, ROM download mode cannot encrypt; pre-encrypt the nvs_keys "
                    "image with the device's flash-encryption key, or let the chip generate the keys")


@_check
def _nvs_flags(c: _Ctx) -> Iterator[Diagnostic]:
    plan, table = c.plan, c.plan.table
    if table is None:
        return
    compat = bool(plan.symbols.get("NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG"))
    src = c.table_file
    for part in table.of_type(DATA_TYPE, NVS_SUBTYPE):
        if not part.encrypted:
            continue
        remove = (c.write("remove `encrypted` from its flags", "remove `encrypted` from its Flags column")
                  + f" in {_name(c, part.name)}")
        if plan.flash_encryption and not compat:
            yield _diag("error", "nvs-partition-encrypted-flag",
                        f"NVS partition {part.name} has the encrypted flag: with flash encryption on, "
                        "nvs_flash_init() fails with ESP_ERR_NVS_WRONG_ENCRYPTION (NVS encrypts itself); "
                        f"{remove}, or set "
                        "CONFIG_NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG=y for devices made before ESP-IDF v4.3",
                        c.row(part.name))
        elif plan.flash_encryption:
            yield _diag("info", "nvs-partition-encrypted-flag",
                        f"NVS partition {part.name} has the encrypted flag; "
                        "CONFIG_NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG makes ESP-IDF ignore it",
                        c.row(part.name))
        else:
            yield _diag("warning", "nvs-partition-encrypted-flag",
                        f"NVS partition {part.name} has the encrypted flag: ignored while flash encryption is "
                        "off, but nvs_flash_init() fails with ESP_ERR_NVS_WRONG_ENCRYPTION once it is on; "
                        f"{remove}", c.row(part.name))
    if plan.nvs_encryption and table.find(_DEFAULT_PART) is None:
        add = c.write("`- {name: nvs, type: data, subtype: nvs, size: 24K}`",
                      "the row `nvs, data, nvs, , 0x6000,`")
        yield _diag("warning", "default-nvs-partition-missing",
                    f"{src} has no partition named nvs, which nvs_flash_init() opens (encrypted); add "
                    f"{add}, or make the application open yours with nvs_flash_secure_init_partition()",
                    (c.source.file, None) if c.source else None)


# --- the project's intent ------------------------------------------------------------


@_check
def _intent(c: _Ctx) -> Iterator[Diagnostic]:
    plan, intent = c.plan, c.intent
    if plan.table is not None:
        known = {p.name for p in plan.nvs_partitions}
        for name in sorted(set(intent.values_files) | set(intent.secure_partitions)):
            if name not in known:
                have = ", ".join(sorted(known)) or "none"
                yield _diag("error", "intent-partition-unknown",
                            f"the project file names NVS partition {name!r}, which the partition table "
                            f"{c.table_file} does not have (NVS partitions: {have}); "
                            "fix the name or add the partition")
    for part in plan.nvs_partitions:
        if part.values_file is None:
            continue
        if part.encrypted and not intent.host_keys:
            yield _diag("error", "values-need-host-keys", _values_message(c, part.name, part.values_file))
        elif not part.encrypted and plan.nvs_encryption:
            yield _diag("info", "plain-nvs-values",
                        f"NVS partition {part.name} is written in plain text: nvs_flash_init() encrypts only "
                        "nvs; if the application opens it with nvs_flash_secure_init_partition(), list it "
                        "as a secure partition in the project file")


def _name(c: _Ctx, partition: str) -> str:
    """The file name of partition ``partition``'s entry, as a fix's "in ..." names it."""
    file = c.row(partition)[0] or c.table_file or "the partition table"
    return file.rsplit("/", 1)[-1]


def _values_message(c: _Ctx, name: str, values: str) -> str:
    scheme = c.plan.scheme
    if scheme == "flash_enc":
        why = ("its keys are generated on the chip (an erased nvs_keys partition, filled by "
               "nvs_flash_generate_keys() on first boot)")
        outs = ["let the host provide the keys (it writes the nvs_keys partition)"]
        if c.chip.hmac:
            outs.append("use the HMAC scheme (CONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y): the host derives "
                        "the same keys from the HMAC key it burns into eFuse")
    elif scheme == "hmac":
        why = "its keys derive from an HMAC key the chip generates and burns into eFuse on first boot"
        outs = ["let the host provide the HMAC key (burned into eFuse before the first boot), so it "
                "derives the same keys"]
    else:
        why = "the application supplies the keys to nvs_flash_secure_init()"
        outs = ["let the host provide the keys and give the same keys to the application"]
    outs.append("drop the values file and let the firmware write that partition's data")
    return (f"NVS partition {name} has a values file ({values}) but {why}, so the host cannot encrypt "
            f"data for a key it never sees; either " + ", or ".join(outs))


def check_plan(plan: SecurityPlan, config: ResolvedConfig, chip: Chip,
               intent: PlanIntent, source: TableSource | None = None) -> tuple[Diagnostic, ...]:
    """Every diagnostic for ``plan``, in check order; ``source`` is the file the user
    edits for the table, which diagnostics about partitions name and quote."""
    ctx = _Ctx(plan, config, chip, intent, source)
    return tuple(d for check in _CHECKS for d in check(ctx))

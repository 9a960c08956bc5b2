"""The output plan: every file a command writes, what it is, and what it is made from.

:func:`plan_outputs` computes it once from the resolved project (product applied) and
the security plan.  ``detect`` announces it, ``build`` and the CMake build step write
it, the CMake configure step registers it with ESP-IDF's flash targets, ``release``
bundles it and ``batch`` instantiates it per device; none of them decides an output
name or a key source by itself.

Pure: it reads no file (the resolved project has read them) and holds no secret (a
master secret appears by where it comes from, never by value).

Names: each output's ``path`` is one safe path component relative to the output folder
(``partition-table.bin``, ``partitions.csv``, ``<partition>.bin``, ``hmac_key.bin``);
a name that would not be one (``/``, ``\\``, NUL, ``..``, a leading dot, control
characters) is refused here, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from ..formats.partition_table import DATA_TYPE, NVS_KEYS_SUBTYPE
from .model import SecurityPlan
from ..words import FlashEncryptionMode, KeyProvider, KeySource, OutputKind

__all__ = [
    "HMAC_CONTEXT",
    "DEFAULT_KEYS_PARTITION",
    "TABLE_FILE",
    "CSV_FILE",
    "HMAC_KEY_FILE",
    "InputRef",
    "KeyPlan",
    "PlannedOutput",
    "OutputPlan",
    "check_path_component",
    "plan_outputs",
]

#: The derivation context of the HMAC scheme's eFuse key (one per product).
HMAC_CONTEXT = "efuse_hmac"
#: The keys partition's name when the table has none (keys the application passes).
DEFAULT_KEYS_PARTITION = "nvs_keys"
TABLE_FILE = "partition-table.bin"
CSV_FILE = "partitions.csv"
HMAC_KEY_FILE = "hmac_key.bin"
#: Kinds ESP-IDF's build makes itself (the CMake build step writes only the others).
TABLE_KINDS = (OutputKind.PARTITION_TABLE, OutputKind.PARTITION_CSV)


def check_path_component(name: str, *, what: str, file: str | None = None,
                         line: int | None = None) -> str:
    """``name`` when it is one safe path component; else an :class:`InputError`.

    ESP-IDF allows any 16-byte label; only those that would not stay a plain file name
    inside the output folder are refused."""
    bad = None
    if not name:
        bad = "is empty"
    elif any(c in name for c in "/\\"):
        bad = "contains a path separator"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        bad = "contains a NUL or control character"
    elif name.startswith("."):
        bad = "starts with a dot"
    if bad:
        raise InputError(f"{what} {name!r} {bad}, so it cannot name an output file",
                         file=file, line=line,
                         hint="use letters, digits, '_' and '-' (a partition label is at "
                              "most 16 bytes)")
    return name


@dataclass(frozen=True)
class InputRef:
    """One input of an output: a file (``path`` absolute, ``name`` relative to the
    project), an environment variable (by name only), or a master secret (by where it
    comes from).  ``role``: project, partitions, sdkconfig, values, data, keys,
    keystore, env or master_secret."""

    role: str
    name: str
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name}


@dataclass(frozen=True)
class KeyPlan:
    """One set of key material: an nvs_keys image (flash-encryption and app schemes) or
    an HMAC eFuse key.

    ``name``: its file; ``context``: what derivation names it by (the keys partition, or
    :data:`HMAC_CONTEXT`); ``partition``/``offset``/``size``: where it is flashed (None:
    not flashed); ``flash_encrypted``: written through flash encryption."""

    name: str
    kind: OutputKind
    context: str
    source: KeySource
    file: Path | None = None
    partition: str | None = None
    offset: int | None = None
    size: int | None = None
    flash_encrypted: bool = False
    inputs: tuple[InputRef, ...] = ()
    #: For ``derive``: the master secret's spec (where to read it; never its value).
    master_secret: Any = field(default=None, compare=False, repr=False)
    #: ``file:line`` of the keys setting, for messages.
    where: str | None = field(default=None, compare=False)

    @property
    def reproducible(self) -> bool:
        return self.source.reproducible

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "context": self.context,
                "source": self.source, "reproducible": self.reproducible,
                "partition": self.partition, "offset": self.offset, "size": self.size,
                "flash_encrypted": self.flash_encrypted,
                "inputs": [i.to_json() for i in self.inputs]}


@dataclass(frozen=True)
class PlannedOutput:
    """One output file.

    ``path``: relative to the output folder (one component).  ``partition``/``offset``/
    ``size``: the partition it is flashed to, in bytes (None: not flashed).
    ``flash_encrypted``: written through flash encryption.  ``keys``: the
    :class:`KeyPlan` name that XTS-encrypts this NVS image, or that this key file holds
    (None: plain).  ``key_source``: that key plan's source.  ``reproducible``: the same
    inputs give the same bytes anywhere.  ``inputs``: what it is made from."""

    path: str
    kind: OutputKind
    description: str
    partition: str | None = None
    offset: int | None = None
    size: int | None = None
    flash_encrypted: bool = False
    keys: str | None = None
    key_source: KeySource | None = None
    reproducible: bool = True
    format_version: int | None = None
    inputs: tuple[InputRef, ...] = ()

    @property
    def secret(self) -> bool:
        """Key material: mode 0600, never printed."""
        return self.kind.secret

    @property
    def bundle_path(self) -> str:
        """Its name inside a release bundle (ESP-IDF's build-folder layout)."""
        folder = "partition_table" if self.kind in TABLE_KINDS else "nvs_secure"
        return f"{folder}/{self.path}"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "partition": self.partition,
                "offset": self.offset, "size": self.size,
                "flash_encrypted": self.flash_encrypted, "keys": self.keys,
                "key_source": self.key_source, "reproducible": self.reproducible,
                "secret": self.secret, "format_version": self.format_version,
                "description": self.description,
                "inputs": [i.to_json() for i in self.inputs]}


@dataclass(frozen=True)
class OutputPlan:
    """Every output of one project and product, and the key material behind them.

    ``actions``: what the user must do that writes no file of ours (keep a partition
    erased, burn an eFuse key); ``notes``: what a review should see (inputs outside
    the project, keys that cannot be made again)."""

    product: str | None
    label: str
    outputs: tuple[PlannedOutput, ...] = ()
    keys: tuple[KeyPlan, ...] = ()
    actions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def reproducible(self) -> bool:
        return all(o.reproducible for o in self.outputs)

    def find(self, kind: OutputKind, partition: str | None = None) -> PlannedOutput | None:
        return next((o for o in self.outputs if o.kind == kind and
                     (partition is None or o.partition == partition)), None)

    def key(self, name: str | None) -> KeyPlan | None:
        return next((k for k in self.keys if k.name == name), None)

    def of_kind(self, *kinds: OutputKind) -> tuple[PlannedOutput, ...]:
        return tuple(o for o in self.outputs if o.kind in kinds)

    @property
    def device_outputs(self) -> tuple[PlannedOutput, ...]:
        """What each device of a batch gets: everything but the product's table."""
        return tuple(o for o in self.outputs if o.kind not in TABLE_KINDS)

    @property
    def env_vars(self) -> tuple[str, ...]:
        """Every environment variable an output reads (values and master secrets)."""
        names: dict[str, None] = {}
        for ref in self._all_inputs():
            if ref.role == "env" or (ref.role == "master_secret" and ref.name.startswith("env:")):
                names[ref.name.removeprefix("env:")] = None
        return tuple(names)

    @property
    def input_files(self) -> tuple[Path, ...]:
        """Every file an output is made from (absolute, stable order)."""
        return tuple(dict.fromkeys(r.path for r in self._all_inputs() if r.path is not None))

    def _all_inputs(self) -> Iterable[InputRef]:
        for out in self.outputs:
            yield from out.inputs
        for key in self.keys:
            yield from key.inputs

    def to_json(self) -> dict[str, Any]:
        return {"product": self.product, "label": self.label,
                "reproducible": self.reproducible,
                "outputs": [o.to_json() for o in self.outputs],
                "keys": [k.to_json() for k in self.keys],
                "actions": list(self.actions), "notes": list(self.notes)}


# --- computing it ----------------------------------------------------------------------


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _file_ref(role: str, path: Path, root: Path) -> InputRef:
    return InputRef(role, _rel(path, root), Path(path))


def _secret_refs(spec: Any, root: Path) -> tuple[InputRef, ...]:
    """Where a master secret may come from, in the order read_master_secret tries."""
    if spec is None:
        return ()
    refs = []
    if spec.env:
        refs.append(InputRef("master_secret", f"env:{spec.env}"))
    if spec.file is not None:
        path = spec.file if spec.file.is_absolute() else root / spec.file
        refs.append(InputRef("master_secret", f"file:{_rel(path, root)}", path))
    if spec.development_default is not None:
        refs.append(InputRef("master_secret", "development-default"))
    return tuple(refs)


def _key_inputs(spec: Any, resolved: Any, root: Path) -> tuple[InputRef, ...]:
    if spec.source == KeySource.FILE and spec.file is not None:
        return (_file_ref("keys", spec.file, root),)
    if spec.source == KeySource.DERIVE:
        return _secret_refs(spec.master_secret or resolved.master_secret, root)
    if spec.source == KeySource.GENERATE:
        return (InputRef("keystore", "generated once, kept in the keystore"),)
    return ()


def _external_notes(refs: Iterable[InputRef], root: Path) -> list[str]:
    out = []
    for ref in refs:
        if ref.path is not None and ref.name == str(ref.path) and ref.role != "sdkconfig":
            out.append(f"input outside the project folder: {Path(ref.path).resolve()} "
                       f"({ref.role})")
    return out


def plan_outputs(plan: SecurityPlan, resolved: Any | None) -> OutputPlan:
    """The outputs of ``resolved`` (a :class:`~..inputs.project.ResolvedProject`, or
    None for a project without nvs_secure.yaml, which has none) under ``plan``.

    Raises :class:`InputError` when a name would not be a safe file name."""
    actions = list(_actions(plan, resolved))
    if resolved is None:
        return OutputPlan(None, "default", actions=tuple(actions))
    project = resolved.project
    root = project.root
    table = resolved.table
    where = _rel(project.partitions_file, root)
    for part in table.partitions:
        check_path_component(part.name, what="partition name", file=where)
    label = check_path_component(resolved.product_label, what="product name",
                                 file=_rel(project.file, root))

    sdk = tuple(_file_ref("sdkconfig", Path(f) if Path(f).is_absolute() else root / f, root)
                for f in plan.config.get("files", ()))
    table_inputs = (_file_ref("project", project.file, root),
                    _file_ref("partitions", project.partitions_file, root)) + sdk
    source = "partitions.yaml" if project.partitions_file.suffix in (".yaml", ".yml") else \
        project.partitions_file.name
    outputs = [
        PlannedOutput(TABLE_FILE, OutputKind.PARTITION_TABLE,
                      f"partition table from {source}", offset=table.offset,
                      inputs=table_inputs),
        PlannedOutput(CSV_FILE, OutputKind.PARTITION_CSV,
                      f"the partition table as ESP-IDF's CSV, from {source}",
                      inputs=table_inputs),
    ]
    keys: dict[str, KeyPlan] = {}
    for name, values in resolved.values.items():
        part = table.find(name)
        nvs_plan = plan.nvs_partition(name)
        spec = resolved.keys[name]
        provider = nvs_plan.key_source if nvs_plan and nvs_plan.encrypted else None
        key = None
        if provider in (KeyProvider.HOST_NVS_KEYS, KeyProvider.APPLICATION):
            context = (resolved.nvs_keys_pairs.get(name) or plan.keys_partition
                       or DEFAULT_KEYS_PARTITION)
            check_path_component(context, what="keys partition name", file=where)
            target = table.find(context) if provider == KeyProvider.HOST_NVS_KEYS else None
            key = keys.get(f"{context}.bin") or KeyPlan(
                f"{context}.bin", OutputKind.NVS_KEYS_IMAGE, context, spec.source,
                file=spec.file, partition=target.name if target else None,
                offset=target.offset if target else None,
                size=target.size if target else None,
                flash_encrypted=bool(target and target.encrypted and plan.flash_encryption),
                inputs=_key_inputs(spec, resolved, root),
                master_secret=spec.master_secret or resolved.master_secret, where=spec.where)
        elif provider == KeyProvider.HMAC:
            key = keys.get(HMAC_KEY_FILE) or KeyPlan(
                HMAC_KEY_FILE, OutputKind.HMAC_KEY, HMAC_CONTEXT, spec.source, file=spec.file,
                inputs=_key_inputs(spec, resolved, root),
                master_secret=spec.master_secret or resolved.master_secret, where=spec.where)
        elif provider == KeyProvider.CHIP_NVS_KEYS and values.files:
            continue  # the host cannot encrypt for keys it never sees: a plan error
        if key is not None:
            keys[key.name] = key
        if not values.files:
            continue
        value_refs = [_file_ref("values" if p in values.files else "data", p, root)
                      for p in values.inputs]
        value_refs += [InputRef("env", var) for var in values.env_vars]
        how = "XTS-encrypted with " + key.name if key else "plain text"
        outputs.append(PlannedOutput(
            f"{name}.bin", OutputKind.NVS_IMAGE,
            f"NVS image of {name} from {', '.join(_rel(p, root) for p in values.files)}, {how}",
            partition=name, offset=part.offset, size=part.size,
            keys=key.name if key else None, key_source=key.source if key else None,
            reproducible=key.reproducible if key else True,
            format_version=resolved.format_versions.get(name, 2),
            inputs=tuple(value_refs) + (key.inputs if key else ())))
    for key in keys.values():
        what = ("nvs_keys image for " + key.partition if key.kind == OutputKind.NVS_KEYS_IMAGE
                and key.partition else "NVS keys the application passes to "
                "nvs_flash_secure_init()" if key.kind == OutputKind.NVS_KEYS_IMAGE else
                "HMAC key to burn into eFuse (purpose HMAC_UP)")
        outputs.append(PlannedOutput(
            key.name, key.kind, f"{what}, keys: {key.source}", partition=key.partition,
            offset=key.offset, size=key.size, flash_encrypted=key.flash_encrypted,
            keys=key.name, key_source=key.source, reproducible=key.reproducible,
            inputs=key.inputs))
    notes = _external_notes((r for o in outputs for r in o.inputs), root)
    for values in resolved.values.values():  # file: sources outside the project (symlinks
        for path in getattr(values, "external_files", ()):  # followed): listed for review
            notes.append(f"input outside the project folder: {path} (data)")
    if any(not k.reproducible for k in keys.values()):
        notes.append("keys of source 'generate' are drawn once and kept: they cannot be made "
                     "again, so keep the keystore (or use keys: {source: derive})")
    order = {OutputKind.PARTITION_TABLE: 0, OutputKind.PARTITION_CSV: 1,
             OutputKind.NVS_KEYS_IMAGE: 2, OutputKind.HMAC_KEY: 2, OutputKind.NVS_IMAGE: 3}
    outputs.sort(key=lambda o: (order[o.kind], o.offset if o.offset is not None else -1,
                                o.path))
    return OutputPlan(resolved.product, label, tuple(outputs), tuple(keys.values()),
                      tuple(actions), tuple(dict.fromkeys(notes)))


def _actions(plan: SecurityPlan, resolved: Any | None) -> Iterable[str]:
    """What the user does that writes no file of ours."""
    if not any(p.encrypted for p in plan.nvs_partitions):
        return
    table = plan.table
    keys_parts = table.of_type(DATA_TYPE, NVS_KEYS_SUBTYPE) if table is not None else ()
    providers = {p.key_source for p in plan.nvs_partitions if p.encrypted}
    if KeyProvider.CHIP_NVS_KEYS in providers and keys_parts:
        yield (f"keep {keys_parts[0].name} at 0x{keys_parts[0].offset:x} erased: "
               "nvs_flash_generate_keys() writes the keys at first boot")
    if KeyProvider.HMAC in providers:
        key_id = plan.hmac_efuse_key_id
        block = f"BLOCK_KEY{key_id}" if key_id is not None and key_id >= 0 else "BLOCK_KEY<n>"
        if resolved is None:
            yield (f"burn the HMAC key into eFuse {block} with purpose HMAC_UP before the first "
                   "boot (or let the firmware generate it)")
        else:
            yield (f"burn {HMAC_KEY_FILE} into eFuse before the first boot: `espefuse.py "
                   f"burn_key {block} {HMAC_KEY_FILE} HMAC_UP`")
    if KeyProvider.APPLICATION in providers and resolved is None:
        yield "the application passes its NVS keys to nvs_flash_secure_init()"
    if (KeyProvider.HOST_NVS_KEYS in providers and
            plan.flash_encryption_mode == FlashEncryptionMode.RELEASE):
        yield ("release-mode flash encryption: write the nvs_keys image before the first boot "
               "(the bootloader encrypts it in place), or pre-encrypt it with the device's "
               "flash-encryption key (idf-nvs-secure release --flash-encryption-key)")

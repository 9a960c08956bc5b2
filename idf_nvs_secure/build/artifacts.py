"""Project + plan -> the bytes the build must produce.

One function, :func:`build_artifacts`, used by ``idf-nvs-secure build``, the CMake
layer and release bundles, so they can never disagree.  Inputs flow one way: the
resolved project (tables and values) and the security plan (what sdkconfig demands)
decide which images exist, whether each is encrypted, and which keys do it.

Key contexts for HKDF derivation: ``nvs_keys`` material is derived per product and per
*keys partition* (several NVS partitions may share one nvs_keys partition); the HMAC
scheme's eFuse key per product under the name ``efuse_hmac``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..config.sdkconfig import read_config
from ..errors import KeyMaterialError, NvsSecureError
from ..formats.nvs_image import build_nvs_image
from ..formats.nvs_keys import (
    HMAC_KEY_SIZE,
    NvsKeys,
    build_nvs_keys,
    derive_nvs_keys_from_hmac,
    generate_hmac_key,
    generate_nvs_keys,
    parse_nvs_keys,
)
from ..formats.partition_table import build_partition_table, parse_flash_size
from ..fsutil import read_input_bytes
from ..inputs.keysource import (
    MasterSecret,
    derive_hmac_key,
    derive_nvs_keys,
    read_master_secret,
)
from ..inputs.partition_csv import format_partition_csv
from ..inputs.project import KeySpec, Project, ResolvedProject, resolve_project
from ..plan.security import PlanIntent, SecurityPlan, plan_from_config

__all__ = ["BuiltArtifact", "Build", "project_intent", "plan_for_project", "build_artifacts"]

HMAC_CONTEXT = "efuse_hmac"


@dataclass(frozen=True)
class BuiltArtifact:
    """One output file.

    ``name`` is relative to the output directory.  ``flash_encrypted``: written through
    flash encryption (``encrypted-flash``); ``secret``: key material (mode 0600, never
    printed); ``made_from``: the inputs it came from, for manifests.
    """

    kind: str
    name: str
    data: bytes
    partition: str | None = None
    offset: int | None = None
    flash_encrypted: bool = False
    secret: bool = False
    made_from: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Build:
    """The artifacts of one build and what the user should know about them."""

    artifacts: tuple[BuiltArtifact, ...]
    notes: tuple[str, ...] = ()
    reproducible: bool = True  # False when a key was drawn at random for this build

    def find(self, kind: str, partition: str | None = None) -> BuiltArtifact | None:
        return next((a for a in self.artifacts if a.kind == kind and
                     (partition is None or a.partition == partition)), None)


def project_intent(resolved: ResolvedProject) -> PlanIntent:
    """What the project file adds to sdkconfig's facts, for :func:`detect_plan`."""
    project = resolved.project
    values_files = {name: os.path.relpath(vals.files[0], project.root)
                    for name, vals in resolved.values.items() if vals.namespaces and vals.files}
    host_keys = any(spec.source != "chip" for spec in resolved.keys.values()) or (
        not resolved.keys and (project.keys is None or project.keys.source != "chip"))
    generated = None
    if project.partitions_file.suffix.lower() in (".yaml", ".yml"):
        generated = os.path.relpath(project.partition_csv, project.root)
    secure = frozenset(name for name in resolved.values
                       if name in resolved.nvs_keys_pairs and name != "nvs")
    return PlanIntent(values_files={k: v for k, v in values_files.items() if v},
                      host_keys=host_keys, generated_csv=generated,
                      generated_table=resolved.table, secure_partitions=secure)


def plan_for_project(project: Project, product: str | None = None, *,
                     sdkconfig: Path | None = None, env: Mapping[str, str] | None = None,
                     build_dir: Path | None = None) -> tuple[ResolvedProject, SecurityPlan]:
    """Resolve ``project`` for ``product`` against its sdkconfig, and plan it.

    sdkconfig is read once: its table offset and flash size place the partitions, and
    the resolved project (values, key sources, generated table) is the plan's intent.
    """
    env = os.environ if env is None else env
    config = read_config(project.root, sdkconfig=sdkconfig, env=env, build_dir=build_dir)
    flash = config.values.get("ESPTOOLPY_FLASHSIZE")
    resolved = resolve_project(project, product, env=env,
                               table_offset=config.values.get("PARTITION_TABLE_OFFSET"),
                               flash_size=parse_flash_size(flash) if flash else None)
    plan = plan_from_config(config, project.root, intent=project_intent(resolved), env=env)
    return resolved, plan


def _secret(resolved: ResolvedProject, spec: KeySpec, env: Mapping[str, str],
            release: bool) -> MasterSecret:
    source = spec.master_secret or resolved.master_secret
    if source is None:
        raise KeyMaterialError("keys source 'derive' needs a master secret", file=spec.where,
                               hint="add master_secret: {env: NAME} to nvs_secure.yaml")
    return read_master_secret(source, env=env, base_dir=resolved.project.root, release=release)


class _Keys:
    """Resolves key material once per context; generated keys persist in ``keystore``."""

    def __init__(self, resolved: ResolvedProject, env: Mapping[str, str], keystore: Path | None,
                 rng: Callable[[int], bytes], release: bool,
                 master_secret: MasterSecret | None) -> None:
        self.resolved, self.env, self.keystore = resolved, env, keystore
        self.rng, self.release, self.master = rng, release, master_secret
        self.cache: dict[tuple[str, str], bytes | NvsKeys] = {}
        self.notes: list[str] = []
        self.random = False

    def _stored(self, name: str, make: Callable[[], bytes]) -> bytes:
        if self.keystore is None:
            self.random = True
            return make()
        path = self.keystore / self.resolved.product_label / name
        if path.exists():
            return read_input_bytes(path)
        from ..fsutil import write_key_file

        data = make()
        write_key_file(path, data)
        self.notes.append(f"generated new key material {path} (keep it: it cannot be remade)")
        return data

    def _master(self, spec: KeySpec) -> MasterSecret:
        if self.master is None:
            self.master = _secret(self.resolved, spec, self.env, self.release)
            if self.master.development:
                self.notes.append("keys derived from the project's development default "
                                  "master secret: not for production devices")
        return self.master

    def nvs_keys(self, spec: KeySpec, context: str) -> NvsKeys:
        key = ("nvs_keys", context)
        if key not in self.cache:
            if spec.source == "file":
                raw = read_input_bytes(spec.file)
                try:
                    self.cache[key] = parse_nvs_keys(raw)
                except NvsSecureError as exc:
                    raise exc.located(str(spec.file)) from None
            elif spec.source == "derive":
                self.cache[key] = derive_nvs_keys(self._master(spec),
                                                  product=self.resolved.product_label,
                                                  partition=context)
            else:
                raw = self._stored(f"{context}.nvs_keys.bin",
                                   lambda: build_nvs_keys(generate_nvs_keys(self.rng)))
                self.cache[key] = parse_nvs_keys(raw)
        return self.cache[key]  # type: ignore[return-value]

    def hmac_key(self, spec: KeySpec) -> bytes:
        key = ("hmac", HMAC_CONTEXT)
        if key not in self.cache:
            if spec.source == "file":
                raw = read_input_bytes(spec.file)
                if len(raw) != HMAC_KEY_SIZE:
                    raise KeyMaterialError(f"the HMAC scheme needs a {HMAC_KEY_SIZE}-byte HMAC "
                                           f"key file, this one has {len(raw)} bytes",
                                           file=str(spec.file))
                self.cache[key] = raw
            elif spec.source == "derive":
                self.cache[key] = derive_hmac_key(self._master(spec),
                                                  product=self.resolved.product_label,
                                                  partition=HMAC_CONTEXT)
            else:
                self.cache[key] = self._stored("hmac_key.bin", lambda: generate_hmac_key(self.rng))
        return self.cache[key]  # type: ignore[return-value]


def build_artifacts(resolved: ResolvedProject, plan: SecurityPlan, *,
                    env: Mapping[str, str] | None = None, keystore: Path | None = None,
                    rng: Callable[[int], bytes] = secrets.token_bytes, release: bool = False,
                    master_secret: MasterSecret | None = None) -> Build:
    """Every artifact of the plan, in memory (the caller writes them atomically).

    ``keystore`` keeps keys of source ``generate`` between builds (never overwritten);
    without it such keys are drawn fresh each call.  ``master_secret`` overrides the
    project's (``--master-secret-file``).  Raises when the plan has errors.
    """
    env = os.environ if env is None else env
    errors = [d for d in plan.diagnostics if d.severity == "error"]
    if errors:
        raise NvsSecureError(f"the security plan has {len(errors)} error(s): "
                             f"{errors[0].message}", hint="run 'idf-nvs-secure detect' for all")
    root = resolved.project.root

    def rel(p: Path) -> str:
        return os.path.relpath(p, root)

    table_inputs = (rel(resolved.project.partitions_file), rel(resolved.project.file))
    out = [
        BuiltArtifact("partition_table", "partition-table.bin",
                      build_partition_table(resolved.table), offset=resolved.table.offset,
                      made_from=table_inputs),
        BuiltArtifact("partition_csv", "partitions.csv",
                      format_partition_csv(resolved.table).encode("utf-8"),
                      made_from=table_inputs),
    ]
    keys = _Keys(resolved, env, keystore, rng, release, master_secret)
    plans = {p.name: p for p in plan.nvs_partitions}
    keys_written: set[str] = set()
    for name, values in resolved.values.items():
        part = resolved.table.find(name)
        nvs_plan = plans.get(name)
        spec = resolved.keys[name]
        image_keys: NvsKeys | None = None
        source = nvs_plan.key_source if nvs_plan and nvs_plan.encrypted else None
        if source in ("nvs_keys_host", "app"):
            keys_part = resolved.nvs_keys_pairs.get(name) or plan.keys_partition or "nvs_keys"
            image_keys = keys.nvs_keys(spec, keys_part)
            if keys_part not in keys_written:
                keys_written.add(keys_part)
                target = resolved.table.find(keys_part)
                out.append(BuiltArtifact(
                    "nvs_keys_image", f"{keys_part}.bin", build_nvs_keys(image_keys),
                    partition=keys_part if target else None,
                    offset=target.offset if target else None,
                    flash_encrypted=bool(target and target.encrypted), secret=True,
                    made_from=(f"keys: {spec.source}",)))
        elif source == "hmac":
            hmac_key = keys.hmac_key(spec)
            image_keys = derive_nvs_keys_from_hmac(hmac_key)
            if "hmac" not in keys_written:
                keys_written.add("hmac")
                out.append(BuiltArtifact(
                    "hmac_key", "hmac_key.bin", hmac_key, secret=True,
                    made_from=(f"keys: {spec.source}",),
                    note=f"burn into eFuse key block {plan.hmac_efuse_key_id} with purpose "
                         f"HMAC_UP before the first boot"))
        elif source == "nvs_keys_chip" and values.namespaces:
            raise KeyMaterialError(f"NVS partition '{name}' has values but its keys are made "
                                   f"on the chip", hint="see 'idf-nvs-secure detect'")
        if not values.namespaces:
            continue
        image = build_nvs_image(values.entries, part.size,
                                version=resolved.format_versions.get(name, 2), keys=image_keys)
        out.append(BuiltArtifact(
            "nvs_image", f"{name}.bin", image, partition=name, offset=part.offset,
            made_from=tuple(rel(p) for p in values.inputs),
            note="XTS-encrypted" if image_keys else "plain"))
    return Build(tuple(out), tuple(keys.notes), reproducible=not keys.random)

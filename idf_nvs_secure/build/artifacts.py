"""An output plan -> the bytes of each output, in memory.

:func:`build_outputs` makes every file of a :class:`~..plan.outputs.OutputPlan`; the
caller writes them, as a set (:func:`~..fsutil.write_output_set`).  Keys come from
:class:`~.keys.KeyResolver`, the one place that turns a key source into bytes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..errors import NvsSecureError
from ..formats.nvs_image import build_nvs_image
from ..formats.partition_table import build_partition_table
from ..inputs.keysource import MasterSecret
from ..inputs.partition_csv import format_partition_csv
from ..inputs.project import ResolvedProject
from ..plan.model import SecurityPlan
from ..plan.outputs import OutputPlan, PlannedOutput, plan_outputs
from ..plan.project_plan import ProjectPlan, plan_for_project, project_intent
from ..words import OutputKind
from .keys import KeyResolver

__all__ = ["BuiltArtifact", "Build", "build_outputs", "build_artifacts", "project_intent",
           "plan_for_project"]


@dataclass(frozen=True)
class BuiltArtifact:
    """One planned output and its bytes."""

    output: PlannedOutput
    data: bytes

    @property
    def kind(self) -> OutputKind:
        return self.output.kind

    @property
    def name(self) -> str:
        return self.output.path

    @property
    def partition(self) -> str | None:
        return self.output.partition

    @property
    def offset(self) -> int | None:
        return self.output.offset

    @property
    def flash_encrypted(self) -> bool:
        return self.output.flash_encrypted

    @property
    def secret(self) -> bool:
        return self.output.secret

    @property
    def made_from(self) -> tuple[str, ...]:
        return tuple(ref.name for ref in self.output.inputs)

    @property
    def note(self) -> str:
        if self.kind == OutputKind.NVS_IMAGE:
            return "XTS-encrypted" if self.output.keys else "plain"
        return ""


@dataclass(frozen=True)
class Build:
    """The built outputs of one plan, the key material a keystore must keep, and what the
    user should know."""

    artifacts: tuple[BuiltArtifact, ...]
    notes: tuple[str, ...] = ()
    reproducible: bool = True  # False when a key was drawn at random for this build
    plan: OutputPlan | None = None
    new_keystore_files: Mapping[Path, bytes] | None = None
    master_fingerprint: str | None = None

    def find(self, kind: str, partition: str | None = None) -> BuiltArtifact | None:
        return next((a for a in self.artifacts if a.kind == kind and
                     (partition is None or a.partition == partition)), None)


def build_outputs(planned: ProjectPlan, *, env: Mapping[str, str] | None = None,
                  keystore: Path | None = None, rng: Callable[[int], bytes] = secrets.token_bytes,
                  release: bool = False, master_secret: MasterSecret | None = None,
                  kinds: tuple[OutputKind, ...] | None = None) -> Build:
    """The bytes of every output of ``planned`` (or of those of ``kinds``).

    Raises when the security plan has errors or a value's variable is unset."""
    resolved, plan, outputs = planned.resolved, planned.security, planned.outputs
    if plan.errors:
        errors = plan.errors
        raise NvsSecureError(f"the security plan has {len(errors)} error(s): "
                             f"{errors[0].message}", hint="run 'idf-nvs-secure detect' for all")
    resolved.check_complete()
    keys = KeyResolver(resolved, env=env, keystore=keystore, rng=rng, release=release,
                       master_secret=master_secret)
    made = []
    for out in outputs.outputs:
        if kinds is not None and out.kind not in kinds:
            continue
        made.append(BuiltArtifact(out, _bytes(out, resolved, outputs, keys)))
    return Build(tuple(made), tuple(keys.notes), reproducible=not keys.random, plan=outputs,
                 new_keystore_files=dict(keys.new_keystore_files),
                 master_fingerprint=keys.master.fingerprint if keys.master else None)


def _bytes(out: PlannedOutput, resolved: ResolvedProject, outputs: OutputPlan,
           keys: KeyResolver) -> bytes:
    if out.kind == OutputKind.PARTITION_TABLE:
        return build_partition_table(resolved.table)
    if out.kind == OutputKind.PARTITION_CSV:
        return format_partition_csv(resolved.table).encode("utf-8")
    if out.kind in (OutputKind.NVS_KEYS_IMAGE, OutputKind.HMAC_KEY):
        return keys.material(outputs.key(out.keys))
    values = resolved.values[out.partition]
    image_keys = keys.nvs_keys(outputs.key(out.keys)) if out.keys else None
    return build_nvs_image(values.entries, out.size, version=out.format_version or 2,
                           keys=image_keys)


def build_artifacts(resolved: ResolvedProject, plan: SecurityPlan, *,
                    env: Mapping[str, str] | None = None, keystore: Path | None = None,
                    rng: Callable[[int], bytes] = secrets.token_bytes, release: bool = False,
                    master_secret: MasterSecret | None = None) -> Build:
    """:func:`build_outputs` for a resolved project and its security plan."""
    env = os.environ if env is None else env
    planned = ProjectPlan(resolved, plan, plan_outputs(plan, resolved))
    return build_outputs(planned, env=env, keystore=keystore, rng=rng, release=release,
                         master_secret=master_secret)

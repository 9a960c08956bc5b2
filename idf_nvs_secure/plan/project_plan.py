"""A project planned for one product: the resolved inputs, the security plan and the
output plan, computed together once (sdkconfig is read once)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from ..config.idf_versions import parse_idf_version
from ..config.sdkconfig import ResolvedConfig, read_config
from ..errors import InputError
from ..formats.partition_table import parse_flash_size, secure_boot_check
from ..inputs.project import Project, ResolvedProject, resolve_project
from ..fsutil import display_path
from ..words import KeySource
from .model import PlanIntent, SecurityPlan, TableSource
from .firmware import check_entries_for_firmware, with_idf_version
from .outputs import OutputPlan, plan_outputs
from .security import plan_from_config

__all__ = ["ProjectPlan", "project_intent", "plan_project", "plan_for_project"]


@dataclass(frozen=True)
class ProjectPlan:
    """Everything every command reads about one project and product."""

    resolved: ResolvedProject
    security: SecurityPlan
    outputs: OutputPlan


def project_intent(resolved: ResolvedProject) -> PlanIntent:
    """What the project file adds to sdkconfig's facts, for the security plan."""
    project = resolved.project
    values_files = {name: os.path.relpath(vals.files[0], project.root)
                    for name, vals in resolved.values.items() if vals.files}
    host_keys = any(spec.source != KeySource.CHIP for spec in resolved.keys.values()) or (
        not resolved.keys and (project.keys is None or project.keys.source != KeySource.CHIP))
    generated = source = None
    if project.partitions_file.suffix.lower() in (".yaml", ".yml"):
        generated = os.path.relpath(project.partition_csv, project.root)
        removed = {(s.name, s.type, s.subtype): (project.doc.filename, project.doc.where(
            ("products", resolved.product, "partitions", s.name), key=True)[0])
            for s in resolved.removed}
        source = TableSource(display_path(project.partitions_file), yaml=True,
                             rows={s.name: (s.file, s.line) for s in resolved.specs},
                             removed=removed)
    secure = frozenset(name for name in resolved.values
                       if name in resolved.nvs_keys_pairs and name != "nvs")
    return PlanIntent(values_files=values_files, host_keys=host_keys, generated_csv=generated,
                      generated_table=resolved.table, secure_partitions=secure,
                      table_source=source)


def secure_boot_rules(values: Mapping[str, object]) -> str | None:
    """The ``--secure`` rules ESP-IDF's build applies to the table (gen_esp32part.py), when
    the configuration says which Secure Boot version it uses (ESP-IDF's and the shipped
    Kconfig model's always do; a guess of v1 would refuse Secure Boot V2's 4 KB apps)."""
    if not ({"SECURE_BOOT_V1_ENABLED", "SECURE_BOOT_V2_ENABLED"} & set(values)):
        return None
    return secure_boot_check({f"CONFIG_{k}": v for k, v in values.items()})


def _given_version(project: Project, idf_version: str | None) -> str | None:
    """The user's version as text when it parses (else the error comes with its place
    from :func:`_with_version`)."""
    given = idf_version if idf_version is not None else project.idf_version
    try:
        return str(parse_idf_version(given)) if given is not None else None
    except InputError:
        return None


def _with_version(config: ResolvedConfig, project: Project,
                  idf_version: str | None) -> ResolvedConfig:
    """The user's ESP-IDF version, when given: ``--idf-version`` over ``idf_version:``."""
    if idf_version is not None:
        return with_idf_version(config, idf_version, source="--idf-version")
    if project.idf_version is not None:
        line, _ = project.doc.where(("idf_version",))
        return with_idf_version(config, project.idf_version,
                                source=f"{project.doc.filename} (idf_version:)",
                                file=project.doc.filename, line=line)
    return config


def plan_project(project: Project, product: str | None = None, *,
                 sdkconfig: Path | None = None, env: Mapping[str, str] | None = None,
                 build_dir: Path | None = None, defer_unset: bool = False,
                 idf_version: str | None = None) -> ProjectPlan:
    """Resolve ``project`` for ``product`` against its sdkconfig, and plan it.

    ``defer_unset``: values from unset environment variables do not fail the plan (the
    output plan does not depend on values); building then calls
    ``resolved.check_complete()``.  ``idf_version``: the firmware's ESP-IDF as the user
    gives it (``--idf-version``), over the project's ``idf_version:`` and what
    IDF_PATH or sdkconfig say.  A value that ESP-IDF cannot read raises
    :class:`~..errors.InputError` at its place in the values file."""
    env = os.environ if env is None else env
    config = read_config(project.root, sdkconfig=sdkconfig, env=env, build_dir=build_dir,
                         idf_version=_given_version(project, idf_version))
    config = _with_version(config, project, idf_version)
    flash = config.values.get("ESPTOOLPY_FLASHSIZE")
    resolved = resolve_project(project, product, env=env,
                               table_offset=config.values.get("PARTITION_TABLE_OFFSET"),
                               flash_size=parse_flash_size(flash) if flash else None,
                               defer_unset=defer_unset, secure=secure_boot_rules(config.values))
    security = plan_from_config(config, project.root, intent=project_intent(resolved), env=env)
    warnings = check_entries_for_firmware(
        {name: list(vals.entries) for name, vals in resolved.values.items()},
        version=config.idf_version, format_versions=resolved.format_versions)
    if warnings:
        security = replace(security, diagnostics=security.diagnostics + tuple(warnings))
    return ProjectPlan(resolved, security, plan_outputs(security, resolved))


def plan_for_project(project: Project, product: str | None = None, *,
                     sdkconfig: Path | None = None, env: Mapping[str, str] | None = None,
                     build_dir: Path | None = None, defer_unset: bool = False,
                     idf_version: str | None = None) -> tuple[ResolvedProject, SecurityPlan]:
    """:func:`plan_project` as the pair (resolved project, security plan)."""
    planned = plan_project(project, product, sdkconfig=sdkconfig, env=env,
                           build_dir=build_dir, defer_unset=defer_unset,
                           idf_version=idf_version)
    return planned.resolved, planned.security

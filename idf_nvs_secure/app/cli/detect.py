"""``idf-nvs-secure detect``: print a project's NVS security plan and its diagnostics.

A thin shim over :func:`idf_nvs_secure.plan.detect_plan`.  Exit status: 0 when no
diagnostic is an error, 1 when one is, 2 for user errors (missing project directory,
unreadable sdkconfig) through the group's error mapping.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...build.artifacts import plan_for_project
from ...inputs.project import PROJECT_FILE, load_project
from ...plan.security import SecurityPlan, detect_plan

__all__ = ["commands", "detect", "format_plan"]

_KEY_SOURCES = {
    "nvs_keys_host": "nvs_keys partition written by the host",
    "nvs_keys_chip": "nvs_keys generated on the chip at first boot",
    "hmac": "derived on the chip from the HMAC eFuse key",
    "app": "supplied by the application",
}


def _hex(value: object) -> str:
    return f"{value:#x}" if isinstance(value, int) else "-"


def format_plan(plan: SecurityPlan) -> str:
    """A readable, deterministic summary of ``plan`` (what ``detect`` prints)."""
    cfg = plan.config
    files = ", ".join(cfg.get("files", ())) or "none"
    lines = [
        f"target:            {plan.target} (from {cfg.get('target_source')})",
        f"configuration:     {cfg.get('kind')} [{files}]; Kconfig model: {cfg.get('model')}",
    ]
    if plan.flash_encryption:
        lines.append(f"flash encryption:  on, {plan.flash_encryption_mode} mode ({plan.flash_encryption_key})")
    else:
        lines.append("flash encryption:  off")
    if plan.nvs_encryption:
        scheme = plan.scheme
        if scheme == "hmac":
            scheme += f" (eFuse key id {plan.hmac_efuse_key_id})"
        lines.append(f"NVS encryption:    on, key protection scheme {scheme}")
    else:
        lines.append("NVS encryption:    off")
    table = plan.partition_table
    lines.append(f"partition table:   {table.get('file') or 'unknown'} at {_hex(table.get('offset'))}; "
                 f"flash size {plan.flash_size or '-'}")
    if plan.keys_partition:
        lines.append(f"keys partition:    {plan.keys_partition}")
    lines.append("NVS partitions:" if plan.nvs_partitions else "NVS partitions:    none known")
    for part in plan.nvs_partitions:
        state = (f"encrypted, keys: {_KEY_SOURCES.get(part.key_source or '', part.key_source)}"
                 if part.encrypted else "plain text")
        values = f", values from {part.values_file}" if part.values_file else ""
        lines.append(f"  {part.name:<16} {_hex(part.offset):>10} {_hex(part.size):>10}  {state}{values}")
    lines.append("artifacts:" if plan.artifacts else "artifacts:         none")
    for art in plan.artifacts:
        where = f" -> {art.partition} @ {_hex(art.offset)}" if art.partition else ""
        lines.append(f"  {art.kind}: {art.file or '(nothing to write)'}{where}")
        lines.append(f"      {art.description}")
    if plan.diagnostics:
        lines.append("diagnostics:")
    for diag in plan.diagnostics:
        loc = f"{diag.file}:{diag.line}: " if diag.file and diag.line else f"{diag.file}: " if diag.file else ""
        lines.append(f"  {diag.severity}: [{diag.code}] {loc}{diag.message}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


@click.command("detect")
@click.argument("project_dir", required=False, default=".",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--sdkconfig", "sdkconfig", type=click.Path(dir_okay=False, path_type=Path),
              help="Read this sdkconfig (or sdkconfig.json) instead of finding one.")
@click.option("--product", help="With nvs_secure.yaml: the product to plan for.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def detect(ctx: click.Context, project_dir: Path, sdkconfig: Path | None, product: str | None,
           as_json: bool) -> None:
    """Read PROJECT_DIR's sdkconfig into an NVS security plan and check it.

    When PROJECT_DIR has an nvs_secure.yaml, the plan also knows what it says: the
    partition table it generates, which NVS partitions get values and where their keys
    come from.  Exits 1 when a diagnostic is an error.
    """
    if (project_dir / PROJECT_FILE).is_file():
        _, plan = plan_for_project(load_project(project_dir), product, sdkconfig=sdkconfig)
    else:
        plan = detect_plan(project_dir, sdkconfig=sdkconfig)
    if as_json:
        click.echo(json.dumps(plan.to_json(), indent=2))
    else:
        click.echo(format_plan(plan))
    if not plan.ok:
        ctx.exit(1)


commands = [detect]

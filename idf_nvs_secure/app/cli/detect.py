"""``idf-nvs-secure detect``: print a project's NVS security plan and its diagnostics.

A thin shim over :func:`idf_nvs_secure.plan.detect_plan`.  Exit status: 0 when no
diagnostic is an error, 1 when one is, 2 for user errors (missing project directory,
unreadable sdkconfig) through the group's error mapping.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...plan.outputs import plan_outputs
from ...views.text import format_plan
from ...plan.project_plan import plan_project
from ...inputs.project import PROJECT_FILE, load_project
from ...plan.security import detect_plan
from .params import IDF_VERSION

__all__ = ["commands", "detect", "format_plan"]



@click.command("detect")
@click.argument("project_dir", required=False, default=".",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--sdkconfig", "sdkconfig", type=click.Path(dir_okay=False, path_type=Path),
              help="Read this sdkconfig (or sdkconfig.json) instead of finding one.")
@click.option("--product", help="With nvs_secure.yaml: the product to plan for.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@IDF_VERSION
@click.pass_context
def detect(ctx: click.Context, project_dir: Path, sdkconfig: Path | None, product: str | None,
           as_json: bool, idf_version: str | None) -> None:
    """Read PROJECT_DIR's sdkconfig into an NVS security plan and check it.

    When PROJECT_DIR has an nvs_secure.yaml, the plan also knows what it says: the
    partition table it generates, which NVS partitions get values and where their keys
    come from.  Exits 1 when a diagnostic is an error.
    """
    if (project_dir / PROJECT_FILE).is_file():
        planned = plan_project(load_project(project_dir), product, sdkconfig=sdkconfig,
                               defer_unset=True, idf_version=idf_version)
        plan, outputs = planned.security, planned.outputs
        for note in planned.resolved.unset_notes:
            click.echo(f"note: {note}", err=True)
    else:
        plan = detect_plan(project_dir, sdkconfig=sdkconfig, idf_version=idf_version)
        outputs = plan_outputs(plan, None)
    if as_json:
        click.echo(json.dumps({**plan.to_json(), "outputs": outputs.to_json()}, indent=2))
    else:
        click.echo(format_plan(plan, outputs))
    if not plan.ok:
        ctx.exit(1)


commands = [detect]

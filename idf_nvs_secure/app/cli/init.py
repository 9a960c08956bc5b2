"""``idf-nvs-secure init``: write nvs_secure.yaml, partitions.yaml and a values file for
an existing ESP-IDF project.  A thin shim over :func:`~...plan.project_init.plan_project_init`."""

from __future__ import annotations

from pathlib import Path

import click

from ...errors import InputError
from ...fsutil import display_path, write_atomic
from ...plan.project_init import plan_project_init


@click.command("init", short_help="Start a project file from a partitions CSV.")
@click.argument("project_dir", required=False, default=".",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--sdkconfig", type=click.Path(dir_okay=False, path_type=Path),
              help="Read this sdkconfig instead of finding one (sdkconfig, else "
                   "sdkconfig.defaults).")
@click.option("--values", "values_csv", type=click.Path(dir_okay=False, path_type=Path),
              help="An nvs_partition_gen.py values CSV to convert into the values file.")
@click.option("--partition", help="The NVS partition the values are for (default: nvs).")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
def init_cmd(project_dir: Path, sdkconfig: Path | None, values_csv: Path | None,
             partition: str | None, force: bool) -> None:
    """Write nvs_secure.yaml, partitions.yaml and nvs_values.yaml for the ESP-IDF
    project in PROJECT_DIR, from the partitions CSV its sdkconfig names (the table
    offset and flash size too) and, with --values, an NVS values CSV.

    Existing files are never replaced without --force; nothing is written when one is
    in the way.  'detect' and 'build' work on the result right away."""
    import os

    planned = plan_project_init(project_dir, sdkconfig=sdkconfig, values_csv=values_csv,
                                partition=partition, env=os.environ)
    targets = [(project_dir / name, text) for name, text in planned.files.items()]
    if not force:
        for path, _ in targets:
            if path.exists():
                raise InputError("already exists; init does not replace it",
                                 file=display_path(path),
                                 hint="pass --force to replace the files init writes")
    for path, text in targets:
        write_atomic(path, text.encode("utf-8"))
        click.echo(f"wrote {display_path(path)}")
    for note in planned.notes:
        click.echo(f"note: {note}" if not note.startswith("to do:") else note)
    click.echo(f"next: idf-nvs-secure detect {display_path(project_dir)}")


commands = [init_cmd]

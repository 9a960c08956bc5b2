"""``idf-nvs-secure partitions``: build and show ESP-IDF partition tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from ...errors import NvsSecureError
from ...formats.partition_table import (
    DEFAULT_TABLE_OFFSET,
    PARTITION_TABLE_TYPE,
    SECURE_BOOT_V1,
    SECURE_BOOT_VERSIONS,
    PartitionTable,
    build_partition_table,
    find_name_warnings,
    format_size,
    has_md5_entry,
    parse_flash_size,
    parse_partition_table,
    validate_partition_table,
)
from ...fsutil import read_input_bytes, read_input_text, write_atomic
from ...inputs.partition_csv import (
    PartitionSpec,
    format_partition_csv,
    specs_from_table,
    partition_spec_reader,
    place_partitions,
)
from ...inputs.partitions_yaml import (
    PartitionsFile,
    format_partitions_yaml,
    read_partition_source,
)
from ...inputs.schemas import schema_comment
from .params import AnyInt


def _location_options(default_offset: int | None):
    def decorate(command):
        for option in reversed([
            click.option("--offset", "--table-offset", "offset", type=AnyInt(),
                         default=default_offset,
                         help="Flash offset of the table (CONFIG_PARTITION_TABLE_OFFSET); "
                              f"default {'0x8000' if default_offset else '0x8000, or from a .bin'}."),
            click.option("--flash-size", help="Check that the partitions fit, e.g. 4MB."),
            click.option("--primary-bootloader-offset", type=AnyInt(),
                         help="CONFIG_BOOTLOADER_OFFSET_IN_FLASH, for bootloader entries."),
            click.option("--recovery-bootloader-offset", type=AnyInt(),
                         help="CONFIG_BOOTLOADER_RECOVERY_OFFSET, for a recovery bootloader."),
            click.option("--secure", type=click.Choice(SECURE_BOOT_VERSIONS), is_flag=False,
                         flag_value=SECURE_BOOT_V1, default=None,
                         help="Check app partitions for Secure Boot, as gen_esp32part.py "
                              "--secure: v1 needs app sizes in 64 KB, v2 in 4 KB; "
                              "--secure alone means v1."),
        ]):
            command = option(command)
        return command
    return decorate


def _load(path: Path, offset: int | None, flash_size: str | None,
          primary_bootloader_offset: int | None,
          recovery_bootloader_offset: int | None, secure: str | None = None, *,
          allow_bin: bool) -> tuple[PartitionTable, Sequence[PartitionSpec]]:
    """Read a partition source (.csv, ...) or, when ``allow_bin``, a built table (no specs)."""
    size = parse_flash_size(flash_size) if flash_size else None
    if allow_bin and path.suffix.lower() == ".bin":
        try:
            table = parse_partition_table(read_input_bytes(path), offset=offset)
            validate_partition_table(table, flash_size=size, secure=secure)
        except NvsSecureError as exc:
            raise exc.located(file=str(path)) from None
        return table, ()
    reader = partition_spec_reader(str(path))  # before reading: a .bin is not text
    if path.suffix.lower() in (".yaml", ".yml"):  # the file may carry offset and flash size
        parsed = read_partition_source(read_input_text(path), str(path), table_offset=offset,
                                       flash_size=size, secure=secure,
                                       primary_bootloader_offset=primary_bootloader_offset,
                                       recovery_bootloader_offset=recovery_bootloader_offset)
        return parsed.table, parsed.specs
    specs = reader(read_input_text(path), filename=str(path))
    table = place_partitions(specs, table_offset=DEFAULT_TABLE_OFFSET if offset is None else offset,
                             flash_size=size, primary_bootloader_offset=primary_bootloader_offset,
                             recovery_bootloader_offset=recovery_bootloader_offset,
                             secure=secure)
    return table, specs


def _warn_names(path: Path, table: PartitionTable, specs: Sequence[PartitionSpec]) -> None:
    """Print gen_esp32part.py's name-looks-like-a-type warnings, located at the rows."""
    for warning in find_name_warnings(table):
        line = specs[warning.index].line if warning.index < len(specs) else None
        where = f"{specs[warning.index].file or path}:{line}" if line else str(path)
        click.echo(f"warning: {where}: {warning.message}", err=True)


@click.group("partitions")
def partitions_group() -> None:
    """Build and inspect ESP-IDF partition tables (gen_esp32part.py compatible)."""


@partitions_group.command("build", short_help="Build a binary partition table.")
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Binary partition table to write (0xC00 bytes).")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path),
              help="Also write the canonical CSV (as gen_esp32part.py writes it from the .bin).")
@click.option("--no-md5", is_flag=True, help="Leave out the MD5 entry (CONFIG_PARTITION_TABLE_MD5=n).")
@_location_options(None)
def build_cmd(source: Path, output: Path, csv_out: Path | None, no_md5: bool, offset: int | None,
              flash_size: str | None, primary_bootloader_offset: int | None,
              recovery_bootloader_offset: int | None, secure: str | None) -> None:
    """Build the binary partition table from INPUT (.csv or .yaml), byte-exact with ESP-IDF.

    Nothing is written unless the whole table is valid.  A partition named like a type
    or subtype it is not (gen_esp32part.py's "Mistake in partition table?") is a warning.
    """
    table, specs = _load(source, offset, flash_size, primary_bootloader_offset,
                         recovery_bootloader_offset, secure, allow_bin=False)
    try:
        blob = build_partition_table(table, md5=not no_md5)
    except NvsSecureError as exc:
        raise exc.located(file=str(source)) from None
    _warn_names(source, table, specs)
    write_atomic(output, blob)
    if csv_out is not None:
        write_atomic(csv_out, format_partition_csv(table).encode("utf-8"))
    click.echo(f"wrote {output} ({len(table.partitions)} partitions, table at 0x{table.offset:x})")


def _as_json(table: PartitionTable) -> dict:
    return {"table_offset": table.offset,
            "partitions": [{"name": p.name, "type": p.type_name, "subtype": p.subtype_name,
                            "offset": p.offset, "size": p.size, "flags": list(p.flags)}
                           for p in table.partitions]}


def _as_text(table: PartitionTable) -> str:
    header = ("Name", "Type", "SubType", "Offset", "Size", "", "Flags")
    rows = [header] + [(p.name, str(p.type_name), str(p.subtype_name), f"0x{p.offset:x}",
                        f"0x{p.size:x}", f"({format_size(p.size)})", ":".join(p.flags))
                       for p in table.partitions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"Partition table at 0x{table.offset:x}, {len(table.partitions)} partitions, "
             f"ending at 0x{table.end:x}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
              for row in rows]
    return "\n".join(lines)


@partitions_group.command("show", short_help="Show a partition table (and draw it).")
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"table_offset": int, "partitions": [{"name": str, "type": '
                   'str|int, "subtype": str|int, "offset": int, "size": int, "flags": [str]}]}; '
                   "type and subtype are names where ESP-IDF has one, else numbers; offset and "
                   "size in bytes; flags from encrypted, readonly.")
@click.option("--svg", "svg_out", type=click.Path(path_type=Path),
              help="Also draw the flash map to scale as an SVG file.")
@click.option("--product", help="With a project folder: the product whose table to show "
                                "(default: default_product).")
@_location_options(None)
def show_cmd(source: Path, as_json: bool, offset: int | None, flash_size: str | None,
             primary_bootloader_offset: int | None, recovery_bootloader_offset: int | None,
             secure: str | None = None, svg_out: Path | None = None,
             product: str | None = None) -> None:
    """Show the partitions of INPUT: a source (.csv, .yaml) placed as for a build, a
    built .bin, or a project folder (nvs_secure.yaml) for one --product.

    Errors and warnings in INPUT are reported as for a build; --flash-size also checks
    the fit.  A built .bin does not record its own flash offset: give --table-offset
    (the map is drawn at 0x8000, ESP-IDF's default, otherwise).
    """
    size = parse_flash_size(flash_size) if flash_size else None
    title, planned = source.name, None
    if source.is_dir():
        planned, table, specs, size, title = _project_table(source, product, offset, size)
    elif product is not None:
        raise NvsSecureError("--product needs a project folder (with nvs_secure.yaml), "
                             "not a partitions file", file=str(source),
                             hint=f"idf-nvs-secure partitions show PROJECT_DIR --product "
                                  f"{product}")
    else:
        table, specs = _load(source, offset, flash_size, primary_bootloader_offset,
                             recovery_bootloader_offset, secure, allow_bin=True)
        if source.suffix.lower() == ".bin" and offset is None and not any(
                p.type == PARTITION_TABLE_TYPE for p in table.partitions):
            click.echo(f"note: {source} does not record the flash offset it is written at: "
                       f"shown at 0x{table.offset:x} (CONFIG_PARTITION_TABLE_OFFSET's "
                       f"default); give --table-offset for another", err=True)
    _warn_names(source, table, specs)
    click.echo(json.dumps(_as_json(table), indent=2) if as_json else _as_text(table))
    if svg_out is not None:
        from ...views.flashmap import layout_flash_map, render_flash_map_svg

        if planned is not None:  # a project: mark what its plan encrypts
            from ...views.report import layout_project_flash_map

            flash_map = layout_project_flash_map(planned.resolved, planned.security,
                                                 table=table, flash_size=size,
                                                 title=f"Flash map: {title}")
        else:
            flash_map = layout_flash_map(table, flash_size=size, title=f"Flash map: {title}")
        write_atomic(svg_out, render_flash_map_svg(flash_map).encode("utf-8"))


def _project_table(project_dir: Path, product: str | None, offset: int | None,
                   flash_size: int | None):
    """A project's table for ``product`` as its build places it (sdkconfig's offset and
    flash size, unless given): (project plan, table, specs, flash size, title)."""
    from ...inputs.project import PROJECT_FILE, load_project
    from ...plan.project_plan import plan_project

    if not (project_dir / PROJECT_FILE).is_file():
        raise NvsSecureError(f"a folder without {PROJECT_FILE}", file=str(project_dir),
                             hint="give a partitions file (.csv, .yaml), a built table "
                                  f"(.bin) or a project folder with {PROJECT_FILE}")
    planned = plan_project(load_project(project_dir), product, defer_unset=True)
    resolved = planned.resolved
    table = resolved.table
    if offset is not None and offset != table.offset:
        table = place_partitions(list(resolved.specs), table_offset=offset,
                                 flash_size=flash_size or resolved.flash_size)
    label = f" ({resolved.product})" if resolved.product else ""
    return (planned, table, resolved.specs, flash_size or resolved.flash_size,
            f"{resolved.project.root.name}{label}")


@partitions_group.command("convert", short_help="Convert between CSV, YAML and a built table.")
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="partitions.yaml or .csv to write (the other kind than INPUT).")
@click.option("--offset", "--table-offset", "offset", type=AnyInt(), default=None,
              help="Table offset to record (CSV to YAML), or where a .bin sits in flash "
                   "(it does not record it); default 0x8000.")
@click.option("--flash-size", help="Flash size to record in the YAML, e.g. 4MB.")
def convert_cmd(source: Path, output: Path, offset: int | None, flash_size: str | None) -> None:
    """Convert between an ESP-IDF partitions CSV, partitions.yaml and a built table .bin.

    CSV to YAML keeps the rows as written (offsets left empty stay automatic); YAML to
    CSV writes the placed table as gen_esp32part.py would.  A .bin becomes the CSV that
    gen_esp32part.py writes for it, or a YAML with every offset explicit.  Each output
    builds back to the same binary.
    """
    size = parse_flash_size(flash_size) if flash_size else None
    if source.suffix.lower() == ".bin":
        parsed = _read_built_table(source, offset, size)
    else:
        parsed = read_partition_source(read_input_text(source), str(source),
                                       table_offset=offset, flash_size=size)
    if output.suffix.lower() in (".yaml", ".yml"):
        text = format_partitions_yaml(
            parsed.specs, table_offset=parsed.table.offset, flash_size=parsed.flash_size,
            nvs_keys_for=parsed.nvs_keys_for,
            schema_line=schema_comment("partitions"))
    elif output.suffix.lower() == ".csv":
        text = format_partition_csv(parsed.table)
    else:
        raise NvsSecureError("output must end in .yaml, .yml or .csv", file=str(output))
    write_atomic(output, text.encode("utf-8"))
    click.echo(f"wrote {output} ({len(parsed.table.partitions)} partitions)")
    if source.suffix.lower() == ".bin" and not has_md5_entry(read_input_bytes(source)):
        click.echo(f"note: {source} has no MD5 entry: build it back with --no-md5", err=True)


def _read_built_table(path: Path, offset: int | None, flash_size: int | None) -> PartitionsFile:
    """A built table as a partitions file whose specs repeat every offset and size."""
    try:
        table = parse_partition_table(read_input_bytes(path), offset=offset)
        validate_partition_table(table, flash_size=flash_size)
    except NvsSecureError as exc:
        raise exc.located(file=str(path)) from None
    return PartitionsFile(table, tuple(specs_from_table(table)), flash_size, {}, table.offset)


commands = [partitions_group]

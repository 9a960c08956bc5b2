"""``idf-nvs-secure nvs``: build and dump NVS partition images (plain or encrypted)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ...errors import InputError
from ...formats.nvs_image import (
    MIN_READ_WRITE_SIZE,
    PAGE_SIZE,
    NvsEntry,
    build_nvs_image,
)
from ...fsutil import read_input_text, write_atomic
from ...inputs.nvs_csv import parse_nvs_csv
from .params import IDF_VERSION, load_keys


def _size(text: str) -> int:
    try:
        from ...inputs.partition_csv import parse_size

        return parse_size(text)
    except InputError as exc:
        raise InputError(f"--size: {exc.message}", hint=exc.hint) from None


#: nvs subcommands that read images (cli/inspect.py): loaded only when one runs, so
#: `nvs build` loads no reader or inspection code.
_READERS = {"check": "check_cmd", "diff": "diff_cmd", "dump": "dump_cmd"}


class _NvsGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_READERS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _READERS:
            from . import inspect

            return getattr(inspect, _READERS[name])
        return super().get_command(ctx, name)


@click.group("nvs", cls=_NvsGroup)
def nvs_group() -> None:
    """Build and inspect NVS partition images (ESP-IDF nvs_partition_gen.py compatible)."""


@nvs_group.command("build", short_help="Build an NVS image from values files.")
@click.argument("values", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--size", "size_text", required=True,
              help="Partition size in bytes: decimal, 0x hex, or with K/M (0x6000, 24K).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Image file to write.")
@click.option("--keys", "keys_path", type=click.Path(path_type=Path),
              help="nvs_keys partition image: encrypt the entries with its keys.")
@click.option("--format-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="NVS format: 2 = multi-page blobs (ESP-IDF >= v3.2), 1 = single-page blobs.")
@IDF_VERSION
def build_cmd(values: tuple[Path, ...], size_text: str, output: Path, keys_path: Path | None,
              format_version: str, idf_version: str | None) -> None:
    """Build an NVS partition image from VALUES (values YAML, or nvs_partition_gen.py CSV).

    With several VALUES files each applies over the ones before: a key given again
    replaces the earlier value (in its place), a later YAML may remove keys with null.
    Values the firmware's ESP-IDF (--idf-version, else IDF_PATH's) cannot read are refused.
    """
    size = _size(size_text)
    keys = load_keys(keys_path)
    from ...config.idf_versions import parse_idf_version, version_from_idf_path
    from ...inputs.nvs_values import load_values_files  # YAML readers only when needed
    from ...plan.firmware import check_entries_for_firmware

    entries = load_values_files(values, env=os.environ).entries
    if idf_version is not None:
        idf_version = str(parse_idf_version(idf_version))
    elif os.environ.get("IDF_PATH"):
        found = version_from_idf_path(Path(os.environ["IDF_PATH"]))
        idf_version = str(found) if found else None
    for warning in check_entries_for_firmware({"": entries}, version=idf_version,
                                              format_versions={"": int(format_version)}):
        click.echo(f"warning: {warning.file}:{warning.line}: {warning.message}", err=True)
    image = build_nvs_image(entries, size, version=int(format_version), keys=keys)
    write_atomic(output, image)
    pages = size // PAGE_SIZE
    used = sum(1 for page in range(len(image) // PAGE_SIZE)
               if image[page * PAGE_SIZE: page * PAGE_SIZE + 4] != b"\xff\xff\xff\xff")
    how = f"encrypted with keys {keys.fingerprint}" if keys is not None else "not encrypted"
    layout = (f" (read-only NVS, under 0x3000 bytes: only the pages used are written, "
              f"{len(image)} bytes, as nvs_partition_gen.py does)"
              if size < MIN_READ_WRITE_SIZE else "")
    sources = f" from {len(values)} values files" if len(values) > 1 else ""
    click.echo(f"wrote {output}: {len(entries)} entries{sources}, {used} of {pages} pages "
               f"used{layout}, format version {format_version}, {how}")


@nvs_group.command("convert", short_help="Convert NVS values CSV to values YAML.")
@click.argument("source", metavar="VALUES.csv", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Values YAML to write.")
def convert_cmd(source: Path, output: Path) -> None:
    """Convert nvs_partition_gen.py CSV values into a values YAML file.

    Entries keep their order and types; 'file' rows stay file references (resolved
    relative to the new YAML file), so 'nvs build' gives the same image from both.
    """
    from ...plan.project_init import csv_file_references

    text = read_input_text(source)
    entries = parse_nvs_csv(text, filename=str(source), base_dir=source.parent)
    namespaces: dict[str, dict[str, NvsEntry]] = {}
    for entry in entries:
        namespaces.setdefault(entry.namespace, {})[entry.key] = entry
    refs = {k: os.path.relpath(source.parent / path, output.parent or Path("."))
            for k, path in csv_file_references(text).items()}
    from ...inputs.nvs_yaml import format_nvs_values_yaml
    from ...inputs.schemas import schema_comment

    yaml_text = format_nvs_values_yaml(
        namespaces, files=refs,
        schema_line=schema_comment("nvs_values"))
    write_atomic(output, yaml_text.encode("utf-8"))
    click.echo(f"wrote {output} ({len(entries)} entries in {len(namespaces)} namespaces)")


commands = [nvs_group]

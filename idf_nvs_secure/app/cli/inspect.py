"""``nvs check``, ``nvs diff`` (added to the ``nvs`` group) and ``report``: thin shims over
:mod:`idf_nvs_secure.inspect` and :mod:`idf_nvs_secure.report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ...errors import InputError, KeyMaterialError, NvsSecureError
from ...formats.nvs_keys import NvsKeys
from ...formats.nvs_reader import NvsImage, image_to_json, parse_nvs_image
from ...formats.partition_table import DEFAULT_TABLE_OFFSET
from ...fsutil import read_input_bytes
from ...views.inspect import (
    check_nvs_image,
    diff_nvs_images,
    diff_to_json,
    dump_tree,
    format_value,
    keys_from_flash,
    locate_in_flash,
)
from .params import AnyInt, load_keys


def flash_options(command):
    """``--flash FULL.bin [--table-offset N] [--partition NAME]``, shared by dump and check."""
    for option in reversed([
        click.option("--flash", "flash", type=click.Path(path_type=Path),
                     help="Read the NVS partition out of a whole flash dump instead of IMAGE."),
        click.option("--table-offset", type=AnyInt(), default=f"0x{DEFAULT_TABLE_OFFSET:x}",
                     show_default=True, help="Flash offset of the partition table in the dump."),
        click.option("--partition", "partition_name",
                     help="NVS partition to read from the dump (default: nvs, or the only one)."),
    ]):
        command = option(command)
    return command


def read_nvs_input(image: Path | None, keys_path: Path | None, flash: Path | None,
                   table_offset: int, partition_name: str | None) -> tuple[str, bytes, NvsKeys | None]:
    """(label, image bytes, keys) from IMAGE or --flash; with --flash and no --keys, the
    dump's nvs_keys partition is used when it is readable (a note says why when not)."""
    keys = load_keys(keys_path)
    if flash is None:
        if image is None:
            raise InputError("give an NVS IMAGE or --flash FULL.bin")
        return str(image), read_input_bytes(image), keys
    if image is not None:
        raise InputError("give either an NVS IMAGE or --flash, not both")
    try:
        found = locate_in_flash(read_input_bytes(flash), table_offset=table_offset,
                                partition=partition_name)
    except NvsSecureError as exc:
        raise exc.located(file=str(flash)) from None
    part = found.partition
    label = f"{flash} [{part.name} at 0x{part.offset:x}, {part.size:#x} bytes]"
    if keys is None and found.keys_partition is not None:
        try:
            keys = keys_from_flash(found)
            click.echo(f"note: using the keys in partition {found.keys_partition.name!r} "
                       f"({keys.fingerprint})", err=True)
        except KeyMaterialError as exc:
            click.echo(f"note: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
    return label, found.data, keys


@click.command("check", short_help="Check an NVS image for damage; exit 1 if any.")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--keys", "keys_path", type=click.Path(path_type=Path),
              help="nvs_keys partition image to decrypt an encrypted IMAGE.")
@flash_options
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"image": str, "ok": bool, "encrypted": bool, '
                   '"wrong_key": bool, "entries": int, "namespaces": int, "pages": int, '
                   '"problems": [{"code": str, "message": str, "page": int|null, '
                   '"entry": int|null}]}; the exit status is as without --json.')
@click.pass_context
def check_cmd(ctx: click.Context, image: Path | None, keys_path: Path | None, flash: Path | None,
              table_offset: int, partition_name: str | None, as_json: bool = False) -> None:
    """Check an NVS image: page headers, entry CRCs, bitmap, blobs, duplicate keys.

    Prints each problem with its page and entry number; exits 0 when the image is
    clean, 1 when it is not.
    """
    label, data, keys = read_nvs_input(image, keys_path, flash, table_offset, partition_name)
    try:
        result = check_nvs_image(data, keys=keys)
    except NvsSecureError as exc:
        raise exc.located(file=label) from None
    if as_json:
        img = result.image
        click.echo(json.dumps({
            "image": label, "ok": result.ok, "encrypted": bool(img.encrypted),
            "wrong_key": bool(result.wrong_key), "entries": len(img.entries),
            "namespaces": len(img.namespaces), "pages": len(img.pages),
            "problems": [{"code": p.code, "message": p.message, "page": p.page,
                          "entry": p.entry} for p in result.problems]}, indent=2))
        if not result.ok:
            ctx.exit(1)
        return
    if result.ok:
        img = result.image
        click.echo(f"{label}: ok: {len(img.entries)} entries in {len(img.namespaces)} "
                   f"namespaces, {len(img.pages)} pages"
                   + (", encrypted" if img.encrypted else ""))
        return
    for problem in result.problems:
        click.echo(f"{label}: {problem} [{problem.code}]")
    if result.wrong_key:
        click.echo(f"{label}: wrong key: the keys given do not decrypt this image", err=True)
    click.echo(f"{label}: {len(result.problems)} problem(s)", err=True)
    ctx.exit(1)


def _read_for_diff(path: Path, keys: NvsKeys | None) -> NvsImage:
    try:
        image = parse_nvs_image(read_input_bytes(path), keys=keys)
    except NvsSecureError as exc:
        raise exc.located(file=str(path)) from None
    if image.wrong_key:
        raise KeyMaterialError("wrong key: the keys given do not decrypt this image",
                               file=str(path))
    if image.looks_encrypted:
        raise KeyMaterialError("the image looks encrypted", file=str(path),
                               hint="give its keys with --keys (and --keys-b for the second)")
    return image


def _pair(pair) -> str:
    return "-" if pair is None else f"{pair[0]} {format_value(*pair)}"


@click.command("diff", short_help="Compare the values of two NVS images.")
@click.argument("image_a", metavar="A.bin", type=click.Path(path_type=Path))
@click.argument("image_b", metavar="B.bin", type=click.Path(path_type=Path))
@click.option("--keys", "keys_path", type=click.Path(path_type=Path),
              help="nvs_keys for A (and for B unless --keys-b is given).")
@click.option("--keys-b", "keys_b_path", type=click.Path(path_type=Path), help="nvs_keys for B.")
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: [{"change": "added"|"removed"|"changed"|"type-changed", '
                   '"namespace", "key", "old": {"type", "value"}|null, "new": ...}]; '
                   "blobs as hex.")
@click.pass_context
def diff_cmd(ctx: click.Context, image_a: Path, image_b: Path, keys_path: Path | None,
             keys_b_path: Path | None, as_json: bool) -> None:
    """Compare the values of two NVS images; exit 0 when equal, 1 when different."""
    keys_a = load_keys(keys_path)
    keys_b = load_keys(keys_b_path) if keys_b_path is not None else keys_a
    changes = diff_nvs_images(_read_for_diff(image_a, keys_a), _read_for_diff(image_b, keys_b))
    if as_json:
        click.echo(json.dumps(diff_to_json(changes), indent=2))
    else:
        marks = {"added": "+", "removed": "-", "changed": "~", "type-changed": "!"}
        for change in changes:
            click.echo(f"{marks[change.kind]} {change.namespace}/{change.key}: "
                       f"{_pair(change.old)} -> {_pair(change.new)}  ({change.kind})")
        click.echo(f"{len(changes)} difference(s)" if changes else "no differences")
    if changes:
        ctx.exit(1)


def _decryption(image: NvsImage) -> str:
    """How the entries were read, for the header: never "decrypted" when nothing was."""
    if image.wrong_key:
        return "NOT decrypted: wrong key (no entry decrypts with the keys given)"
    if image.looks_encrypted:
        return "NOT decrypted: looks encrypted (no keys given)"
    return "decrypted" if image.encrypted else "plain"


def _header(image: NvsImage, name: str) -> str:
    """The first line of ``nvs dump``: pages, format version, how it was read."""
    in_use = sum(1 for p in image.pages if p.state != "UNINITIALIZED")
    version = f", format version {image.version}" if image.version else ""
    return f"{name}: {len(image.pages)} pages ({in_use} in use){version}, {_decryption(image)}"


def echo_tree(image: NvsImage, title: str, *, pages: bool) -> None:
    """Print a dump tree: rich.tree on a terminal, plain indented text otherwise."""
    tree = dump_tree(image, title=title, pages=pages)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.tree import Tree

        def build(node, parent):
            for child in node.children:
                build(child, parent.add(escape(child.label)))

        rich_tree = Tree(escape(tree.label))
        build(tree, rich_tree)
        Console().print(rich_tree)
    else:
        click.echo("\n".join(tree.lines()))



@click.command("dump", short_help="Show the entries of an NVS image as a tree.")
@click.argument("image_path", metavar="IMAGE", required=False, type=click.Path(path_type=Path))
@click.option("--keys", "keys_path", type=click.Path(path_type=Path),
              help="nvs_keys partition image to decrypt the entries with.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {namespace: {key: {"type": ..., "value": ...}}} (blobs as hex); '
                   'when nothing could be decrypted (wrong or missing keys), '
                   '{"decrypted": false, "problem": {"code": ..., "message": ...}} and exit 1.')
@click.option("--pages", is_flag=True,
              help="Also show each page: state, sequence number, used/erased/free entries.")
@flash_options
@click.pass_context
def dump_cmd(ctx: click.Context, image_path: Path | None, keys_path: Path | None,
             as_json: bool, pages: bool, flash: Path | None, table_offset: int,
             partition_name: str | None) -> None:
    """Show the entries of an NVS image as a tree; problems go to stderr (exit 1 if any)."""
    label, data, keys = read_nvs_input(image_path, keys_path, flash, table_offset,
                                       partition_name)
    try:
        image = parse_nvs_image(data, keys=keys)
    except NvsSecureError as exc:
        raise exc.located(label) from None
    if as_json:
        click.echo(json.dumps(_dump_json(image), indent=2, ensure_ascii=False))
    else:
        echo_tree(image, _header(image, label), pages=pages)
    for problem in image.problems:
        click.echo(f"problem: {label}: {problem}", err=True)
    if image.problems:
        ctx.exit(1)


def _dump_json(image: NvsImage) -> dict:
    """The entries as image_to_json gives them; when no entry could be read (wrong keys,
    or an encrypted image without keys) a ``"decrypted": false`` object naming the
    problem, never an empty mapping that looks like an empty image."""
    if image.wrong_key or image.looks_encrypted:
        code = "wrong-key" if image.wrong_key else "looks-encrypted"
        problem = next(p for p in image.problems if p.code == code)
        return {"decrypted": False, "problem": {"code": code, "message": problem.message}}
    return image_to_json(image)





@click.command("report", short_help="Write an HTML report of a project.")
@click.argument("project_dir", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--product", help="Product from nvs_secure.yaml (default: default_product).")
@click.option("--sdkconfig", type=click.Path(path_type=Path), help="Use this sdkconfig.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="HTML file to write (self-contained: no network resources).")
@click.option("--show-secrets", is_flag=True,
              help="Show secret values (secret: true and env-sourced) instead of masking them.")
def report_cmd(project_dir: Path, product: str | None, sdkconfig: Path | None, output: Path,
               show_secrets: bool) -> None:
    """Write one HTML page with the security plan, diagnostics, flash map and each NVS
    partition's values and fill level."""
    from ...build.artifacts import plan_for_project
    from ...fsutil import write_atomic
    from ...inputs.project import load_project
    from ...views.report import build_report, render_report_html

    resolved, plan = plan_for_project(load_project(project_dir), product, sdkconfig=sdkconfig,
                                      defer_unset=True)
    for note in resolved.unset_notes:
        click.echo(f"note: {note}", err=True)
    page = render_report_html(build_report(resolved, plan, show_secrets=show_secrets))
    write_atomic(output, page.encode("utf-8"))
    click.echo(f"wrote {output}")


commands = [report_cmd]

"""``idf-nvs-secure build`` and ``config show``: a whole project, per product."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import click

from ...build.artifacts import build_outputs
from ...plan.project_plan import plan_project
from .outputs import output_set_manifest, write_build
from .params import IDF_VERSION, MASTER_SECRET_FILE, master_secret_from_file
from ...inputs.project import load_project, resolve_project, unset_text

PROJECT_DIR = click.argument("project_dir", required=False, default=".",
                             type=click.Path(path_type=Path))
PRODUCT = click.option("--product", help="Product from nvs_secure.yaml (default: "
                       "default_product).")


def _describe_value(entry, secret: bool, show_secrets: bool, unset: str | None) -> object:
    if unset is not None:
        return unset_text(unset)
    if secret and not show_secrets:
        return "****"
    if isinstance(entry.value, (bytes, bytearray)):
        return {"hex": bytes(entry.value).hex()} if len(entry.value) <= 32 else {
            "bytes": len(entry.value), "sha256": hashlib.sha256(entry.value).hexdigest()}
    return entry.value


def _value_text(value: object) -> str:
    """A described value as text: blobs as hex, or their size and SHA-256 when long."""
    if isinstance(value, dict) and "hex" in value:
        return value["hex"] or "(empty)"
    if isinstance(value, dict):
        return f"{value['bytes']} bytes, sha256 {value['sha256'][:16]}..."
    return str(value)


@click.command("build", short_help="Build a product's table, NVS images and keys.")
@PROJECT_DIR
@PRODUCT
@click.option("-o", "--out-dir", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: build/nvs_secure/<product>).")
@click.option("--sdkconfig", type=click.Path(path_type=Path), help="Use this sdkconfig.")
@click.option("--keystore", type=click.Path(path_type=Path), default=None,
              help="Where keys of source 'generate' are kept (default: <out-dir>/../keys).")
@MASTER_SECRET_FILE
@click.option("--force", is_flag=True,
              help="Replace key files of an earlier build even when the keys change.")
@IDF_VERSION
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: {"format": "idf-nvs-secure-build/1", "product": str|null, '
                   '"out_dir": str, "reproducible": bool, "master_secret": fingerprint|null, '
                   '"files": [{"path", "kind", "partition", "offset", "size", '
                   '"flash_encrypted", "key_source", "sha256" (or "fingerprint" for keys)}], '
                   '"notes": [str], "diagnostics": [{"severity", "code", "message", "file"?, '
                   '"line"?}]}; offset and size in bytes.')
def build_cmd(project_dir: Path, product: str | None, out_dir: Path | None,
              sdkconfig: Path | None, keystore: Path | None, master_secret_file: Path | None,
              force: bool, idf_version: str | None, as_json: bool) -> None:
    """Build the partition table, NVS images and keys of a project's product.

    The files are written as one set (all or none), exactly those 'detect' announces."""
    planned = plan_project(load_project(project_dir), product, sdkconfig=sdkconfig,
                           idf_version=idf_version)
    for d in planned.security.diagnostics:
        click.echo(f"{d.severity}: {d.located}", err=True)
    if not planned.security.ok:
        raise click.exceptions.Exit(1)
    out_dir = out_dir or planned.resolved.project.root / "build" / "nvs_secure" / \
        planned.outputs.label
    build = build_outputs(planned, keystore=keystore or out_dir.parent / "keys",
                          master_secret=master_secret_from_file(master_secret_file))
    for note in build.notes:
        click.echo(f"note: {note}", err=True)
    write_build(out_dir, build, force=force)
    if as_json:
        manifest = json.loads(output_set_manifest(build))
        click.echo(json.dumps({
            "format": "idf-nvs-secure-build/1", "product": manifest["product"],
            "out_dir": str(out_dir), "reproducible": manifest["reproducible"],
            "master_secret": manifest["master_secret"],
            "files": [{**item, "flash_encrypted": a.flash_encrypted}
                      for item, a in zip(manifest["files"], build.artifacts)],
            "notes": list(build.notes),
            "diagnostics": [d.to_json() for d in planned.security.diagnostics]}, indent=2))
        return
    for artifact in build.artifacts:
        where = f" at 0x{artifact.offset:x}" if artifact.offset is not None else ""
        note = f" ({artifact.note})" if artifact.note else ""
        click.echo(f"wrote {out_dir / artifact.name}: {artifact.kind.label}{where}{note}")


@click.group("config")
def config_group() -> None:
    """Inspect the project file."""


@config_group.command("show", short_help="Print the resolved configuration.")
@PROJECT_DIR
@PRODUCT
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show-secrets", is_flag=True, help="Do not mask secret values.")
def config_show_cmd(project_dir: Path, product: str | None, as_json: bool,
                    show_secrets: bool) -> None:
    """Print the merged, resolved configuration (secrets masked)."""
    project = load_project(project_dir)
    resolved = resolve_project(project, product, defer_unset=True)
    for note in resolved.unset_notes:
        click.echo(f"note: {note}", err=True)

    def rel(p: Path) -> str:
        return os.path.relpath(p, project.root)

    data = {
        "project": rel(project.file),
        "product": resolved.product,
        "products": list(project.products),
        "partitions": {
            "file": rel(project.partitions_file),
            "table_offset": resolved.table.offset,
            "entries": [{"name": p.name, "type": p.type_name, "subtype": p.subtype_name,
                         "offset": p.offset, "size": p.size, "flags": list(p.flags)}
                        for p in resolved.table.partitions],
            "nvs_keys_pairs": resolved.nvs_keys_pairs,
        },
        "nvs": {
            name: {
                "values_files": [rel(p) for p in vals.files],
                "inputs": [rel(p) for p in vals.inputs],
                "format_version": resolved.format_versions[name],
                "keys": {"source": resolved.keys[name].source,
                         **({"file": rel(resolved.keys[name].file)}
                            if resolved.keys[name].file else {})},
                "values": {ns: {key: {"type": e.type,
                                      "value": _describe_value(e, (ns, key) in vals.secrets,
                                                               show_secrets,
                                                               vals.unset_variable(ns, key))}
                                for key, e in keys.items()}
                           for ns, keys in vals.namespaces.items()},
            }
            for name, vals in resolved.values.items()
        },
        "master_secret": None if resolved.master_secret is None else {
            k: v for k, v in (("env", resolved.master_secret.env),
                              ("file", str(resolved.master_secret.file)
                               if resolved.master_secret.file else None),
                              ("development_default", "****" if
                               resolved.master_secret.development_default else None)) if v},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"project {data['project']}, product {data['product'] or '(none)'}"
               f" (products: {', '.join(data['products']) or 'none'})")
    click.echo(f"partition table {data['partitions']['file']} at "
               f"0x{data['partitions']['table_offset']:x}:")
    rows = [(p["name"], f"{p['type']}/{p['subtype']}", f"0x{p['offset']:x}", f"0x{p['size']:x}",
             ", ".join(p["flags"])) for p in data["partitions"]["entries"]]
    for row in _aligned(rows, right=(2, 3)):
        click.echo(f"  {row}")
    for name, nvs in data["nvs"].items():
        click.echo(f"NVS partition {name}: keys {nvs['keys']['source']}, values from "
                   f"{', '.join(nvs['values_files']) or '(none)'}")
        for ns, keys in nvs["values"].items():
            click.echo(f"  {ns}:")
            rows = [(key, item["type"], _value_text(item["value"]))
                    for key, item in keys.items()]
            for row in _aligned(rows):
                click.echo(f"    {row}")


def _aligned(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    """``rows`` as text with each column padded to its widest cell (``right``: the
    columns aligned right, as numbers are); the last column is never padded."""
    widths = [max((len(str(r[i])) for r in rows), default=0) for i in range(len(rows[0]))] \
        if rows else []
    out = []
    for row in rows:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row[:-1], widths))]
        out.append("  ".join(cells + [str(row[-1])]).rstrip())
    return out


commands = [build_cmd, config_group]

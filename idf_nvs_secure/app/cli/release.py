"""``idf-nvs-secure release`` and ``batch``: release bundles and manufacturing batches."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import click

from ...build.artifacts import plan_for_project
from ...fsutil import display_path, read_input_bytes
from ...inputs.keysource import SecretSpec, read_master_secret
from ...inputs.project import load_project
from ...release.batch import load_devices, parse_shard, plan_batch, run_batch
from .params import MASTER_SECRET_FILE

PROJECT_DIR = click.argument("project_dir", required=False, default=".",
                             type=click.Path(path_type=Path))
PRODUCT = click.option("--product", help="Product from nvs_secure.yaml (default: "
                       "default_product).")
OUT_DIR = click.option("-o", "--out-dir", required=True, type=click.Path(path_type=Path),
                       help="Directory to write.")
SDKCONFIG = click.option("--sdkconfig", type=click.Path(path_type=Path),
                         help="Use this sdkconfig (or sdkconfig.json).")
BUILD_DIR = click.option("--build-dir", type=click.Path(path_type=Path),
                         help="ESP-IDF build directory (default: PROJECT_DIR/build).")


def _plan(project_dir: Path, product: str | None, sdkconfig: Path | None,
          build_dir: Path | None, *, defer_unset: bool = False):
    project = load_project(project_dir)
    resolved, plan = plan_for_project(project, product, sdkconfig=sdkconfig, build_dir=build_dir,
                                      defer_unset=defer_unset)
    for d in plan.diagnostics:
        click.echo(f"{d.severity}: {d.located}", err=True)
    if not plan.ok:
        raise click.exceptions.Exit(1)
    return project, resolved, plan


def _master_secret(path: Path | None):
    if path is None:
        return None
    return read_master_secret(SecretSpec(file=path), base_dir=Path.cwd(), release=True)


@click.command("release")
@PROJECT_DIR
@PRODUCT
@OUT_DIR
@SDKCONFIG
@BUILD_DIR
@MASTER_SECRET_FILE
@click.option("--random-keys", is_flag=True,
              help="Draw fresh random keys (the manifest records that the bundle cannot "
                   "be reproduced).")
@click.option("--flash-encryption-key", type=click.Path(path_type=Path),
              help="The devices' flash-encryption key: pre-encrypt every file flash "
                   "encryption stores encrypted (written raw, as release mode needs).")
@click.option("--merged", is_flag=True, help="Also write one merged flash image "
              "(esptool merge-bin).")
@click.option("--force", is_flag=True,
              help="Replace the key files of a bundle already in OUT_DIR with other keys.")
def release_cmd(project_dir: Path, product: str | None, out_dir: Path, sdkconfig: Path | None,
                build_dir: Path | None, master_secret_file: Path | None, random_keys: bool,
                flash_encryption_key: Path | None, merged: bool, force: bool) -> None:
    """Write a reproducible release bundle of a product: images, keys, firmware,
    flasher_args.json, flash_args, report.html, manifest.json and a zip of them."""
    from ...release.bundle import release_project  # only release needs it

    _plan(project_dir, product, sdkconfig, build_dir)  # diagnostics shown, exit 1 on errors
    bundle, zip_path = release_project(
        project_dir, out_dir, product=product, sdkconfig=sdkconfig, build_dir=build_dir,
        master_secret=_master_secret(master_secret_file), random_keys=random_keys,
        flash_encryption_key=read_input_bytes(flash_encryption_key)
        if flash_encryption_key else None, merged=merged, force=force)
    for note in bundle.notes:
        click.echo(f"note: {note}", err=True)
    for f in bundle.files:
        where = f" at 0x{f.offset:x}" if f.offset is not None else ""
        how = (" (pre-encrypted)" if f.pre_encrypted else
               " (written through flash encryption)" if f.encrypted else "")
        kind = getattr(f.kind, "label", str(f.kind).replace("_", " "))
        click.echo(f"  {f.name}: {kind}{where}{how}")
    if not bundle.manifest["reproducible"]:
        click.echo("warning: random keys: this bundle cannot be reproduced", err=True)
    firmware = (f"{len(bundle.manifest['firmware'])} firmware images"
                if bundle.manifest["firmware"] else "NO firmware: NVS images and keys only")
    click.echo(f"wrote {display_path(zip_path)} ({len(bundle.files)} files, {firmware}, "
               f"sha256 {hashlib.sha256(bundle.zip_data).hexdigest()})")


@click.command("batch")
@PROJECT_DIR
@PRODUCT
@click.option("--devices", required=True, type=click.Path(path_type=Path),
              help="CSV: a device_id column and one column per per-device value "
                   "(namespace.key).")
@OUT_DIR
@SDKCONFIG
@BUILD_DIR
@MASTER_SECRET_FILE
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: all CPU cores).")
@click.option("--shard", default=None, metavar="K/N",
              help="Build only every Nth device, starting with the Kth (1-based).")
@click.option("--verify", is_flag=True,
              help="On resume, re-read and re-hash every device's files (default: their "
                   "recorded sizes and inputs decide).")
@click.option("--layout", type=click.Choice(["folders", "packed"]), default="folders",
              show_default=True,
              help="folders: a folder per device; packed: one devices.bin per shard with "
                   "an index of offsets, for stations that flash from it.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (devices, built, skipped, index, ...).")
def batch_cmd(project_dir: Path, product: str | None, devices: Path, out_dir: Path,
              sdkconfig: Path | None, build_dir: Path | None, master_secret_file: Path | None,
              jobs: int | None, shard: str | None, verify: bool, layout: str,
              as_json: bool) -> None:
    """Build per-device NVS images and keys for a manufacturing batch.

    Each device gets a folder under OUT_DIR/devices with its images, keys, flash_args
    and flasher_args.json (there, esptool.py --chip CHIP write_flash @flash_args writes
    the device); OUT_DIR/index.csv lists every file with its offset and SHA-256."""
    started = time.perf_counter()
    shard_spec = parse_shard(shard) if shard else (1, 1)
    # A value every device supplies (a devices CSV column) needs no base value.
    _, resolved, plan = _plan(project_dir, product, sdkconfig, build_dir, defer_unset=True)
    batch = plan_batch(resolved, plan, master_secret=_master_secret(master_secret_file))
    table = load_devices(devices, batch, display=display_path(devices))
    resolved.check_complete(table.supplied)
    jobs = jobs or os.cpu_count() or 1
    if sys.stderr.isatty() and not as_json:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("devices"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("devices", total=None, rate="")

            def advance(done: int, total: int) -> None:
                elapsed = time.perf_counter() - started
                progress.update(task, completed=done, total=total,
                                rate=f"{done / elapsed:,.0f}/s" if elapsed else "")

            result = run_batch(batch, table, out_dir, jobs=jobs, shard=shard_spec,
                               progress=advance, verify=verify, layout=layout)
    else:
        result = run_batch(batch, table, out_dir, jobs=jobs, shard=shard_spec, verify=verify,
                           layout=layout)
    elapsed = time.perf_counter() - started
    count = result.built + result.skipped
    if as_json:
        click.echo(json.dumps({
            "product": batch.product, "shard": list(shard_spec), "layout": layout,
            "devices": count,
            "built": result.built, "skipped": result.skipped, "files": result.files,
            "index": display_path(result.index), "inputs_sha256": result.inputs_sha256,
            "out_dir": display_path(out_dir), "seconds": round(elapsed, 3)}, indent=2))
        return
    click.echo(f"batch: {count} devices ({result.built} built, {result.skipped} already "
               f"done) in {elapsed:.1f} s ({count / elapsed if elapsed else 0:,.0f} "
               f"devices/s); index: {display_path(result.index)}")


commands = [release_cmd, batch_cmd]

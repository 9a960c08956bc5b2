"""Manufacturing batches: per-device NVS images and keys from a devices CSV, on all cores.

The devices CSV (:mod:`.devices_csv`) gives each device its own values over the
product's.  Each device gets ``devices/<device_id>/``: one image per NVS partition and
its keys, per the security plan: the nvs_keys image (flash-encryption scheme) or the
32-byte HMAC key to burn into eFuse (HMAC scheme), ``flash_args`` and
``flasher_args.json`` (``esptool.py --chip CHIP write_flash @flash_args`` in the folder
writes the device), plus ``device.json`` recording the SHA-256 of every file and of the
device's inputs.  Keys come from the master secret with
HKDF-SHA256 (context: product, keys partition, device id), so any machine remakes any
device, or, for key source ``generate``, from the CSPRNG, and are then never made again
for a device that has them.

:func:`run_batch` works in a process pool, chunk by chunk of the CSV: first every
worker reads and checks its chunks (so a bad row is reported at its line before
anything is written), then builds them.  It resumes: a finished run whose inputs
(the plan and every device's values) are unchanged and whose files have their
recorded sizes is done; otherwise a device whose ``device.json`` matches its files and
its inputs is skipped;
and writes each device into a hidden ``devices/.tmp-K-of-N-<id>`` directory renamed into
place, so no half-written device directory ever looks complete.  ``shard=(K, N)`` takes
devices K-1, K-1+N, ... (0-based CSV order) so N machines split a batch without
coordination; each writes ``index-K-of-N.csv`` (``index.csv`` unsharded), one row per
flashed file, and next to it ``index-K-of-N.json``, the finished run's inputs digest.
Images are laid out once per value-length layout and refilled per device
(:mod:`.formats.nvs_template`); ``layout="packed"`` writes one file per shard instead
(:mod:`.packed`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputError, KeyMaterialError, NvsSecureError
from ..fsutil import os_error, output_lock, write_atomic
from ..inputs.keysource import DERIVATION_VERSION
from ..words import KeySource
from .device_files import ImageMaker, device_outputs, flash_support_files
from .devices_csv import (
    DEVICE_ID_COLUMN,
    Column,
    DeviceTable,
    check_capacity,
    load_devices,
    parse_shard,
)
from . import pool
from .jobs import BatchPlan, PartitionJob, plan_batch
from .packed import run_packed

__all__ = [
    "DEVICE_ID_COLUMN",
    "PartitionJob",
    "BatchPlan",
    "Column",
    "DeviceTable",
    "BatchResult",
    "plan_batch",
    "load_devices",
    "parse_shard",
    "ImageMaker",
    "device_outputs",
    "run_batch",
]

#: Each device directory's record of its files and inputs.
RECORD = "device.json"
#: The index's columns.  ``flash_encrypted``: the file is written through flash
#: encryption; ``nvs_encrypted``: an NVS image encrypted with NVS encryption (XTS-AES),
#: empty for files that are no NVS image (keys).
INDEX_COLUMNS = ("device_id", "file", "partition", "offset", "flash_encrypted",
                 "nvs_encrypted", "size", "sha256")


@dataclass(frozen=True)
class BatchResult:
    built: int
    skipped: int
    index: Path
    #: The finished run's inputs digest (the plan and every device's values).
    inputs_sha256: str = ""
    devices: int = 0
    files: int = 0


# --- building devices ------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """What every worker needs: the plan, the devices table, the entry layouts."""

    batch: BatchPlan
    table: DeviceTable
    maker: ImageMaker
    base_digest: bytes
    shard: tuple[int, int]
    devices_dir: str
    tag: str
    rng: Callable[[int], bytes]
    verify: bool = False
    support_dir: str | None = None
    support: tuple[tuple[str, int, str], ...] = ()  # (name, size, sha256)
    pack: tuple[str, int, str] | None = None  # packed layout: (file, device size, name)


def _base_digest(batch: BatchPlan, columns: Sequence[Column], layouts) -> bytes:
    """Everything but the device's own row that decides its outputs."""
    h = hashlib.sha256(b"idf-nvs-secure batch/2\0" + batch.product.encode())
    h.update((batch.master_fingerprint or "-").encode())
    h.update(repr(batch.flash).encode())
    for job, (template, slots) in zip(batch.jobs, layouts):
        key = job.keys
        h.update(repr((job.name, job.offset, job.size, job.version, job.image, slots,
                       job.keys_encrypted, key and (key.name, key.kind.value,
                                                    key.source.value, key.context,
                                                    key.offset))).encode())
        for e in template:
            h.update(repr((e.namespace, e.key, e.type, e.value)).encode())
    h.update(repr([(c.partition, c.namespace, c.key, c.type) for c in columns]).encode())
    return h.digest()


def _inputs_digest(state: _State, device: str, values: Sequence[Any]) -> str:
    h = hashlib.sha256(state.base_digest)
    h.update(device.encode())
    for v in values:
        data = v if isinstance(v, bytes) else repr(v).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _write(path: str, data: bytes, secret: bool) -> None:
    """Create ``path`` (it must not exist) with ``data``; key material mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _read_record(folder: str, verify: bool = False) -> dict | None:
    """The device's record when every file it lists is there with its size (and, with
    ``verify``, its SHA-256).  Device folders are renamed into place whole, so sizes
    catch a file replaced by hand; ``--verify`` re-reads and re-hashes every file."""
    try:
        with open(os.path.join(folder, RECORD), "rb") as fh:
            record = json.loads(fh.read())
        for item in record["files"]:
            path = os.path.join(folder, item["name"])
            if not verify:
                if os.stat(path).st_size != item["size"]:
                    return None
                continue
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() != item["sha256"]:
                    return None
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_items(state: _State, files) -> list[dict]:
    items = [{"name": n, "partition": p, "offset": None if o is None else f"{o:#x}",
              "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "secret": s,
              "flash_encrypted": fe, "nvs_encrypted": ne}
             for n, d, p, o, s, fe, ne in files]
    items += [{"name": n, "partition": None, "offset": None, "size": size, "sha256": sha,
               "secret": False, "flash_encrypted": False, "nvs_encrypted": None}
              for n, size, sha in state.support]
    return items


def _build_device(state: _State, device: str, line: int, values: Sequence[Any]):
    devices = state.devices_dir
    folder = os.path.join(devices, device)
    digest = _inputs_digest(state, device, values)
    kept: dict[str, bytes] = {}
    exists = os.path.isdir(folder)
    if exists:
        record = _read_record(folder, state.verify)
        if record is not None and record.get("inputs_sha256") == digest:
            return device, record["files"], False
        if any(j.key_source == KeySource.GENERATE for j in state.batch.jobs):
            if record is None:
                raise KeyMaterialError(
                    f"device {device}: its files do not match their record, and its keys "
                    f"were drawn at random: they are never made again", line=line,
                    hint=f"if device {device} was never flashed, delete its directory")
            for item in record["files"]:
                if item.get("secret"):
                    with open(os.path.join(folder, item["name"]), "rb") as fh:
                        kept[item["name"]] = fh.read()
    files = device_outputs(state.batch, state.maker, device, values, rng=state.rng, kept=kept)
    items = _record_items(state, files)
    record = {"device_id": device, "product": state.batch.product, "inputs_sha256": digest,
              "derivation": DERIVATION_VERSION, "files": items}
    tmp = os.path.join(devices, f".tmp-{state.tag}-{device}")
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.mkdir(tmp)
    for name, data, _, _, secret, _, _ in files:
        _write(os.path.join(tmp, name), data, secret)
    for name, _, _ in state.support:  # the same for every device: linked, not copied
        source = os.path.join(state.support_dir, name)
        try:
            os.link(source, os.path.join(tmp, name))
        except OSError:  # a file system without hard links
            shutil.copyfile(source, os.path.join(tmp, name))
    _write(os.path.join(tmp, RECORD), json.dumps(record).encode() + b"\n", False)
    if exists:
        old = os.path.join(devices, f".old-{state.tag}-{device}")
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old)
    else:
        os.rename(tmp, folder)
    return device, items, True


_TRIED: set = set()  # value-length layouts whose capacity this process checked


def _check_chunk(index: int) -> tuple[bytes, tuple | None]:
    """Read and check a chunk's rows in a worker: (digest of the rows' inputs, error)."""
    state = pool.state()
    h = hashlib.sha256()
    try:
        for device, line, values in state.table.read(state.table.chunks[index], state.shard):
            check_capacity(state.batch, state.table, (device, line, values),
                           state.maker.layouts, _TRIED)
            h.update(_inputs_digest(state, device, values).encode())
    except NvsSecureError as exc:
        return b"", pool.error_data(exc)
    return h.digest(), None


def _build_chunk(index: int) -> tuple[str, int, int, tuple | None]:
    """Build a chunk's devices in a worker: (its index rows, devices, built, error)."""
    state = pool.state()
    done = []
    error = None
    line = None
    try:
        for device, line, values in state.table.read(state.table.chunks[index], state.shard):
            done.append(_build_device(state, device, line, values))
    except NvsSecureError as exc:
        error = pool.error_data(exc, line)
    except OSError as exc:
        name = os.path.basename(exc.filename) if exc.filename else RECORD
        exc.filename = None
        reason = os_error(exc, name).message
        error = ("InputError", f"device {device}: {reason}: devices/{device}/{name}", line,
                 None)
    return (_index_text(done, header=False), len(done), sum(1 for d in done if d[2]),
            error)


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's CSV-injection
    advice), so a partition named ``=1+2`` is never evaluated."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _flag(value: Any) -> str:
    return "" if value is None else "true" if value else "false"


def _index_text(results: Sequence[tuple[str, list, bool]], header: bool = True) -> str:
    """Index rows of devices' files that are flashed or burnt (not their support files)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(INDEX_COLUMNS)
    for device, items, _ in results:
        for item in items:
            if item.get("partition") is None and item["name"] in SUPPORT_FILES:
                continue
            writer.writerow([_cell(device), _cell(f"devices/{device}/{item['name']}"),
                             _cell(item["partition"] or ""), item["offset"] or "",
                             _flag(item.get("flash_encrypted", item.get("encrypted", False))),
                             _flag(item.get("nvs_encrypted")), item["size"], item["sha256"]])
    return out.getvalue()


SUPPORT_FILES = frozenset({"flash_args", "flasher_args.json"})


def _recover(devices_dir: Path, tag: str) -> None:
    """Undo what an interrupted run of this shard left: half-built ``.tmp-`` directories
    go; a device caught between its old and new directory gets its old one back."""
    with os.scandir(devices_dir) as entries:
        stale = [e.name for e in entries if e.name.startswith((f".tmp-{tag}-", f".old-{tag}-"))]
    for name in stale:
        path = devices_dir / name
        device = devices_dir / name.split("-", 4)[-1]
        if name.startswith(".old-") and not device.exists():
            os.rename(path, device)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_batch(batch: BatchPlan, table: DeviceTable, out_dir: Path, *, jobs: int = 1,
              shard: tuple[int, int] = (1, 1),
              progress: Callable[[int, int], None] | None = None,
              rng: Callable[[int], bytes] = secrets.token_bytes,
              verify: bool = False, layout: str = "folders") -> BatchResult:
    """Build the devices of ``table`` (this shard's) into ``out_dir/devices`` with
    ``jobs`` processes and write the shard's index; ``progress(done, total)`` is called
    as chunks finish.  Every row is read and checked before anything is written.  A
    finished run of the same inputs whose files have their recorded sizes is done;
    otherwise devices already built from the same inputs (and whose files have their
    recorded sizes; with ``verify``, their SHA-256) are skipped.

    ``layout``: ``"folders"`` (a folder per device) or ``"packed"`` (one file per shard
    and an index of offsets: :mod:`.packed`)."""
    if layout not in ("folders", "packed"):
        raise InputError(f"unknown batch layout {layout!r}", hint="folders or packed")
    k, n = shard
    out_dir = Path(out_dir)
    maker = ImageMaker(batch, table.columns)
    tag = f"{k}-of-{n}"
    devices_dir = out_dir / "devices"
    state = _State(batch, table, maker, _base_digest(batch, table.columns, maker.layouts),
                   shard, str(devices_dir), tag, rng, verify)
    total = len(range(k - 1, table.count, n))
    chunks = range(len(table.chunks))
    jobs = max(1, min(jobs, len(table.chunks)))
    stem = "index" if n == 1 else f"index-{tag}"
    index, run = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    quick = _table_digest(state)
    if quick and not verify and layout == "folders" and run.is_file():
        # A finished run of the same CSV text and plan: no need to read the rows again.
        with output_lock(out_dir, scope=None if n == 1 else f"shard-{k}-of-{n}",
                         wait_orphans=True):
            record = _finished(index, run, out_dir, quick, "table_sha256")
            if record is not None:
                if progress is not None:
                    progress(total, total)
                return BatchResult(0, record["devices"], index, record["inputs_sha256"],
                                   record["devices"], record["files"])
    with pool.Workers(jobs, state) as workers:
        digest = hashlib.sha256(state.base_digest + tag.encode())
        for part, error in workers.map(_check_chunk, chunks):
            if error is not None:
                pool.raise_error(error, table.file)
            digest.update(part)
        inputs = digest.hexdigest()
    with output_lock(out_dir, scope=None if n == 1 else f"shard-{k}-of-{n}", wait_orphans=True):
        if layout == "packed":
            return run_packed(state, out_dir, jobs=jobs, total=total, inputs=inputs,
                              progress=progress, result=BatchResult)
        return _run_locked(state, out_dir, jobs=jobs, total=total, inputs=inputs,
                           progress=progress)


def _table_digest(state: _State) -> str | None:
    """What decides every device's inputs when no cell names a file: the plan and the
    CSV's text (None when a column reads files, whose contents it does not cover)."""
    if any(c.from_file for c in state.table.columns):
        return None
    h = hashlib.sha256(state.base_digest + state.tag.encode() + b"\0")
    h.update(state.table.text.encode())
    return h.hexdigest()


def _finished(index: Path, run: Path, out_dir: Path, digest: str,
              field: str = "inputs_sha256") -> dict | None:
    """The record of a finished run whose ``field`` is ``digest`` and whose files all
    have their recorded sizes."""
    try:
        record = json.loads(run.read_bytes())
        if record.get(field) != digest:
            return None
        with open(index, newline="") as fh:
            rows = csv.reader(fh)
            next(rows)
            folders = set()
            for row in rows:
                if os.stat(os.path.join(out_dir, row[1])).st_size != int(row[6]):
                    return None
                folders.add(row[0])
        for device in folders:
            os.stat(os.path.join(out_dir, "devices", device, RECORD))
        return record
    except (OSError, ValueError, KeyError, IndexError, StopIteration, AttributeError):
        return None


def _run_locked(state: _State, out_dir: Path, *, jobs: int, total: int, inputs: str,
                progress: Callable[[int, int], None] | None) -> BatchResult:
    k, n = state.shard
    tag = state.tag
    table = state.table
    devices_dir = Path(state.devices_dir)
    stem = "index" if n == 1 else f"index-{tag}"
    index, run = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    if not state.verify and index.is_file() and run.is_file():
        record = _finished(index, run, out_dir, inputs)
        if record is not None:
            if progress is not None:
                progress(total, total)
            return BatchResult(0, record["devices"], index, inputs, record["devices"],
                               record["files"])
    try:
        # The index describes a finished run: it goes before anything is built, so a run
        # with other inputs that is killed never leaves an index its files do not match.
        index.unlink(missing_ok=True)
        run.unlink(missing_ok=True)
        devices_dir.mkdir(parents=True, exist_ok=True)
        _recover(devices_dir, tag)
        support = flash_support_files(state.batch)
        support_dir = out_dir / f".flash-{tag}"
        if support:
            shutil.rmtree(support_dir, ignore_errors=True)
            support_dir.mkdir()
            for name, data in support:
                (support_dir / name).write_bytes(data)
        fd, tmp = tempfile.mkstemp(prefix=f".{index.name}.", suffix=".tmp", dir=out_dir)
    except OSError as exc:
        raise os_error(exc, out_dir) from None
    state = replace(state, support_dir=str(support_dir), support=tuple(
        (name, len(data), hashlib.sha256(data).hexdigest()) for name, data in support))
    done = built = lines = 0
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(",".join(INDEX_COLUMNS) + "\n")
            with pool.Workers(jobs, state) as workers:
                for text, count, made, error in workers.map(_build_chunk,
                                                            range(len(table.chunks))):
                    fh.write(text)
                    lines += text.count("\n")
                    done += count
                    built += made
                    if progress is not None:
                        progress(done, total)
                    if error is not None:
                        pool.raise_error(error, table.file)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, index)
        write_atomic(run, json.dumps({"inputs_sha256": inputs,
                                      "table_sha256": _table_digest(state), "devices": done,
                                      "files": lines}).encode() + b"\n")
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        for leftover in devices_dir.glob(f".tmp-{tag}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if isinstance(exc, OSError):
            raise os_error(exc, index) from None
        raise
    return BatchResult(built, done - built, index, inputs, done, lines)

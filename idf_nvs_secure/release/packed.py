"""The packed batch layout: every device of a shard in one file, for stations that flash
from it.

``devices-K-of-N.bin`` (``devices.bin`` unsharded) holds, for each device of the shard
in CSV order, its files one after another (keys first, then its NVS images, as the
folder layout's ``device.json`` lists them); every device takes the same number of
bytes.  ``index-K-of-N.csv`` gives each file's ``pack_offset`` (bytes from the start of
the pack) next to its device, partition, flash offset, flags, size and SHA-256, so a
station reads ``size`` bytes at ``pack_offset`` and writes them at ``offset``
(:func:`read_packed_device` does the reading).  The pack holds key material: mode 0600.

A device costs one positioned write into the pack instead of a folder of files.  The
pack is written under a temporary name and renamed when every device is in it;
resume is all or nothing: a finished run of the same inputs whose pack has its size is
done, anything else is built again (so keys of source ``generate``, which are never
made twice, need the folder layout).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, NvsSecureError
from ..fsutil import os_error, write_atomic
from ..words import KeySource
from .device_files import device_outputs
from .pool import Workers, error_data, raise_error, state as worker_state

__all__ = ["PACK_INDEX_COLUMNS", "pack_name", "read_packed_device"]

PACK_INDEX_COLUMNS = ("device_id", "file", "pack_offset", "partition", "offset",
                      "flash_encrypted", "nvs_encrypted", "size", "sha256")


def pack_name(shard: tuple[int, int]) -> str:
    k, n = shard
    return "devices.bin" if n == 1 else f"devices-{k}-of-{n}.bin"


def read_packed_device(out_dir: str | os.PathLike[str], device: str, *,
                       index: str = "index.csv") -> dict[str, bytes]:
    """A device's files from a packed batch in ``out_dir``: partition (or file name for
    files that are not flashed) -> bytes, each checked against the index's SHA-256."""
    out = Path(out_dir)
    files: dict[str, bytes] = {}
    with open(out / index, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["device_id"] != device:
                continue
            with open(out / row["file"], "rb") as pack:
                pack.seek(int(row["pack_offset"]))
                data = pack.read(int(row["size"]))
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
                raise InputError(f"device {device}: {row['partition']} does not match its "
                                 f"SHA-256", file=str(out / row["file"]))
            files[row["partition"] or row["file"]] = data
    if not files:
        raise InputError(f"no device {device!r} in the index", file=str(out / index))
    return files


def _flag(value) -> str:
    return "" if value is None else "true" if value else "false"


def pack_chunk(state: Any, index: int, fd: int, device_size: int, name: str
               ) -> tuple[str, int]:
    """Build a chunk's devices into the pack (open as ``fd``) at their places: (index
    rows, devices)."""
    k, n = state.shard
    chunk = state.table.chunks[index]
    first = chunk.row + (k - 1 - chunk.row) % n  # the chunk's first row of this shard
    position = (first - (k - 1)) // n * device_size
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    done = 0
    for device, _line, values in state.table.read(chunk, state.shard):
        files = device_outputs(state.batch, state.maker, device, values, rng=state.rng)
        blob = b"".join(f[1] for f in files)
        if len(blob) != device_size:  # pragma: no cover - sizes follow the plan
            raise AssertionError(f"device {device}: {len(blob)} bytes, not {device_size}")
        os.pwrite(fd, blob, position)
        at = position
        for file_name, data, partition, offset, _secret, flash_enc, nvs_enc in files:
            writer.writerow([device, name, at, partition or file_name,
                             "" if offset is None else f"{offset:#x}", _flag(flash_enc),
                             _flag(nvs_enc), len(data), hashlib.sha256(data).hexdigest()])
            at += len(data)
        position += device_size
        done += 1
    return out.getvalue(), done


_PACK_FDS: dict[str, int] = {}  # the pack each process writes into, by path


def _pack_chunk(index: int) -> tuple[str, int, tuple | None]:
    """Build a chunk's devices into the pack in a worker: (index rows, devices, error)."""
    state = worker_state()
    assert state.pack is not None
    path, size, name = state.pack
    try:
        fd = _PACK_FDS.get(path)
        if fd is None:
            fd = _PACK_FDS[path] = os.open(path, os.O_WRONLY)
        text, count = pack_chunk(state, index, fd, size, name)
    except NvsSecureError as exc:
        return "", 0, error_data(exc)
    except OSError as exc:
        return "", 0, ("InputError", os_error(exc, name).message, None, None)
    return text, count, None


def run_packed(state: Any, out_dir: Path, *, jobs: int, total: int, inputs: str,
               progress: Callable[[int, int], None] | None, result: Callable) -> Any:
    """Build this shard's devices into its pack and index (the lock is held); returns
    ``result(built, skipped, index, inputs, devices, files)``."""
    if any(j.key_source == KeySource.GENERATE for j in state.batch.jobs):
        raise InputError("the packed layout rebuilds a whole shard, and keys of source "
                         "'generate' are never made twice",
                         hint="use the folder layout, or keys: {source: derive}")
    n = state.shard[1]
    stem = "index" if n == 1 else f"index-{state.tag}"
    index, run = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    pack = out_dir / pack_name(state.shard)
    first = next((r for c in state.table.chunks for r in state.table.read(c, state.shard)),
                 None)
    device_size = (sum(len(f[1]) for f in device_outputs(
        state.batch, state.maker, first[0], first[2], rng=state.rng)) if first else 0)
    try:
        record = json.loads(run.read_bytes())
        if (not state.verify and record.get("inputs_sha256") == inputs and index.is_file()
                and pack.stat().st_size == device_size * total):
            if progress is not None:
                progress(total, total)
            return result(0, total, index, inputs, total, record["files"])
    except (OSError, ValueError, AttributeError):
        pass
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        index.unlink(missing_ok=True)
        run.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{pack.name}.", suffix=".tmp", dir=out_dir)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, device_size * total)
        os.close(fd)
        index_fd, index_tmp = tempfile.mkstemp(prefix=f".{index.name}.", suffix=".tmp",
                                               dir=out_dir)
        os.fchmod(index_fd, 0o644)
    except OSError as exc:
        raise os_error(exc, out_dir) from None
    done = lines = 0
    try:
        with os.fdopen(index_fd, "w", newline="") as fh:
            fh.write(",".join(PACK_INDEX_COLUMNS) + "\n")
            with Workers(jobs, replace(state, pack=(tmp, device_size, pack.name))) as workers:
                for text, count, error in workers.map(_pack_chunk,
                                                      range(len(state.table.chunks))):
                    if error is not None:
                        raise_error(error, state.table.file)
                    fh.write(text)
                    lines += text.count("\n")
                    done += count
                    if progress is not None:
                        progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())
        with open(tmp, "rb+") as pack_fh:
            os.fsync(pack_fh.fileno())
        os.replace(tmp, pack)
        os.replace(index_tmp, index)
        write_atomic(run, json.dumps({"inputs_sha256": inputs, "devices": done,
                                      "files": lines, "layout": "packed"}).encode() + b"\n")
    except BaseException as exc:
        for leftover in (tmp, index_tmp):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise os_error(exc, pack) from None
        raise
    finally:
        fd = _PACK_FDS.pop(tmp, None)
        if fd is not None:
            os.close(fd)
    return result(done, 0, index, inputs, done, lines)

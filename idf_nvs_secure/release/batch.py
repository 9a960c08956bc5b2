"""Manufacturing batches: per-device NVS images and keys from a devices CSV, on all cores.

The devices CSV (:mod:`.devices_csv`) gives each device its own values over the
product's.  Each device gets ``devices/<device_id>/``: one image per NVS partition and
its keys, per the security plan: the nvs_keys image (flash-encryption scheme) or the
32-byte HMAC key to burn into eFuse (HMAC scheme), plus ``device.json`` recording the
SHA-256 of every file and of the device's inputs.  Keys come from the master secret with
HKDF-SHA256 (context: product, keys partition, device id), so any machine remakes any
device, or, for key source ``generate``, from the CSPRNG, and are then never made again
for a device that has them.

:func:`run_batch` builds devices in a process pool (chunks of devices per task),
resumes (a device whose ``device.json`` matches its files and its inputs is skipped),
and writes each device into a hidden ``devices/.tmp-K-of-N-<id>`` directory renamed into
place, so no half-written device directory ever looks complete.  ``shard=(K, N)`` takes
devices K-1, K-1+N, ... (0-based CSV order) so N machines split a batch without
coordination; each writes ``index-K-of-N.csv`` (``index.csv`` unsharded), one row per
file.  Images are laid out once per value-length layout and refilled per device
(:mod:`.formats.nvs_template`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import secrets
import shutil
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..build.keys import KeyResolver, key_material
from ..plan.outputs import KeyPlan, plan_outputs
from ..words import FlashEncryptionMode, KeySource, OutputKind
from ..errors import CapacityError, InputError, KeyMaterialError, NvsSecureError
from ..formats.nvs_image import build_nvs_image
from ..formats.nvs_keys import (
    derive_nvs_keys_from_hmac,
    parse_nvs_keys,
)
from ..formats.nvs_template import (
    NvsTemplate,
    encoded_length,
    fill_nvs_template,
    make_nvs_template,
)
from ..fsutil import os_error, output_lock, read_input_text, write_atomic
from ..inputs.keysource import (
    DERIVATION_VERSION,
    MasterSecret,
)
from ..inputs.project import ResolvedProject
from ..inputs.yamlsource import load_yaml
from ..plan.security import SecurityPlan
from .devices_csv import (
    DEVICE_ID_COLUMN,
    Column,
    DeviceTable,
    device_entries,
    entry_layouts,
    load_devices,
    parse_shard,
)
from .jobs import BatchPlan, PartitionJob

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.nvs_keys import NvsKeys

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


@dataclass(frozen=True)
class BatchResult:
    built: int
    skipped: int
    index: Path


# --- planning --------------------------------------------------------------------------


def _file_valued(paths: Sequence[Path]) -> frozenset[tuple[str, str]]:
    """(namespace, key) pairs whose value the values files (base, then overlays) take
    from a file (``file:``)."""
    keys: set[tuple[str, str]] = set()
    for path in paths:
        doc = load_yaml(read_input_text(path), str(path))
        for ns, items in (doc.data or {}).items():
            if items is None:
                keys = {k for k in keys if k[0] != ns}
                continue
            for key, spec in items.items():
                if isinstance(spec, dict) and "file" in spec:
                    keys.add((ns, key))
                else:
                    keys.discard((ns, key))
    return frozenset(keys)


def plan_batch(resolved: ResolvedProject, plan: SecurityPlan, *,
               master_secret: MasterSecret | None = None,
               env: Mapping[str, str] | None = None) -> BatchPlan:
    """The per-device work for ``resolved`` under ``plan``: its output plan, per device.

    ``master_secret`` (``--master-secret-file``) overrides the project's and makes every
    host key derived from it.  Otherwise key files are refused (every device would share
    one key), and so is the development default master secret."""
    env = os.environ if env is None else env
    if not plan.ok:
        raise NvsSecureError(f"the security plan has {len(plan.errors)} error(s): "
                             f"{plan.errors[0].message}",
                             hint="run 'idf-nvs-secure detect' for all")
    outputs = plan_outputs(plan, resolved)
    keys: dict[str, KeyPlan] = {}
    for key in outputs.keys:
        if master_secret is not None:
            key = replace(key, source=KeySource.DERIVE)
        if key.source == KeySource.FILE:
            raise KeyMaterialError(
                f"the keys of {key.name} come from a key file: every device of the batch "
                f"would share them", file=key.where,
                hint="per-device keys need keys: {source: derive} (a master secret) or "
                     "{source: generate}; or pass --master-secret-file")
        keys[key.name] = key
    master = master_secret
    if master is None and any(k.source == KeySource.DERIVE for k in keys.values()):
        resolver = KeyResolver(resolved, env=env, release=True)
        master = resolver.master_secret(next(k for k in keys.values()
                                             if k.source == KeySource.DERIVE))
    development = plan.flash_encryption_mode == FlashEncryptionMode.DEVELOPMENT
    jobs = []
    for name, values in resolved.values.items():
        image = outputs.find(OutputKind.NVS_IMAGE, name)
        key = keys.get(image.keys) if image is not None and image.keys else None
        if image is None:  # keys only: an encrypted partition without values
            key = next((k for k in keys.values() if k.context ==
                        (resolved.nvs_keys_pairs.get(name) or plan.keys_partition)), None)
            if key is None:
                continue
        part = resolved.table.find(name)
        jobs.append(PartitionJob(name, part.offset, part.size,
                                 resolved.format_versions.get(name, 2), tuple(values.entries),
                                 _file_valued(values.files), key,
                                 bool(key and key.flash_encrypted and development),
                                 image=image is not None))
    return BatchPlan(resolved.product_label, tuple(jobs),
                     master.material if master is not None else None)


# --- building devices ------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """What every worker needs: the plan, the CSV's columns and the entry layouts."""

    batch: BatchPlan
    maker: ImageMaker
    base_digest: bytes
    devices_dir: Path
    tag: str
    rng: Callable[[int], bytes]
    verify: bool = False


def _base_digest(batch: BatchPlan, columns: Sequence[Column], layouts) -> bytes:
    """Everything but the device's own row that decides its outputs."""
    h = hashlib.sha256(b"idf-nvs-secure batch/1\0" + batch.product.encode())
    h.update((batch.master_fingerprint or "-").encode())
    for job, (template, slots) in zip(batch.jobs, layouts):
        key = job.keys
        h.update(repr((job.name, job.offset, job.size, job.version, job.image, slots,
                       key and (key.name, key.kind.value, key.source.value, key.context,
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


class ImageMaker:
    """Builds the NVS images of devices.  Images with the same value lengths share a
    layout, so after a few devices of one layout an :class:`~.formats.nvs_template.NvsTemplate`
    is made and refilled per device (checked once against ``build_nvs_image``)."""

    #: Devices of one layout built directly before a template is made for it.
    TEMPLATE_AFTER = 2
    _LIMIT = 256

    def __init__(self, batch: BatchPlan, columns: Sequence[Column]) -> None:
        self.batch, self.columns = batch, tuple(columns)
        self.layouts = entry_layouts(batch, self.columns)
        self._templates: dict[tuple, NvsTemplate] = {}
        self._seen: dict[tuple, int] = {}

    def image(self, index: int, values: Sequence[Any], keys: "NvsKeys | None") -> bytes:
        """The image of job ``index`` for a device's ``values`` (one per column)."""
        job = self.batch.jobs[index]
        template_entries, slots = self.layouts[index]
        own = [values[position] for _, position in slots]
        layout = (index, tuple(encoded_length(self.columns[p].type, v)
                               for (_, p), v in zip(slots, own)))
        template = self._templates.get(layout)
        if template is not None:
            return fill_nvs_template(template, own, keys=keys)
        entries = device_entries(template_entries, slots, self.columns, values)
        image = build_nvs_image(entries, job.size, version=job.version, keys=keys)
        seen = self._seen[layout] = self._seen.get(layout, 0) + 1
        if seen >= self.TEMPLATE_AFTER:
            template = make_nvs_template(entries, job.size, version=job.version,
                                         variable=[slot for slot, _ in slots])
            if fill_nvs_template(template, own, keys=keys) != image:  # pragma: no cover
                raise AssertionError("NVS template differs from build_nvs_image")
            if len(self._templates) >= self._LIMIT:
                self._templates.clear()
            self._templates[layout] = template
        return image


def device_outputs(batch: BatchPlan, maker: ImageMaker, device: str, values: Sequence[Any], *,
                   rng: Callable[[int], bytes] = secrets.token_bytes,
                   kept: Mapping[str, bytes] | None = None) -> list[tuple]:
    """The files of one device: ``(name, data, partition, offset, secret, encrypted)``
    (``encrypted``: written through flash encryption).

    ``kept``: key files of an earlier run (name -> bytes), reused instead of new random
    keys (key source ``generate``)."""
    kept = kept or {}
    files: list[tuple] = []
    made: dict[str, Any] = {}
    for index, job in enumerate(batch.jobs):
        keys = None
        key = job.keys
        if key is not None:
            keys = made.get(key.name)
            if keys is None:
                raw = key_material(key, master=batch.master, product=batch.product,
                                   device_id=device, rng=rng, kept=kept)
                keys = made[key.name] = (derive_nvs_keys_from_hmac(raw)
                                         if key.kind == OutputKind.HMAC_KEY else
                                         parse_nvs_keys(raw))
                files.append((key.name, raw, key.partition, key.offset, True,
                              job.keys_encrypted))
        if job.image:
            files.append((f"{job.name}.bin", maker.image(index, values, keys), job.name,
                          job.offset, False, False))
    return files


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


_STATE: _State | None = None


def _end_with_parent() -> None:
    """Make this worker die with the batch's parent process (Linux: PR_SET_PDEATHSIG),
    so a killed batch never keeps writing; and leave Ctrl-C to the parent, which ends
    the pool (no worker prints a KeyboardInterrupt traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(state: _State) -> None:
    global _STATE
    _end_with_parent()
    _STATE = state


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
    items = [{"name": n, "partition": p, "offset": None if o is None else f"{o:#x}",
              "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "secret": s,
              "encrypted": e} for n, d, p, o, s, e in files]
    record = {"device_id": device, "product": state.batch.product, "inputs_sha256": digest,
              "derivation": DERIVATION_VERSION,
              "files": items}
    tmp = os.path.join(devices, f".tmp-{state.tag}-{device}")
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.mkdir(tmp)
    for name, data, _, _, secret, _ in files:
        _write(os.path.join(tmp, name), data, secret)
    _write(os.path.join(tmp, RECORD), json.dumps(record).encode() + b"\n", False)
    if exists:
        old = os.path.join(devices, f".old-{state.tag}-{device}")
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old)
    else:
        os.rename(tmp, folder)
    return device, items, True


def _build_chunk(rows) -> tuple[list, tuple | None]:
    """Build a chunk of devices in a worker; an error comes back as data (exceptions
    with keyword fields do not survive pickling)."""
    state = _STATE
    assert state is not None
    done = []
    for device, line, values in rows:
        try:
            done.append(_build_device(state, device, line, values))
        except NvsSecureError as exc:
            return done, (type(exc).__name__, exc.message, exc.line or line, exc.hint)
        except OSError as exc:
            name = os.path.basename(exc.filename) if exc.filename else RECORD
            exc.filename = None
            reason = os_error(exc, name).message
            return done, ("InputError", f"device {device}: {reason}: devices/{device}/{name}",
                          line, None)
    return done, None


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's CSV-injection
    advice), so a partition named ``=1+2`` is never evaluated."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _index_text(results: Sequence[tuple[str, list, bool]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["device_id", "file", "partition", "offset", "encrypted", "size", "sha256"])
    for device, items, _ in results:
        for item in items:
            writer.writerow([_cell(device), _cell(f"devices/{device}/{item['name']}"),
                             _cell(item["partition"] or ""),
                             item["offset"] or "", "true" if item.get("encrypted") else "false",
                             item["size"], item["sha256"]])
    return out.getvalue()


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
              verify: bool = False) -> BatchResult:
    """Build the devices of ``table`` (this shard's) into ``out_dir/devices`` with
    ``jobs`` processes and write the shard's index; ``progress(done, total)`` is called
    as chunks finish.  Devices already built from the same inputs (and whose files have
    their recorded sizes; with ``verify``, their SHA-256) are skipped."""
    k, n = shard
    with output_lock(out_dir, scope=None if n == 1 else f"shard-{k}-of-{n}", wait_orphans=True):
        return _run_locked(batch, table, Path(out_dir), jobs=jobs, shard=shard,
                           progress=progress, rng=rng, verify=verify)


def _run_locked(batch: BatchPlan, table: DeviceTable, out_dir: Path, *, jobs: int,
                shard: tuple[int, int], progress: Callable[[int, int], None] | None,
                rng: Callable[[int], bytes], verify: bool) -> BatchResult:
    k, n = shard
    rows = table.rows[k - 1::n]
    devices_dir = out_dir / "devices"
    tag = f"{k}-of-{n}"
    index = out_dir / ("index.csv" if n == 1 else f"index-{tag}.csv")
    try:
        # The index describes a finished run: it goes before anything is built, so a run
        # with other inputs that is killed never leaves an index its files do not match.
        index.unlink(missing_ok=True)
        devices_dir.mkdir(parents=True, exist_ok=True)
        _recover(devices_dir, tag)
    except OSError as exc:
        raise os_error(exc, out_dir) from None
    maker = ImageMaker(batch, table.columns)
    state = _State(batch, maker, _base_digest(batch, table.columns, maker.layouts),
                   devices_dir, tag, rng, verify)
    jobs = max(1, min(jobs, math.ceil(len(rows) / 64) or 1))
    size = max(8, min(500, math.ceil(len(rows) / (jobs * 8)) or 1))
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    results: dict[str, tuple[str, list, bool]] = {}
    done = 0

    def collect(outcome) -> None:
        nonlocal done
        built, error = outcome
        for item in built:
            results[item[0]] = item
        done += len(built)
        if progress is not None:
            progress(done, len(rows))
        if error is not None:
            kind, message, line, hint = error
            cls = {"KeyMaterialError": KeyMaterialError, "CapacityError": CapacityError}.get(
                kind, InputError)
            raise cls(message, file=table.file, line=line, hint=hint)

    try:
        if jobs == 1:
            global _STATE
            saved, _STATE = _STATE, state
            try:
                for chunk in chunks:
                    collect(_build_chunk(chunk))
            finally:
                _STATE = saved
        else:
            with multiprocessing.get_context().Pool(jobs, _init_worker, (state,)) as pool:
                for outcome in pool.imap_unordered(_build_chunk, chunks):
                    collect(outcome)
    except BaseException:
        for leftover in devices_dir.glob(f".tmp-{tag}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        raise
    ordered = [results[device] for device, _, _ in rows]
    write_atomic(index, _index_text(ordered).encode())
    built = sum(1 for r in ordered if r[2])
    return BatchResult(built, len(ordered) - built, index)

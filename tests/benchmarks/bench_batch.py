"""Benchmark: what users run, against the reference generator doing the same work, in
one run on this machine (both sides' images checked byte-identical).

    .venv/bin/python tests/benchmarks/bench_batch.py [--devices N] [--rss-devices A,B]

Lines:
* per-image full layout (``build_nvs_image``, not the batch template) against
  esp-idf-nvs-partition-gen's API, encrypted and plain, in one process each;
* the single-image CLI (``idf-nvs-secure nvs build``) against the reference CLI
  (``python -m esp_idf_nvs_partition_gen encrypt``), whole processes;
* an 8 MB encrypted image's time over a 1 MB one's (linear is about 8): its
  encryption alone and the whole build;
* the whole ``batch`` command (example project, product ``pro``, 64 KB NVS) against a
  reference loop that does the same work and writes the same files: it reads and
  checks the same devices CSV, derives each device's keys with the same HKDF, builds
  the image with the reference generator's API, writes nvs.bin, nvs_keys.bin and a
  device record with the SHA-256 of each, and an index; both sides with the same
  number of processes (2), encrypted and plain; then both with the packed layout
  (``--layout packed``: one devices.bin and an index of offsets; the reference loop
  writes the same pack);
* resuming a finished batch as a share of a full build;
* peak RSS of the batch command at two sizes (5,000 and 50,000 devices by default).

Each whole-batch line also gives both sides' CPU time (user + system of the process
tree), steadier than wall time on a shared machine.  The last line is
``speedup: N.Nx``: the whole batch command, encrypted, today's files, wall time.
Not a test (pytest collects test_*.py only); the reference package is a test-only
dependency.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import hashlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from fixture_projects import copy_example_project  # noqa: E402

from idf_nvs_secure.formats.nvs_image import NvsEntry, build_nvs_image  # noqa: E402
from idf_nvs_secure.formats.nvs_keys import build_nvs_keys, generate_nvs_keys  # noqa: E402
from idf_nvs_secure.inputs.keysource import derive_nvs_keys  # noqa: E402

SECRET_HEX = "ab" * 32
JOBS = 2
PY = sys.executable
TOOL = str(Path(PY).with_name("idf-nvs-secure"))


# --- the reference generator, driven as its generate() drives it -----------------------


def reference_image(entries, size: int, keys=None, version: int = 2) -> bytes:
    """``size``: the partition size (the generator leaves its last page, as generate()
    does)."""
    from esp_idf_nvs_partition_gen import nvs_partition_gen as ref

    out = io.BytesIO()
    nvs = ref.nvs_open(out, size - 0x1000, ref.Page.VERSION2 if version == 2 else ref.Page.VERSION1,
                       is_encrypt=keys is not None,
                       key=(keys.data_key + keys.tweak_key) if keys is not None else None)
    namespace = None
    for e in entries:
        if e.namespace != namespace:
            ref.write_entry(nvs, e.namespace, "namespace", "", "")
            namespace = e.namespace
        if e.type == "blob":
            ref.write_entry(nvs, e.key, "data", "hex2bin", e.value.hex())
        elif e.type == "string":
            ref.write_entry(nvs, e.key, "data", "string", e.value)
        else:
            ref.write_entry(nvs, e.key, "data", e.type, repr(e.value) if isinstance(
                e.value, float) else str(e.value))
    ref.nvs_close(nvs)
    return out.getvalue()


def _best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --- per image ---------------------------------------------------------------------------


def sample_entries(count: int = 23) -> list[NvsEntry]:
    out = [NvsEntry("factory", "serial", "string", "SN-00000001")]
    out += [NvsEntry("factory", f"cal{i:02d}", "u32", i * 104729) for i in range(count - 3)]
    out.append(NvsEntry("factory", "cert", "blob", bytes(range(256)) * 6))
    out.append(NvsEntry("factory", "wifi_pass", "string", "wpa-0123456789"))
    return out


def per_image(images: int = 300) -> None:
    entries = sample_entries()
    keys = generate_nvs_keys(os.urandom)
    size = 0x6000
    for label, k in (("encrypted", keys), ("plain", None)):
        assert build_nvs_image(entries, size, keys=k) == reference_image(entries, size, k)
        ours = _best(lambda: [build_nvs_image(entries, size, keys=k) for _ in range(images)])
        ref = _best(lambda: [reference_image(entries, size, k) for _ in range(images)], 1)
        print(f"per-image full layout, {label}: idf_nvs_secure {images / ours:8.0f}/s, "
              f"reference {images / ref:6.0f}/s: {ref / ours:.1f}x", flush=True)


def scaling() -> None:
    """8 MB over 1 MB: the whole encrypted build, and its encryption alone (XTS over the
    image's written entries, as build_nvs_image calls it)."""
    from idf_nvs_secure.formats.nvs_reader import parse_nvs_image
    from idf_nvs_secure.formats.xts import xts_encrypt_units

    keys = generate_nvs_keys(os.urandom)
    build, crypt = {}, {}
    for size in (1 << 20, 8 << 20):
        pages = size // 4096 - 1
        entries = [NvsEntry("ns", f"k{n}", "u32", n) for n in range(int(pages * 30 * 0.8))]
        build_nvs_image(entries, size, keys=keys)
        build[size] = _best(lambda: build_nvs_image(entries, size, keys=keys))
        plain = build_nvs_image(entries, size)
        offsets = [p.index * 4096 + 64 + 32 * e for p in parse_nvs_image(plain).pages
                   for e in range(p.used)]
        data = b"".join(plain[o:o + 32] for o in offsets)
        crypt[size] = _best(lambda: xts_encrypt_units(keys.data_key, keys.tweak_key, data,
                                                      offsets), 5)
    big, small = 8 << 20, 1 << 20
    print(f"encrypted image 8 MB / 1 MB: encryption {crypt[big] / crypt[small]:.1f}x "
          f"({crypt[small] * 1000:.1f} ms, {crypt[big] * 1000:.1f} ms), whole build "
          f"{build[big] / build[small]:.1f}x ({build[small] * 1000:.0f} ms, "
          f"{build[big] * 1000:.0f} ms); linear is 8", flush=True)


def single_cli(tmp: Path) -> None:
    csv_file = tmp / "single.csv"
    rows = ["key,type,encoding,value", "factory,namespace,,"]
    rows += [f"cal{i:02d},data,u32,{i * 104729}" for i in range(200)]
    rows.append("serial,data,string,SN-00000001")
    csv_file.write_text("\n".join(rows) + "\n")
    keys_file = tmp / "keys.bin"
    keys_file.write_bytes(build_nvs_keys(generate_nvs_keys(os.urandom)))
    ours_out, ref_out = tmp / "ours.bin", tmp / "ref.bin"
    ours = [TOOL, "nvs", "build", str(csv_file), "--size", "0x6000", "--keys", str(keys_file),
            "-o", str(ours_out)]
    ref = [PY, "-m", "esp_idf_nvs_partition_gen", "encrypt", str(csv_file), str(ref_out),
           "0x6000", "--inputkey", str(keys_file), "--outdir", str(tmp)]
    run = lambda argv: subprocess.run(argv, check=True, capture_output=True, cwd=tmp)  # noqa: E731
    run(ours)
    run(ref)
    ref_file = ref_out if ref_out.is_file() else next(tmp.rglob("ref.bin"))
    assert ours_out.read_bytes() == ref_file.read_bytes(), "single images differ"
    t_ours = _best(lambda: run(ours), 7)
    t_ref = _best(lambda: run(ref), 7)
    print(f"single nvs build CLI (24 KB, encrypted): idf_nvs_secure {t_ours * 1000:.0f} ms, "
          f"reference {t_ref * 1000:.0f} ms: {t_ref / t_ours:.1f}x", flush=True)


# --- the whole batch ---------------------------------------------------------------------


def make_project(root: Path, devices: int, encrypted: bool) -> tuple[Path, Path]:
    project = copy_example_project(root)
    if not encrypted:
        with open(project / "sdkconfig.defaults", "a") as fh:
            fh.write("CONFIG_NVS_ENCRYPTION=n\n")
    rows = ["device_id,device.serial:string,device.serial_base,wifi.pass"]
    rows += [f"SN-{d:06d},ESP-SENSOR-{d:06d},{0xDEADBEEF0000 + d:#x},wpa-{d * 2654435761 % 2**32:08x}"
             for d in range(devices)]
    table = root / "devices.csv"
    table.write_text("\n".join(rows) + "\n")
    return project, table


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("IDF_PATH", "IDF_TARGET", "SDKCONFIG_DEFAULTS")}
    env.update(EXAMPLE_WIFI_PASSWORD="bench-password", NVS_MASTER_SECRET=SECRET_HEX)
    return env


def ours_batch(project: Path, table: Path, out: Path, layout: str = "folders") -> float:
    argv = [TOOL, "batch", str(project), "--product", "pro", "--devices", str(table),
            "-o", str(out), "-j", str(JOBS), "--layout", layout]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=_env())
    return time.perf_counter() - start


def _child_cpu() -> float:
    """User + system CPU seconds of finished child processes (and their children): on a
    shared machine a steadier measure than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_REF: dict = {}


def _ref_init(state: dict) -> None:
    _REF.update(state)


def _ref_chunk(task) -> list:
    from idf_nvs_secure.release.devices_csv import device_entries

    s = _REF
    out = []
    first, rows = task
    for number, (device, _line, values) in enumerate(rows, first):
        entries = device_entries(s["template"], s["slots"], s["columns"], values)
        files = []
        keys = None
        if s["encrypted"]:
            keys = derive_nvs_keys(s["master"], product="pro", partition="nvs_keys",
                                   device_id=device)
            files.append(("nvs_keys.bin", build_nvs_keys(keys), 0o600))
        files.append(("nvs.bin", reference_image(entries, s["size"], keys), 0o644))
        if s["packed"]:  # one pack file: every device at its place, as ours
            blob = b"".join(data for _, data, _ in files)
            fd = s.get("fd") or s.setdefault("fd", os.open(s["pack"], os.O_WRONLY))
            os.pwrite(fd, blob, number * len(blob))
            out.append((device, [{"name": name, "size": len(data), "offset": number * len(blob),
                                  "sha256": hashlib.sha256(data).hexdigest()}
                                 for name, data, _ in files]))
            continue
        folder = os.path.join(s["out"], "devices", device)
        os.makedirs(folder)
        items = []
        for name, data, mode in files:
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, data)
            os.close(fd)
            items.append({"name": name, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
        with open(os.path.join(folder, "device.json"), "w") as fh:
            json.dump({"device_id": device, "files": items}, fh)
        out.append((device, items))
    return out


def reference_batch(project: Path, table: Path, out: Path, encrypted: bool,
                    packed: bool = False) -> float:
    """The same work with the reference generator for the images (2 processes)."""
    from idf_nvs_secure.inputs.project import load_project
    from idf_nvs_secure.plan.project_plan import plan_for_project
    from idf_nvs_secure.release.batch import plan_batch
    from idf_nvs_secure.release.devices_csv import entry_layouts, load_devices

    start = time.perf_counter()
    env = _env()
    resolved, plan = plan_for_project(load_project(project), "pro", env=env)
    batch = plan_batch(resolved, plan, env=env)
    devices = load_devices(table, batch)
    (template, slots), = entry_layouts(batch, devices.columns)
    state = {"template": tuple(template), "slots": slots, "columns": devices.columns,
             "size": batch.jobs[0].size, "encrypted": encrypted, "master": batch.master,
             "out": str(out), "packed": packed, "pack": str(out / "devices.bin")}
    if packed:
        (out / "devices.bin").touch(mode=0o600)
    rows = devices.rows
    size = max(8, len(rows) // (JOBS * 8))
    chunks = [(i, rows[i:i + size]) for i in range(0, len(rows), size)]
    results = []
    with multiprocessing.get_context("fork").Pool(JOBS, _ref_init, (state,)) as pool:
        for part in pool.imap(_ref_chunk, chunks):
            results.extend(part)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["device_id", "file", "size", "sha256"])
    for device, items in results:
        for item in items:
            writer.writerow([device, f"devices.bin@{item['offset']}" if packed else
                             f"devices/{device}/{item['name']}", item["size"], item["sha256"]])
    (out / "index.csv").write_text(buf.getvalue())
    return time.perf_counter() - start


def _same_devices(ours: Path, ref: Path, devices: int, encrypted: bool, packed: bool) -> None:
    """Both sides' files are byte-identical (packs whole; folders: 50 devices)."""
    if packed:
        from idf_nvs_secure.release.packed import read_packed_device

        assert filecmp.cmp(ours / "devices.bin", ref / "devices.bin", shallow=False)
        read_packed_device(ours, f"SN-{devices - 1:06d}")  # the index matches the pack
        return
    for d in range(0, devices, max(1, devices // 50)):
        name = f"SN-{d:06d}"
        for f in ("nvs.bin",) + (("nvs_keys.bin",) if encrypted else ()):
            assert (ours / "devices" / name / f).read_bytes() == \
                (ref / "devices" / name / f).read_bytes(), (name, f)


def whole_batch(tmp: Path, devices: int) -> float:
    speedups = {}
    for encrypted, layout in ((True, "folders"), (False, "folders"), (True, "packed"),
                              (False, "packed")):
        label = "encrypted" if encrypted else "plain"
        root = tmp / f"batch-{label}-{layout}"
        root.mkdir()
        project, table = make_project(root, devices, encrypted)
        ours_out, ref_out = root / "ours", root / "ref"
        ref_out.mkdir()
        cpu0 = _child_cpu()
        t_ours = ours_batch(project, table, ours_out, layout)
        cpu1 = _child_cpu()
        start = time.perf_counter()  # the reference loop as a whole process too
        subprocess.run([PY, __file__, "--reference-batch", str(project), str(table),
                        str(ref_out), "1" if encrypted else "0", layout], check=True,
                       env=_env())
        t_ref = time.perf_counter() - start
        cpu_ours, cpu_ref = cpu1 - cpu0, _child_cpu() - cpu1
        _same_devices(ours_out, ref_out, devices, encrypted, layout == "packed")
        speedups[label, layout] = t_ref / t_ours
        what = ("today's files per device" if layout == "folders" else
                "packed: one devices.bin and an index of offsets")
        print(f"whole batch command, {devices} devices, {label}, {what}, {JOBS} processes "
              f"each: idf_nvs_secure {t_ours:.2f} s, reference loop {t_ref:.2f} s: "
              f"{t_ref / t_ours:.1f}x (CPU time {cpu_ours:.2f} s vs {cpu_ref:.2f} s: "
              f"{cpu_ref / cpu_ours:.1f}x)", flush=True)
        if encrypted and layout == "folders":
            t_resume = ours_batch(project, table, ours_out)
            print(f"resume of a finished batch: {t_resume:.2f} s, "
                  f"{100 * t_resume / t_ours:.0f}% of a full build", flush=True)
        shutil.rmtree(root)
    return speedups["encrypted", "folders"]


def peak_rss(tmp: Path, sizes: list[int]) -> None:
    rss = {}
    for devices in sizes:
        root = tmp / f"rss-{devices}"
        root.mkdir()
        project, table = make_project(root, devices, True)
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
                ".ru_maxrss)")
        done = subprocess.run([PY, "-c", code, TOOL, "batch", str(project), "--product", "pro",
                               "--devices", str(table), "-o", str(root / "out"), "-j",
                               str(JOBS)], check=True, capture_output=True, text=True,
                              env=_env())
        rss[devices] = int(done.stdout.strip()) / 1024
        shutil.rmtree(root)
    a, b = sizes
    print(f"peak RSS of the batch command: {rss[a]:.0f} MB at {a} devices, {rss[b]:.0f} MB at "
          f"{b}: {rss[b] / rss[a]:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rss-devices", default="5000,50000")
    parser.add_argument("--reference-batch", nargs=5,
                        metavar=("PROJECT", "CSV", "OUT", "ENC", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_batch:
        project, table, out, enc, layout = args.reference_batch
        reference_batch(Path(project), Path(table), Path(out), enc == "1", layout == "packed")
        return
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}")
    # Both sides write the same files; on a tmpfs the file system does not drown the
    # difference (on this machine's disk, creating 30,000 files costs seconds of kernel
    # time for either tool).
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    print(f"files written under {where or tempfile.gettempdir()}")
    with tempfile.TemporaryDirectory(prefix="bench-", dir=where) as name:
        tmp = Path(name)
        per_image()
        single_cli(tmp)
        scaling()
        peak_rss(tmp, [int(x) for x in args.rss_devices.split(",")])
        speedup = whole_batch(tmp, args.devices)
    print(f"speedup: {speedup:.1f}x")


if __name__ == "__main__":
    main()

"""Benchmark: per-device encrypted NVS images, this package against the reference generator.

Builds the same 2,000 encrypted per-device images (a 0x6000-byte partition, one
namespace, 23 entries: a serial string, twenty u32 values, a 1,500-byte certificate blob
and a Wi-Fi password string; each device with its own HKDF-derived keys) twice in one
process: with idf_nvs_secure and with esp-idf-nvs-partition-gen's Python API
(``nvs_open`` / ``write_entry`` / ``nvs_close``, as its ``generate()`` drives them).
As in a devices.csv, four values are the device's own (serial, one u32, certificate,
password) and nineteen u32 values are the product's.

idf_nvs_secure builds them the way ``idf-nvs-secure batch`` does: the image is laid out
once (:func:`make_nvs_template`, timed) and refilled and encrypted per device
(:func:`fill_nvs_template`).  For comparison it also times a full
:func:`build_nvs_image` per device.  Timed loops keep no images; a check afterwards
compares both tools' bytes for a sample of devices.  Ends with ``speedup: N.Nx``
(template path against the reference).

    .venv/bin/python tests/benchmarks/bench_batch.py [--devices N]

``--make-project DIR`` instead writes a project and a devices.csv (with one
certificate file per device) for timing the whole ``idf-nvs-secure batch`` command::

    .venv/bin/python tests/benchmarks/bench_batch.py --make-project /tmp/b --devices 10000
    time NVS_MASTER_SECRET=$(printf 'ab%.0s' {1..32}) .venv/bin/idf-nvs-secure batch \\
        /tmp/b --devices /tmp/b/devices.csv -o /tmp/b/out

Not a test (pytest collects test_*.py only); the reference package is a test-only
dependency.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from idf_nvs_secure.formats.nvs_image import NvsEntry, build_nvs_image
from idf_nvs_secure.inputs.keysource import derive_nvs_keys

PARTITION_SIZE = 0x6000
NAMESPACE = "factory"
SECRET = bytes.fromhex("ab" * 32)


def certificate(device: int) -> bytes:
    """1,500 bytes that differ per device (a stand-in for a DER certificate)."""
    seed = device.to_bytes(4, "little")
    return (b"\x30\x82\x05\xd8" + seed * 374)[:1500]


def device_entries(device: int) -> list[NvsEntry]:
    entries = [NvsEntry(NAMESPACE, "serial", "string", f"SN-{device:08d}")]
    entries.append(NvsEntry(NAMESPACE, "cal00", "u32", device * 7919 % 2**32))
    entries += [NvsEntry(NAMESPACE, f"cal{i:02d}", "u32", i * 104729) for i in range(1, 20)]
    entries.append(NvsEntry(NAMESPACE, "cert", "blob", certificate(device)))
    password = f"wpa-{device * 2654435761 % 2**32:08x}"
    entries.append(NvsEntry(NAMESPACE, "wifi_pass", "string", password))
    return entries


def reference_image(ref, entries: list[NvsEntry], keys) -> bytes:
    """The reference generator's image, driven as its generate() drives it."""
    out = io.BytesIO()
    nvs = ref.nvs_open(out, PARTITION_SIZE - 0x1000, ref.Page.VERSION2, is_encrypt=True,
                       key=keys.data_key + keys.tweak_key)
    ref.write_entry(nvs, NAMESPACE, "namespace", "", "")
    for e in entries:
        if e.type == "blob":
            ref.write_entry(nvs, e.key, "data", "hex2bin", e.value.hex())
        elif e.type == "string":
            ref.write_entry(nvs, e.key, "data", "string", e.value)
        else:
            ref.write_entry(nvs, e.key, "data", e.type, str(e.value))
    ref.nvs_close(nvs)
    return out.getvalue()


#: Positions (in device_entries order) of the values each device has its own of.
VARIABLE = (0, 1, 21, 22)


def bench(devices: int, sample: int = 200) -> None:
    from esp_idf_nvs_partition_gen import nvs_partition_gen as ref

    from idf_nvs_secure.formats.nvs_template import fill_nvs_template, make_nvs_template

    work = [(device_entries(d), derive_nvs_keys(SECRET, product="bench", partition="nvs_keys",
                                                device_id=f"SN-{d:08d}"))
            for d in range(devices)]
    values = [[entries[i].value for i in VARIABLE] for entries, _ in work]

    start = time.perf_counter()
    template = make_nvs_template(work[0][0], PARTITION_SIZE, variable=VARIABLE)
    for own, (_, keys) in zip(values, work):
        fill_nvs_template(template, own, keys=keys)
    ours_time = time.perf_counter() - start

    start = time.perf_counter()
    for entries, keys in work:
        build_nvs_image(entries, PARTITION_SIZE, keys=keys)
    full_time = time.perf_counter() - start

    start = time.perf_counter()
    for entries, keys in work:
        reference_image(ref, entries, keys)
    ref_time = time.perf_counter() - start

    step = max(1, devices // sample)
    for d in range(0, devices, step):
        entries, keys = work[d]
        expected = reference_image(ref, entries, keys)
        if not (fill_nvs_template(template, values[d], keys=keys) == expected ==
                build_nvs_image(entries, PARTITION_SIZE, keys=keys)):
            sys.exit(f"device {d}: images differ from the reference")
    ours_rate, full_rate, ref_rate = (devices / ours_time, devices / full_time,
                                      devices / ref_time)
    print(f"{devices} encrypted images of 0x{PARTITION_SIZE:x} bytes, {len(work[0][0])} "
          f"entries ({len(VARIABLE)} per device), per-device keys; "
          f"{len(range(0, devices, step))} checked identical to the reference")
    print(f"idf_nvs_secure (batch template): {ours_rate:9.0f} images/s ({ours_time:.3f} s)")
    print(f"idf_nvs_secure (build_nvs_image): {full_rate:8.0f} images/s ({full_time:.3f} s, "
          f"{full_rate / ref_rate:.1f}x)")
    print(f"esp-idf-nvs-partition-gen:       {ref_rate:9.0f} images/s ({ref_time:.3f} s)")
    print(f"speedup: {ours_rate / ref_rate:.1f}x")


PROJECT = """\
version: 1
partitions: partitions.yaml
master_secret: {env: NVS_MASTER_SECRET}
keys: {source: derive}
nvs:
  nvs: {values: [values.yaml]}
"""
PARTITIONS = """\
table: {offset: 0x8000, flash_size: 4MB}
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 0x6000}
  - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted]}
  - {name: factory, type: app, subtype: factory, size: 1M}
"""
SDKCONFIG = """\
CONFIG_IDF_TARGET="esp32"
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
CONFIG_SECURE_FLASH_ENC_ENABLED=y
CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y
CONFIG_NVS_ENCRYPTION=y
"""


def make_project(folder: Path, devices: int) -> None:
    """A project whose batch builds the benchmark's images, one certificate file each."""
    base = device_entries(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "certs").mkdir(exist_ok=True)
    (folder / "nvs_secure.yaml").write_text(PROJECT)
    (folder / "partitions.yaml").write_text(PARTITIONS)
    (folder / "sdkconfig.defaults").write_text(SDKCONFIG)
    (folder / "certs" / "base.der").write_bytes(certificate(0))
    lines = [f"{NAMESPACE}:"]
    for e in base:
        if e.type == "blob":
            lines.append(f"  {e.key}: {{type: blob, file: certs/base.der}}")
        elif e.type == "string":
            lines.append(f"  {e.key}: \"{e.value}\"")
        else:
            lines.append(f"  {e.key}: {{type: {e.type}, value: {e.value}}}")
    (folder / "values.yaml").write_text("\n".join(lines) + "\n")
    rows = ["device_id,factory.serial,factory.cal00,factory.cert,factory.wifi_pass"]
    for d in range(devices):
        entries = {e.key: e.value for e in device_entries(d)}
        name = f"certs/SN-{d:08d}.der"
        (folder / name).write_bytes(entries["cert"])
        rows.append(f"SN-{d:08d},{entries['serial']},{entries['cal00']},{name},"
                    f"{entries['wifi_pass']}")
    (folder / "devices.csv").write_text("\n".join(rows) + "\n")
    print(f"wrote {folder} with {devices} devices")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--make-project", type=Path, default=None)
    args = parser.parse_args()
    if args.make_project:
        make_project(args.make_project, args.devices or 10_000)
    else:
        bench(args.devices or 2000)


if __name__ == "__main__":
    main()

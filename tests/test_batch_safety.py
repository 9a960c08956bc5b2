"""Batches that collide, are killed, fill the disk or meet hostile names: the findings
of "Keys and outputs are never lost, never mixed, and never escape their folder",
reproduced with real processes (the batch command in a subprocess, as a station runs it).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.release import batch as batch_module

from fixture_projects import copy_example_project

SECRET = "5a" * 32
ENV = {"EXAMPLE_WIFI_PASSWORD": "base-password", "NVS_MASTER_SECRET": SECRET}


def _devices(path: Path, count: int, prefix: str = "SN") -> Path:
    lines = ["device_id,device.serial:string,wifi.pass"]
    lines += [f"{prefix}-{i:05d},ESP-{i:05d},pass-{i:05d}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _argv(project: Path, devices: Path, out: Path, jobs: int = 2) -> list[str]:
    return [sys.executable, "-m", "idf_nvs_secure", "batch", str(project), "--product", "pro",
            "--devices", str(devices), "-o", str(out), "-j", str(jobs)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("IDF_PATH", "IDF_TARGET", "SDKCONFIG_DEFAULTS")}
    return {**env, **ENV}


def _first_batch(tmp_path: Path, count: int) -> tuple[Path, Path, Path, list[str]]:
    """A finished in-process batch of ``count`` devices: the project, the devices CSV,
    the output folder and the command's arguments (to run it again)."""
    project = copy_example_project(tmp_path)
    devices = _devices(tmp_path / "devices.csv", count)
    out = tmp_path / "out"
    args = ["batch", str(project), "--product", "pro", "--devices", str(devices), "-o", str(out),
            "-j", "1"]
    assert CliRunner().invoke(cli, args, env=ENV).exit_code == 0
    return project, devices, out, args


def _consistent(out: Path) -> int:
    """Every row of the index matches its file; every device folder is whole."""
    rows = list(csv.DictReader((out / "index.csv").open()))
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]
    devices = {r["device_id"] for r in rows}
    for folder in (out / "devices").iterdir():
        assert not folder.name.startswith("."), folder  # no half-built device left
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["device.json", "flash_args", "flasher_args.json", "nvs.bin",
                         "nvs_keys.bin"], (folder, names)
    return len(devices)


def test_two_batches_on_one_folder(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path)
    devices = _devices(tmp_path / "devices.csv", 3000)
    out = tmp_path / "out"
    first = subprocess.Popen(_argv(project, devices, out), env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / "devices").is_dir() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(_argv(project, devices, out), env=_env(), capture_output=True,
                            text=True, timeout=60)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert "another run is writing here (pid" in second.stderr
    assert "Traceback" not in second.stderr
    assert _consistent(out) == 3000


@pytest.mark.parametrize("attempt", range(2))
def test_parent_killed_then_resumed_at_once(tmp_path: Path, attempt: int) -> None:
    project = copy_example_project(tmp_path)
    devices = _devices(tmp_path / "devices.csv", 4000)
    out = tmp_path / "out"
    run = subprocess.Popen(_argv(project, devices, out), env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (out / "devices").is_dir() and sum(1 for _ in (out / "devices").iterdir()) > 200:
            break
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)  # the parent only: its workers must end with it
    run.wait()
    time.sleep(0.05 * attempt)
    again = subprocess.run(_argv(project, devices, out), env=_env(), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _consistent(out) == 4000


def test_changed_inputs_invalidate_the_index_before_anything(tmp_path: Path, monkeypatch) -> None:
    project, devices, out, args = _first_batch(tmp_path, 40)
    assert (out / "index.csv").is_file()
    # A re-run with another secret dies part-way: no stale index is left behind.
    calls = []
    real = batch_module._build_device

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(batch_module, "_build_device", dying)
    result = CliRunner().invoke(cli, args, env={**ENV, "NVS_MASTER_SECRET": "6b" * 32})
    assert result.exit_code == 130
    assert not (out / "index.csv").exists()


def test_a_full_disk_names_the_file(tmp_path: Path, monkeypatch) -> None:
    project = copy_example_project(tmp_path)
    devices = _devices(tmp_path / "devices.csv", 5)
    real = batch_module._write

    def full(path, data, secret):
        if path.endswith("nvs.bin"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, data, secret)

    monkeypatch.setattr(batch_module, "_write", full)
    result = CliRunner().invoke(cli, ["batch", str(project), "--product", "pro", "--devices",
                                      str(devices), "-o", str(tmp_path / "out"), "-j", "1"],
                                env=ENV)
    assert result.exit_code == 2
    assert "no space left on the device: devices/SN-00000/nvs.bin" in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_index_cells_are_never_formulas() -> None:
    text = batch_module._index_text([("SN-1", [{"name": "=1+2.bin", "partition": "=1+2",
                                                 "offset": "0x9000", "size": 1, "sha256": "0"}],
                                      True)])
    row = text.splitlines()[1].split(",")
    assert row[1] == "devices/SN-1/=1+2.bin" and row[2] == "'=1+2"
    assert batch_module._cell("-1") == "'-1" and batch_module._cell("@x") == "'@x"
    assert batch_module._cell("SN-1") == "SN-1"


def test_resume_trusts_sizes_and_verify_rehashes(tmp_path: Path) -> None:
    project, devices, out, args = _first_batch(tmp_path, 3)
    image = out / "devices" / "SN-00001" / "nvs.bin"
    good = image.read_bytes()
    image.write_bytes(b"\x00" + good[1:])  # same size, other bytes
    result = CliRunner().invoke(cli, args, env=ENV)
    assert "(0 built, 3 already done)" in result.output  # no file re-read
    result = CliRunner().invoke(cli, args + ["--verify"], env=ENV)
    assert "(1 built, 2 already done)" in result.output
    assert image.read_bytes() == good
    image.write_bytes(good[:-1])  # another size: found without --verify
    assert "(1 built, 2 already done)" in CliRunner().invoke(cli, args, env=ENV).output


@pytest.mark.parametrize("moment", ["checking", "building"])
def test_ctrl_c_ends_the_batch_quietly_and_resume_finishes_it(tmp_path: Path,
                                                              moment: str) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group, the pool's
    workers included: the batch exits 130 with one line, no worker traceback, and a
    re-run completes the batch."""
    project = copy_example_project(tmp_path)
    devices = _devices(tmp_path / "devices.csv", 4000)
    out = tmp_path / "out"
    run = subprocess.Popen(_argv(project, devices, out), env=_env(), start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    want = 100
    while time.monotonic() < deadline and run.poll() is None:
        if moment == "checking":  # the pool is up: the workers' first pass over the CSV
            children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
            if children.exists() and len(children.read_text().split()) >= 2:
                break
            time.sleep(0.002)
            continue
        if (out / "devices").is_dir() and sum(1 for _ in (out / "devices").iterdir()) > want:
            break
        time.sleep(0.002)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=60)
    if run.returncode == 0:  # finished before the signal came: nothing to check
        pytest.skip("the batch finished before Ctrl-C")
    assert run.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines() == ["error: interrupted"], err
    again = subprocess.run(_argv(project, devices, out), env=_env(), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _consistent(out) == 4000


def test_a_finished_run_of_the_same_csv_is_not_read_again(tmp_path: Path, monkeypatch) -> None:
    """Resume of a finished batch: the same plan and CSV text (no cell naming a file)
    need only the files' sizes, not a second pass over the rows."""
    project, devices, out, args = _first_batch(tmp_path, 30)
    read = []
    real = batch_module._check_chunk
    monkeypatch.setattr(batch_module, "_check_chunk", lambda i: read.append(i) or real(i))
    assert "(0 built, 30 already done)" in CliRunner().invoke(cli, args, env=ENV).output
    assert read == []
    (out / "devices" / "SN-00003" / "nvs.bin").write_bytes(b"short")  # another size
    assert "(1 built, 29 already done)" in CliRunner().invoke(cli, args, env=ENV).output
    assert read  # the rows were read this time
    devices.write_text(devices.read_text().replace("ESP-00004", "ESP-00444"))
    assert "(1 built, 29 already done)" in CliRunner().invoke(cli, args, env=ENV).output

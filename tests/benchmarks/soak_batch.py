"""Soak: kill a 5,000-device batch at 10 random points, alternately the whole process
group and the parent only, resume right after each kill, and check every device at the
end.

    .venv/bin/python tests/benchmarks/soak_batch.py [DEVICES] [KILLS]

Last line: ``kills: N, resumed: N, devices complete: D, mismatched: M``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from fixture_projects import copy_example_project  # noqa: E402


def _check(out: Path) -> tuple[int, int]:
    """(files whose bytes differ from the index, devices complete)."""
    index = list(csv.DictReader((out / "index.csv").open()))
    bad = sum(1 for r in index
              if hashlib.sha256((out / r["file"]).read_bytes()).hexdigest() != r["sha256"])
    whole = sum(1 for d in (out / "devices").iterdir()
                if not d.name.startswith(".") and (d / "device.json").is_file())
    return bad, whole


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    kills = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    rng = random.Random(int(os.environ.get("SOAK_SEED", "20261201")))
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        project = copy_example_project(root)
        devices = root / "devices.csv"
        rows = ["device_id,device.serial:string,wifi.pass"]
        rows += [f"SN-{i:05d},ESP-{i:05d},pass-{i:05d}" for i in range(count)]
        devices.write_text("\n".join(rows) + "\n")
        out = root / "out"
        env = {**{k: v for k, v in os.environ.items()
                  if k not in ("IDF_PATH", "IDF_TARGET", "SDKCONFIG_DEFAULTS")},
               "EXAMPLE_WIFI_PASSWORD": "soak", "NVS_MASTER_SECRET": "5a" * 32}
        argv = [sys.executable, "-m", "idf_nvs_secure", "batch", str(project), "--product",
                "pro", "--devices", str(devices), "-o", str(out)]
        done_kills = resumed = mismatched = 0
        complete = count
        for _ in range(kills * 4):
            if done_kills == kills:
                break
            run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(rng.uniform(0.2, 1.2))
            if run.poll() is None:
                if done_kills % 2:
                    run.send_signal(signal.SIGKILL)  # the parent only
                else:
                    os.killpg(run.pid, signal.SIGKILL)  # the whole group
                done_kills += 1
                run.wait()
                resume = subprocess.run(argv, env=env, capture_output=True, text=True)
                if resume.returncode != 0:  # the resume right after the kill must work
                    print(f"resume failed: {resume.stderr.strip()}")
                    break
                resumed += 1
                bad, whole = _check(out)
                mismatched += bad
                complete = min(complete, whole)
                shutil.rmtree(out)  # a fresh batch for the next kill
            else:
                run.wait()
                shutil.rmtree(out)  # finished before the kill: try again, earlier
        print(f"kills: {done_kills}, resumed: {resumed}, devices complete: {complete}, "
              f"mismatched: {mismatched}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

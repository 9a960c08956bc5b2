"""Start-up cost of the commands CMake and users run most, against ``python -c pass``
measured in the same run (whole processes, best and median of N runs).

    .venv/bin/python tests/benchmarks/bench_startup.py [N]

Goals (issue "One plan for every output"): cmake-dir <= 50 ms, --help <= 150 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
TOOL = str(Path(PY).with_name("idf-nvs-secure"))


def _time(argv: list[str], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return min(samples), statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "stamp.json"
        spec.write_text(json.dumps({"format": "idf-nvs-secure-stamp/1",
                                    "stamp": str(Path(tmp) / "env.stamp"),
                                    "env": ["NVS_MASTER_SECRET", "EXAMPLE_WIFI_PASSWORD"],
                                    "key": "00" * 32}))
        cases = [("python -c pass", [PY, "-c", "pass"]),
                 ("python -m idf_nvs_secure cmake-dir", [PY, "-m", "idf_nvs_secure", "cmake-dir"]),
                 ("python -m idf_nvs_secure cmake-stamp", [PY, "-m", "idf_nvs_secure",
                                                          "cmake-stamp", str(spec)]),
                 ("idf-nvs-secure --help", [TOOL, "--help"])]
        base = None
        print(f"start-up, {runs} runs each, {os.cpu_count()} cores:")
        for name, argv in cases:
            best, median = _time(argv, runs)
            base = base or best
            extra = "" if base == best else f"  (+{(best - base) * 1000:.0f} ms over python)"
            print(f"  {name:<40} best {best * 1000:6.1f} ms  median {median * 1000:6.1f} ms{extra}")


if __name__ == "__main__":
    main()

"""Regenerate cases.json and the .bin files here by running ESP-IDF's gen_esp32part.py.

Not a test and never imported by one: the tests read only the recorded results.  Run
from outside the repository, with the script extracted from an ESP-IDF checkout::

    git -C $ESP_IDF show v5.5:components/partition_table/gen_esp32part.py > /tmp/gen_v5.5.py
    git -C $ESP_IDF show master:components/partition_table/gen_esp32part.py > /tmp/gen_master.py
    python3 tests/reference/gen_esp32part/make_vectors.py /tmp/gen_v5.5.py [/tmp/gen_master.py ...]

The first script's results are recorded; every further script must give the same exit
status, stderr warnings and bytes, or this stops.  (master needs rich_click and
esp_pylib, which esptool installs.)
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
APP = "factory, app, factory, , 1M\n"

# (id, why, csv text, extra gen_esp32part.py arguments)
CASES = [
    # --- the flags column: split on ':', each piece compared exactly ------------------
    ("flags_colon", "the documented form", "nvs, data, nvs, , 0x6000, encrypted:readonly\n" + APP, []),
    ("flags_spaces_around_colon", "pieces are not stripped: 'encrypted ' is unknown",
     "nvs, data, nvs, , 0x6000, encrypted : readonly\n" + APP, []),
    ("flags_space_before_colon", "'encrypted ' is unknown",
     "nvs, data, nvs, , 0x6000, encrypted :readonly\n" + APP, []),
    ("flags_space_after_colon", "' readonly' is unknown",
     "nvs, data, nvs, , 0x6000, encrypted: readonly\n" + APP, []),
    ("flags_tab_before_colon", "a tab is not stripped either",
     "nvs, data, nvs, , 0x6000, encrypted\t:readonly\n" + APP, []),
    ("flags_field_whitespace", "the whole field is stripped, like every field",
     "nvs, data, nvs, , 0x6000,   encrypted:readonly  \t\n" + APP, []),
    ("flags_empty_pieces", "empty pieces are skipped",
     "nvs, data, nvs, , 0x6000, :encrypted::readonly:\n" + APP, []),
    ("flags_only_colon", "only empty pieces: no flags", "nvs, data, nvs, , 0x6000, :\n" + APP, []),
    ("flags_duplicate", "a flag twice is the same flag",
     "nvs, data, nvs, , 0x6000, encrypted:encrypted\n" + APP, []),
    ("flags_upper_case", "flag names are case-sensitive",
     "nvs, data, nvs, , 0x6000, Encrypted\n" + APP, []),
    ("flags_unknown", "an unknown name", "nvs, data, nvs, , 0x6000, secret\n" + APP, []),
    ("flags_comma_separated", "the seventh column is ignored by gen_esp32part.py (we refuse it)",
     "nvs, data, nvs, , 0x6000, encrypted, readonly\n" + APP, []),
    ("flags_readonly_small_nvs", "readonly lets NVS be under 0x3000",
     "nvs, data, nvs, , 0x2000, readonly\n" + APP, []),
    # --- --secure: app sizes -----------------------------------------------------------
    ("secure_none_4k_app", "without secure boot an app is whole 4 KB sectors",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x11000,\n", []),
    ("secure_v1_4k_app", "Secure Boot V1: app sizes in 64 KB",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x11000,\n", ["--secure", "v1"]),
    ("secure_bare_flag_4k_app", "--secure without a value means v1",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x11000,\n", ["--secure", "-q"]),
    ("secure_v1_64k_app", "64 KB multiples pass v1",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x110000,\nota_0, app, ota_0, , 0x100000,\n",
     ["--secure", "v1"]),
    ("secure_v1_data_any_size", "v1 checks app partitions only",
     "nvs, data, nvs, , 0x3000,\nphy_init, data, phy, , 0x1000,\nfactory, app, factory, , 1M,\n",
     ["--secure", "v1"]),
    ("secure_v2_4k_app", "Secure Boot V2: 4 KB sectors, as without",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x11000,\n", ["--secure", "v2"]),
    ("secure_v2_unaligned_app", "v2 still needs whole sectors",
     "nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 0x10800,\n", ["--secure", "v2"]),
    ("secure_v1_ota_app", "every app subtype is checked",
     "nvs, data, nvs, , 0x6000,\notadata, data, ota, , 0x2000,\nota_0, app, ota_0, , 0x100000,\n"
     "ota_1, app, ota_1, , 0xF8000,\n", ["--secure", "v1"]),
    # --- a name that looks like a type or subtype -----------------------------------
    ("name_is_other_type", "name 'data' on an app partition",
     "nvs, data, nvs, , 0x6000,\ndata, app, factory, , 1M,\n", []),
    ("name_is_own_type", "name 'data' on a data partition: no warning",
     "data, data, nvs, , 0x6000,\n" + APP, []),
    ("name_is_other_subtype", "name 'phy' on data/nvs",
     "phy, data, nvs, , 0x6000,\n" + APP, []),
    ("name_is_own_subtype", "nvs, otadata, factory, ota_0 named as they are: no warning",
     "nvs, data, nvs, , 0x6000,\nota, data, ota, , 0x2000,\nfactory, app, factory, , 1M,\n"
     "ota_0, app, ota_0, , 1M,\n", []),
    ("name_is_subtype_of_other_type", "'factory' names an app subtype; on data/nvs it warns",
     "factory, data, nvs, , 0x6000,\napp0, app, factory, , 1M,\n", []),
    ("name_is_bootloader_subtype", "'primary', 'recovery' are subtype names too",
     "primary, data, nvs, , 0x6000,\nrecovery, data, fat, , 0x10000,\n" + APP, []),
    ("name_ota_on_app", "'ota' is data/ota's name, not an app subtype",
     "nvs, data, nvs, , 0x6000,\nota, app, ota_0, , 1M,\n", []),
    ("name_case_differs", "names are compared case-sensitively: no warning",
     "NVS, data, phy, , 0x6000,\nDATA, app, factory, , 1M,\n", []),
    ("name_on_custom_type", "a subtype name on a custom type",
     "nvs, 0x40, 2, , 0x6000,\n" + APP, []),
    ("name_both_warnings", "type and subtype warnings in one table",
     "app, data, nvs, , 0x6000,\nnvs_keys, data, fat, , 0x10000,\ntest, app, factory, , 1M,\n", []),
]


def run(script: str, csv_text: str, args: list[str]) -> tuple[int, list[str], str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "in.csv"), Path(tmp, "out.bin")
        src.write_text(csv_text)
        done = subprocess.run([sys.executable if "master" in script else "python3", script,
                               *args, str(src), str(out)], capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        warnings = [line for line in lines if line.startswith("WARNING")]
        errors = [line for line in lines if not line.startswith(("WARNING", "Parsing", "Verifying"))
                  and not line.startswith("Please check")]
        data = out.read_bytes() if done.returncode == 0 else b""
        return done.returncode, warnings, " ".join(errors), data


def main() -> None:
    scripts = sys.argv[1:]
    cases = []
    for case_id, why, text, args in CASES:
        results = [run(s, text, args) for s in scripts]
        if any(r[:2] != results[0][:2] or r[3] != results[0][3] for r in results[1:]):
            raise SystemExit(f"{case_id}: the scripts disagree: {results}")
        code, warnings, error, data = results[0]
        case = {"id": case_id, "why": why, "csv": text, "args": args, "exit": code}
        if code == 0:
            (HERE / f"{case_id}.bin").write_bytes(data)
            case["bin"] = f"{case_id}.bin"
            case["warnings"] = [re.sub(r"\s+", " ", w) for w in warnings]
        else:
            case["error"] = re.sub(r"^Error at line \d+: ", "", error)
        cases.append(case)
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()

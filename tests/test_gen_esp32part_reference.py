"""Our partition tables against gen_esp32part.py's recorded behaviour.

tests/reference/gen_esp32part/cases.json holds what ESP-IDF's gen_esp32part.py (v5.5,
v6.0 and master agree) did with each input: exit status, error, warnings, and the
binary it wrote (see the README there).  No ESP-IDF code runs here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.partition_table import build_partition_table, find_name_warnings
from idf_nvs_secure.inputs.partition_csv import parse_partition_csv

HERE = Path(__file__).resolve().parent / "reference" / "gen_esp32part"
CASES = {case["id"]: case for case in json.loads((HERE / "cases.json").read_text())}

#: Where we refuse what gen_esp32part.py accepts, on purpose, and the reason we give.
DIVERGENCES = {
    # gen_esp32part.py ignores a seventh column, so 'encrypted, readonly' silently
    # loses readonly.
    "flags_comma_separated": "unexpected seventh column 'readonly'",
}

#: Reference cases this file checks (by id prefix).
CHECKED = ("flags_", "secure_", "name_")


def _selected() -> list[str]:
    return [case_id for case_id in CASES if case_id.startswith(CHECKED)]


def test_the_recorded_cases_are_all_checked():
    assert set(_selected()) == set(CASES)


def _secure(args: list[str]) -> str | None:
    if "--secure" not in args:
        return None
    value = args[args.index("--secure") + 1:][:1]
    return value[0] if value and value[0] in ("v1", "v2") else "v1"


@pytest.mark.parametrize("case_id", _selected())
def test_same_accept_reject_and_bytes_as_gen_esp32part(case_id):
    case = CASES[case_id]
    kwargs = {"variables": {}}
    if _secure(case["args"]):
        kwargs["secure"] = _secure(case["args"])
    if case_id in DIVERGENCES:
        assert case["exit"] == 0
        with pytest.raises(InputError, match=re.escape(DIVERGENCES[case_id])):
            parse_partition_csv(case["csv"], filename="in.csv", **kwargs)
        return
    if case["exit"] != 0:
        with pytest.raises(InputError) as info:
            parse_partition_csv(case["csv"], filename="in.csv", **kwargs)
        flag = re.search(r"unknown flag '(.*)'", case["error"])
        if flag:  # the same piece is named
            assert f"unknown flag {flag.group(1)!r}" in info.value.message
        size = re.search(r"Partition (\S+) invalid: Size (0x[0-9a-f]+) is not aligned to (0x[0-9a-f]+)",
                         case["error"])
        if size:  # the same partition, size and alignment
            name, value, align = size.groups()
            assert f"partition {name!r}: size {value} is not a multiple of {align}" \
                in info.value.message
        return
    table = parse_partition_csv(case["csv"], filename="in.csv", **kwargs)
    assert build_partition_table(table) == (HERE / case["bin"]).read_bytes()
    # the same warnings, for the same partitions, in the same order
    expected = [(re.search(r"name '([^']*)'", w).group(1), "subtype" in w)
                for w in case["warnings"]]
    ours = [(table.partitions[w.index].name, "subtype" in w.message)
            for w in find_name_warnings(table)]
    assert ours == expected

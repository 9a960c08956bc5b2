"""Issue 15, finding 7: every independent error of an input file in one pass.

Values CSV and YAML, partitions CSV and YAML: each file below has several errors that
do not depend on each other; the command prints each as its own ``error: file:line...``
line (with its hint, if any), exits 2, shows no traceback and writes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import InputErrors
from idf_nvs_secure.inputs.nvs_csv import parse_nvs_csv

CASES = {
    # values CSV: a bad type, a bad encoding, a value out of range; the good rows pass
    "values.csv": (["nvs", "build", "{f}", "--size", "0x6000", "-o", "{out}"], """\
key,type,encoding,value
dev,namespace,,
a,dta,u8,1
b,data,u9,2
c,data,u8,300
d,data,string,fine
""", ["values.csv:3: key 'a': unknown type 'dta'",
      "values.csv:4: key 'b': unknown encoding 'u9'",
      "values.csv:5: key 'c': value 300 does not fit u8"]),
    # values YAML, meaning: three bad values in two namespaces
    "values.yaml": (["nvs", "build", "{f}", "--size", "0x6000", "-o", "{out}"], """\
dev:
  a: {type: u8, value: 300}
  ok: {type: u8, value: 1}
  c: {type: blob, hex: "zz"}
net:
  d: {type: i8, value: -200}
""", ["values.yaml:2:6: key 'a': value 300 does not fit u8",
      "values.yaml:4:24: not valid hex",
      "values.yaml:6:6: key 'd': value -200 does not fit i8"]),
    # values YAML, structure: two unknown fields
    "schema.yaml": (["nvs", "build", "{f}", "--size", "0x6000", "-o", "{out}"], """\
dev:
  a: {type: u8, value: 1, bogus: 2}
  b: {type: u8, value: 2}
  c: {type: u8, vaule: 3}
""", ["schema.yaml:2:27: unknown field 'bogus'", "schema.yaml:4:17: unknown field 'vaule'"]),
    # partitions CSV: a bad type, a bad size, an empty name
    "partitions.csv": (["partitions", "build", "{f}", "-o", "{out}"], """\
nvs, data, nvs, , 0x6000,
bad, dta, nvs, , 0x1000,
x, data, nvs, , 12Q,
, app, factory, , 1M,
factory, app, factory, , 1M,
""", ["partitions.csv:2:6: partition 'bad': unknown type 'dta'",
      "partitions.csv:3:17: partition 'x': size: invalid number '12Q'",
      "partitions.csv:4:1: the partition name is empty"]),
    # partitions YAML, structure: an unknown field and a missing size
    "partitions.yaml": (["partitions", "build", "{f}", "-o", "{out}"], """\
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 24K, colour: red}
  - {name: a, type: data, subtype: nvs}
""", ["partitions.yaml:2:54: unknown field 'colour'",
      "partitions.yaml:3:5: missing required field 'size'"]),
    # partitions YAML, meaning: an unknown subtype and a bad size
    "meaning.yaml": (["partitions", "build", "{f}", "-o", "{out}"], """\
partitions:
  - {name: nvs, type: data, subtype: nvz, size: 24K}
  - {name: a, type: data, subtype: nvs, size: 12Q}
  - {name: b, type: app, subtype: factory, size: 1M}
""", ["meaning.yaml:2:38: unknown subtype 'nvz'", "meaning.yaml:3:47: size '12Q'"]),
}


@pytest.mark.parametrize("name", CASES)
def test_every_independent_error_is_reported(tmp_path: Path, monkeypatch, name: str):
    args, text, expected = CASES[name]
    monkeypatch.chdir(tmp_path)
    Path(name).write_text(text)
    args = [a.format(f=name, out="out.bin") for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(expected), result.output
    for line, start in zip(errors, expected):
        assert line.startswith(f"error: {start}"), (line, start)
        assert re.match(rf"error: {re.escape(name)}:\d+(:\d+)?: ", line)
    # nothing else on the output but those errors and their hints
    assert all(line.startswith(("error: ", "hint: ")) for line in result.output.splitlines())
    assert not Path("out.bin").exists()


def test_a_single_error_stays_a_single_error():
    with pytest.raises(Exception) as caught:
        parse_nvs_csv("key,type,encoding,value\ndev,namespace,,\na,data,u8,300\n",
                      filename="v.csv", base_dir=Path("."))
    assert not isinstance(caught.value, InputErrors)
    assert str(caught.value).startswith("v.csv:3: key 'a'")


def test_several_errors_read_as_the_first_for_one_line_callers():
    with pytest.raises(InputErrors) as caught:
        parse_nvs_csv("key,type,encoding,value\ndev,namespace,,\na,data,u8,300\n"
                      "b,data,u8,-1\n", filename="v.csv", base_dir=Path("."))
    exc = caught.value
    assert len(exc.errors) == 2 and (exc.file, exc.line) == ("v.csv", 3)
    assert str(exc).endswith("(and 1 more error)")


def test_a_bad_namespace_is_one_error_not_one_per_row():
    with pytest.raises(Exception) as caught:
        parse_nvs_csv("key,type,encoding,value\nthis_namespace_is_far_too_long,namespace,,\n"
                      "a,data,u8,1\nb,data,u8,2\n", filename="v.csv", base_dir=Path("."))
    assert not isinstance(caught.value, InputErrors)
    assert caught.value.line == 2

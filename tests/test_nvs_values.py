"""Several values files in order: later keys override, as ``nvs build A B C``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.nvs_image import build_nvs_image
from idf_nvs_secure.inputs.nvs_values import load_values_files

NVS = Path(__file__).resolve().parent / "golden" / "nvs"
HEADER = "key,type,encoding,value\n"


def test_two_csvs_give_the_reference_image():
    # nvs_partition_gen.py generate multi_a.csv multi_b.csv multi.bin 0x4000
    values = load_values_files([NVS / "multi_a.csv", NVS / "multi_b.csv"], env={})
    assert build_nvs_image(values.entries, 0x4000) == (NVS / "multi.bin").read_bytes()
    assert values.files == [NVS / "multi_a.csv", NVS / "multi_b.csv"]


def test_later_files_override_in_place_and_yaml_overlays(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "dev,namespace,,\nserial,data,string,SN-1\n"
                                    "count,data,u32,1\n")
    (tmp_path / "b.yaml").write_text("dev:\n  count: 7\n  gone: {type: u8, value: 1}\n"
                                     "  pw: {type: string, env: PW}\n")
    (tmp_path / "c.yaml").write_text("dev:\n  gone: null\n")
    (tmp_path / "d.csv").write_text(HEADER + "dev,namespace,,\nserial,data,string,SN-2\n"
                                    "pw,data,string,plain\n")
    values = load_values_files([tmp_path / n for n in ("a.csv", "b.yaml", "c.yaml", "d.csv")],
                               env={"PW": "x"})
    assert [(e.key, e.type, e.value) for e in values.entries] == [
        ("serial", "string", "SN-2"), ("count", "u32", 7), ("pw", "string", "plain")]
    assert values.secrets == set()  # the CSV's plain value replaced the env one


def test_a_key_twice_in_one_csv_is_still_an_error(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "dev,namespace,,\nk,data,u8,1\nk,data,u8,2\n")
    with pytest.raises(InputError) as info:
        load_values_files([tmp_path / "a.csv"], env={})
    assert (info.value.line, info.value.message) == (4, "key 'k' appears twice in namespace 'dev'")


def test_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="unsupported values file type '.txt'"):
        load_values_files([tmp_path / "a.txt"], env={})


def test_cli_takes_several_files_and_writes_nothing_on_error(tmp_path):
    out = tmp_path / "o.bin"
    result = CliRunner().invoke(cli, ["nvs", "build", str(NVS / "multi_a.csv"),
                                      str(NVS / "multi_b.csv"), "--size", "0x4000", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 entries from 2 values files" in result.stdout
    assert out.read_bytes() == (NVS / "multi.bin").read_bytes()
    (tmp_path / "bad.csv").write_text(HEADER + "dev,namespace,,\nk,data,u8,300\n")
    out.unlink()
    result = CliRunner().invoke(cli, ["nvs", "build", str(NVS / "multi_a.csv"),
                                      str(tmp_path / "bad.csv"), "--size", "0x4000", "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'bad.csv'}:3: ")
    assert "Traceback" not in result.output and not out.exists()

"""Issue 15, finding 7: ``init`` starts from an existing ESP-IDF project.

The fixture is shaped like ESP-IDF's examples/security/flash_encryption (a custom
partitions CSV with an odd name, the table at 0xD000, an nvs_keys partition and a second
NVS partition), written here, not copied from ESP-IDF.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.inputs.project import load_project, resolve_project

PARTITIONS_CSV = """\
# Name,   Type, SubType, Offset,  Size, Flags
nvs,        data, nvs,      , 0x6000,
scratch,    data, 0x99,     , 0x1000, encrypted
factory,    app,  factory,  , 1M,
# the keys of 'nvs'
nvs_key,    data, nvs_keys, , 0x1000, encrypted
extra_nvs,  data, nvs,      , 0x5000,
logs,       data, fat,      , 256K,
"""

DEFAULTS = """\
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="my_partitions.csv"
CONFIG_PARTITION_TABLE_FILENAME="my_partitions.csv"
CONFIG_PARTITION_TABLE_OFFSET=0xD000
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
"""

ENCRYPTION = """\
CONFIG_SECURE_FLASH_ENC_ENABLED=y
CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
CONFIG_NVS_ENCRYPTION=y
"""

VALUES_CSV = """\
key,type,encoding,value
device,namespace,,
serial,data,string,SN-0042
boots,data,u32,7
cert,file,binary,cert.der
"""


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"NVS_MASTER_SECRET": None})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "flash_encryption"
    root.mkdir()
    (root / "my_partitions.csv").write_text(PARTITIONS_CSV)
    (root / "sdkconfig.defaults").write_text(DEFAULTS + ENCRYPTION)
    (root / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.22)\n")
    return root


def test_init_then_detect_and_build_work(project: Path, tmp_path: Path):
    result = run(["init", project])
    assert result.exit_code == 0, result.output
    for name in ("nvs_secure.yaml", "partitions.yaml", "nvs_values.yaml"):
        assert (project / name).is_file(), name
    loaded = load_project(project)
    resolved = resolve_project(loaded, None)
    assert loaded.partition_csv == project / "my_partitions.csv"  # sdkconfig's name kept
    assert resolved.table.offset == 0xD000 and resolved.flash_size == 4 * 1024 * 1024
    assert resolved.nvs_keys_pairs == {"nvs": "nvs_key"}
    detect = run(["detect", project])
    assert detect.exit_code == 0, detect.output
    assert "nvs_key.bin" in detect.output and "XTS-encrypted" in detect.output
    out = tmp_path / "out"
    build = run(["build", project, "-o", out])
    assert build.exit_code == 0, build.output
    # the generated table is the table ESP-IDF built from the CSV
    reference = tmp_path / "ref.bin"
    assert run(["partitions", "build", project / "my_partitions.csv", "--offset", "0xd000",
                "-o", reference]).exit_code == 0
    assert (out / "partition-table.bin").read_bytes() == reference.read_bytes()
    check = run(["nvs", "check", out / "nvs.bin", "--keys", out / "nvs_key.bin"])
    assert check.exit_code == 0, check.output


def test_init_converts_a_values_csv(project: Path, tmp_path: Path):
    (project / "values").mkdir()
    (project / "values" / "nvs.csv").write_text(VALUES_CSV)
    (project / "values" / "cert.der").write_bytes(b"\x30\x82" + bytes(range(40)))
    result = run(["init", project, "--values", project / "values" / "nvs.csv"])
    assert result.exit_code == 0, result.output
    text = (project / "nvs_values.yaml").read_text()
    assert "file: values/cert.der" in text  # file rows stay file references
    out = tmp_path / "out"
    assert run(["build", project, "-o", out]).exit_code == 0
    dump = run(["nvs", "dump", out / "nvs.bin", "--keys", out / "nvs_key.bin", "--json"])
    values = json.loads(dump.output)
    assert values["device"]["serial"]["value"] == "SN-0042"
    assert values["device"]["boots"] == {"type": "u32", "value": 7}


def test_init_never_overwrites_without_force(project: Path):
    (project / "partitions.yaml").write_text("# mine\n")
    result = run(["init", project])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith("error: ") and lines[0].endswith(
        "partitions.yaml: already exists; init does not replace it")
    assert "Traceback" not in result.output
    assert (project / "partitions.yaml").read_text() == "# mine\n"
    assert not (project / "nvs_secure.yaml").exists()  # nothing written: all or none
    result = run(["init", project, "--force"])
    assert result.exit_code == 0, result.output
    assert (project / "partitions.yaml").read_text().count("{name: nvs, ") == 1


def test_init_names_a_missing_csv_at_its_sdkconfig_line(project: Path):
    (project / "my_partitions.csv").unlink()
    result = run(["init", project])
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "error: sdkconfig.defaults:2: the partitions CSV my_partitions.csv named by "
        "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME does not exist")
    assert not (project / "nvs_secure.yaml").exists()


def test_init_with_a_built_in_table_says_what_to_change(project: Path):
    (project / "sdkconfig.defaults").write_text("CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\n")
    result = run(["init", project])
    assert result.exit_code == 0, result.output
    assert 'to do: sdkconfig selects the built-in table' in result.output
    assert 'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"' in result.output
    assert resolve_project(load_project(project), None).table.find("factory") is not None


def test_init_refuses_an_unknown_values_partition(project: Path):
    result = run(["init", project, "--partition", "logs"])
    assert result.exit_code == 2
    assert "'logs' is not a data/nvs partition" in result.output
    assert "hint: NVS partitions: nvs, extra_nvs" in result.output

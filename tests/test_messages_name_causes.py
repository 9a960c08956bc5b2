"""Issue 15, finding 5: errors name the right option, partition, file and line.

Each test is the reported reproduction: a bad --table-offset blamed on --size, the two
displays of --table-offset, an overrun blamed on the 'rest' partition after the one
that overruns, a product's NVS size without location, a missing values file by
absolute path, an unknown product without a line, sdkconfig warnings without a line
in build's output, and a folder named sdkconfig silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli

from fixture_projects import copy_example_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """example_project's inputs as ``project`` in the current directory."""
    for name in ("IDF_TARGET", "IDF_PATH", "SDKCONFIG_DEFAULTS", "NVS_MASTER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXAMPLE_WIFI_PASSWORD", "messages-test")
    monkeypatch.chdir(tmp_path)
    return Path(copy_example_project(tmp_path).name)


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _error(result) -> list[str]:
    """The error line and its hint, after checking the form of a user error."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and all(l.startswith("hint: ") for l in lines[1:])
    return lines


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("command", ["dump", "check"])
def test_a_bad_table_offset_is_named_as_table_offset(tmp_path, command):
    (tmp_path / "flash.bin").write_bytes(b"\xff" * 0x10000)
    lines = _error(_run("nvs", command, "--flash", tmp_path / "flash.bin",
                        "--table-offset", "0xZZ"))
    assert lines[0] == ("error: Invalid value for '--table-offset': '0xZZ' is not a number "
                        "(decimal or 0x hex)")
    assert "--size" not in "".join(lines)


def test_dump_and_check_show_table_offset_alike():
    shown = []
    for command in ("dump", "check"):
        text = _run("nvs", command, "--help").stdout
        start = text.index("--table-offset")
        shown.append(" ".join(text[start:text.index("--partition")].split()))
    assert shown[0] == shown[1]
    assert shown[0].endswith("[default: 0x8000]")


def test_an_overrun_blames_the_partition_that_overruns(project):
    path = project / "partitions.yaml"
    path.write_text(path.read_text().replace("size: 1536K}", "size: 2M}"))
    lines = _error(_run("partitions", "show", path))
    assert lines[0].startswith(f"error: {path}:{_line_of(path, 'name: ota_1')}:")
    assert "partition 'ota_1': it ends at 0x420000" in lines[0]
    assert "nothing is left for 'storage' (size: rest)" in lines[0]
    assert lines[1] == ("hint: shrink the partitions, or raise the flash size "
                        "(CONFIG_ESPTOOLPY_FLASHSIZE)")


def test_a_products_nvs_size_is_located_with_a_hint_that_fits(project):
    path = project / "nvs_secure.yaml"
    path.write_text(path.read_text().replace("nvs: {size: 0x10000}", "nvs: {size: 0x10100}"))
    lines = _error(_run("detect", project, "--product", "pro"))
    assert lines[0].startswith(f"error: {path}:{_line_of(path, '0x10100')}:")
    assert lines[0].endswith("NVS partition 'nvs' is 0x10100 bytes, not a whole number of "
                             "4 KB NVS pages (0x1000)")
    assert lines[1] == "hint: make its size 0x10000 or 0x11000"


def test_a_missing_values_file_is_named_by_the_line_that_names_it(project):
    path = project / "nvs_secure.yaml"
    path.write_text(path.read_text().replace("[products/pro.yaml]", "[products/typo.yaml]"))
    lines = _error(_run("config", "show", project, "--product", "pro"))
    assert lines[0] == (f"error: {path}:{_line_of(path, 'typo.yaml')}:13: values file "
                        f"'products/typo.yaml' not found (relative to project)")
    assert os.sep + "tmp" not in lines[0]  # not an absolute path


def test_an_unknown_product_has_the_line_of_the_products(project):
    path = project / "nvs_secure.yaml"
    lines = _error(_run("detect", project, "--product", "prp"))
    assert lines == [f"error: {path}:{_line_of(path, 'products:')}: unknown product 'prp'",
                     "hint: products: basic, pro"]


def test_build_shows_sdkconfig_warnings_with_their_lines(project):
    with open(project / "sdkconfig.defaults", "a", encoding="utf-8") as fh:
        fh.write("this is not a setting\nCONFIG_NVS_ENCRYPTION=maybe\n")
    first = _line_of(project / "sdkconfig.defaults", "this is not")
    result = _run("build", project, "-o", "out")
    assert result.exit_code == 0, result.output
    warnings = [l for l in result.stderr.splitlines() if l.startswith("warning: ")]
    assert warnings == [
        f"warning: sdkconfig.defaults:{first}: ignoring malformed line 'this is not a "
        "setting'; fix or remove the line",
        f"warning: sdkconfig.defaults:{first + 1}: 'maybe' is not a valid value for the bool "
        "symbol NVS_ENCRYPTION. Assignment ignored; fix the value (see `idf.py menuconfig`)"]


@pytest.mark.parametrize("name", ["sdkconfig", "sdkconfig.defaults"])
def test_a_folder_named_sdkconfig_is_an_error(project, name):
    if name == "sdkconfig.defaults":
        (project / name).unlink()
    (project / name).mkdir()
    lines = _error(_run("detect", project))
    assert lines[0] == f"error: {project / name}: {name} is a folder, not a configuration file"

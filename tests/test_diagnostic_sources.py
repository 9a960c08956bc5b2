"""Issue 15, finding 3: diagnostics name the user's own file, never the generated CSV.

In a YAML project the plan's table comes from partitions.yaml: a diagnostic about a
partition points at its line there and says what YAML to write; in a CSV project it
points at the CSV row and says what to write in the CSV.  The check before an idf.py
build names the firmware error only where that is the error the firmware gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app import idf_ext
from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.app.idf_ext import NvsSecureIdfError

from fixture_projects import copy_example_project


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch) -> Path:
    for name in ("IDF_TARGET", "IDF_PATH", "SDKCONFIG_DEFAULTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _yaml_project(root: Path) -> Path:
    """The example project with ``encrypted`` moved from nvs_keys (line 10) to nvs (line 7)."""
    project = copy_example_project(root)
    path = project / "partitions.yaml"
    text = path.read_text()
    text = text.replace("size: 24K}", "size: 24K, flags: [encrypted]}")
    text = text.replace("size: 4K, flags: [encrypted],", "size: 4K,")
    path.write_text(text)
    assert text.splitlines()[6].startswith("  - {name: nvs,")
    assert text.splitlines()[9].startswith("  - {name: nvs_keys,")
    return Path(project.name)


def _detect(project: Path) -> list[str]:
    result = CliRunner().invoke(cli, ["detect", str(project)])
    assert result.exit_code == 1, result.output
    return [line.strip() for line in result.stdout.splitlines() if line.startswith("  error: ")]


def test_a_yaml_project_is_told_its_partitions_yaml_line_and_the_yaml_to_write(cwd):
    errors = _detect(_yaml_project(cwd))
    assert len(errors) == 2
    keys, flag = sorted(errors)
    assert keys.startswith("error: [nvs-keys-not-encrypted] project/partitions.yaml:10: ")
    assert keys.endswith("add `flags: [encrypted]` to its entry in partitions.yaml")
    assert flag.startswith("error: [nvs-partition-encrypted-flag] project/partitions.yaml:7: ")
    assert "remove `encrypted` from its flags in partitions.yaml" in flag
    assert not any("partitions.csv" in e or "nvs_keys, , 0x1000" in e for e in errors)


def test_a_products_change_is_located_in_nvs_secure_yaml(cwd):
    project = copy_example_project(cwd, "  plain:\n    partitions:\n"
                                        "      nvs_keys: {flags: []}\n")
    line = next(i for i, text in enumerate((project / "nvs_secure.yaml").read_text()
                                           .splitlines(), 1) if "nvs_keys: {flags: []}" in text)
    result = CliRunner().invoke(cli, ["detect", "project", "--product", "plain"])
    assert result.exit_code == 1
    assert (f"error: [nvs-keys-not-encrypted] project/nvs_secure.yaml:{line}: "
            in result.stdout), result.stdout


def test_a_csv_project_is_told_its_csv_row_and_the_csv_to_write(cwd):
    project = cwd / "p"
    project.mkdir()
    shutil.copy(Path(__file__).parent.parent / "example_project/sdkconfig.defaults", project)
    (project / "partitions.csv").write_text(
        "# Name, Type, SubType, Offset, Size, Flags\n"
        "nvs, data, nvs, , 0x6000, encrypted\n"
        "nvs_keys, data, nvs_keys, , 0x800,\n"
        "factory, app, factory, , 1M,\n")
    errors = _detect(Path("p"))
    by_code = {e.split("]")[0] + "]": e for e in errors}
    assert by_code["error: [nvs-keys-not-encrypted]"].startswith(
        "error: [nvs-keys-not-encrypted] p/partitions.csv:3: ")
    assert by_code["error: [nvs-keys-not-encrypted]"].endswith(
        "write `encrypted` in its Flags column in partitions.csv")
    assert by_code["error: [nvs-keys-too-small]"].endswith("make its Size 0x1000 in partitions.csv")
    assert "p/partitions.csv:2: " in by_code["error: [nvs-partition-encrypted-flag]"]
    assert "from its Flags column in partitions.csv" in by_code["error: [nvs-partition-encrypted-flag]"]


def test_a_missing_nvs_keys_partition_is_told_the_entry_to_add(cwd):
    project = copy_example_project(cwd)
    path = project / "partitions.yaml"
    path.write_text(path.read_text().replace(
        "  - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted],\n"
        "     nvs_keys_for: nvs}\n", ""))
    [error] = _detect(Path("project"))
    assert error.startswith("error: [nvs-keys-partition-missing] project/partitions.yaml: ")
    assert ("add `- {name: nvs_key, type: data, subtype: nvs_keys, size: 4K, flags: "
            "[encrypted]}` to its partitions list") in error
    assert "CONFIG_PARTITION_TABLE_SINGLE_APP" not in error  # not for a generated table


class _GlobalArgs(dict):
    """idf.py's global_args: a dict with attribute access."""

    def __getattr__(self, name):
        return self[name]


def test_a_product_that_removes_nvs_keys_is_told_at_that_line(cwd):
    project = copy_example_project(cwd, "  broken:\n    partitions: {nvs_keys: null}\n")
    line = len((project / "nvs_secure.yaml").read_text().splitlines())
    result = CliRunner().invoke(cli, ["detect", "project", "--product", "broken"])
    assert result.exit_code == 1
    [error] = [l.strip() for l in result.stdout.splitlines() if l.startswith("  error: ")]
    assert error.startswith(f"error: [nvs-keys-partition-missing] project/nvs_secure.yaml:{line}: ")
    assert error.endswith("keep it: drop `nvs_keys: null` from the product's partitions")


def test_the_build_check_names_only_the_firmware_error_it_gives(cwd, monkeypatch):
    monkeypatch.setenv("EXAMPLE_WIFI_PASSWORD", "check-test")
    project = _yaml_project(cwd).resolve()
    path = project / "partitions.yaml"
    path.write_text(path.read_text().replace("size: 4K,", "size: 4K, flags: [encrypted],"))
    args = _GlobalArgs(project_dir=str(project), build_dir=str(project / "build"),
                       define_cache_entry=[], port=None, baud=460800, no_hints=True,
                       verbose=False, generator=None)
    with pytest.raises(NvsSecureIdfError) as caught:
        idf_ext.check_before_build(SimpleNamespace(), args, [SimpleNamespace(name="all",
                                                                             action_args={})])
    message = str(caught.value)
    assert "ESP_ERR_NVS_WRONG_ENCRYPTION" in message
    assert "ESP_ERR_NVS_CORRUPT_KEY_PART" not in message
    assert f"{path.relative_to(cwd)}:7: " in message or f"{path}:7: " in message

"""nvs_secure.yaml: products as overlays, key sources, build and config show."""

from __future__ import annotations

import json
import os
import re
import stat
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_projects import ESP32_FLASH_ENC, PARTITIONS_WITH_KEYS

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.artifacts import build_artifacts, plan_for_project
from idf_nvs_secure.fsutil import write_key_file
from idf_nvs_secure.errors import InputError, KeyMaterialError
from idf_nvs_secure.formats.nvs_keys import derive_nvs_keys_from_hmac, parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image
from idf_nvs_secure.formats.partition_table import parse_partition_table
from idf_nvs_secure.inputs.keysource import derive_hmac_key, derive_nvs_keys
from idf_nvs_secure.inputs.project import load_project, resolve_project

SECRET = "11" * 32
ENV = {"MASTER": SECRET}

PROJECT = """\
version: 1
partitions: partitions.yaml
master_secret: {env: MASTER}
keys: {source: derive}
nvs:
  nvs: {values: [values.yaml]}
products:
  basic: {}
  pro:
    values: {nvs: [pro.yaml]}
    partitions: {nvs: {size: 0x8000}}
"""
def make_project(tmp_path: Path, **files: str) -> Path:
    defaults = {"nvs_secure.yaml": PROJECT, "partitions.yaml": PARTITIONS_WITH_KEYS,
                "values.yaml": "dev:\n  model: base\n  boots: {type: u16, value: 5}\n",
                "pro.yaml": "dev:\n  model: pro\n  boots: 9\ncloud:\n  url: x\n",
                "sdkconfig.defaults": ESP32_FLASH_ENC}
    defaults.update(files)
    for name, text in defaults.items():
        if text is None:
            continue
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_products_overlay_values_and_partitions(tmp_path):
    project = load_project(make_project(tmp_path))
    basic = resolve_project(project, "basic", env=ENV)
    pro = resolve_project(project, "pro", env=ENV)
    assert basic.table.find("nvs").size == 0x6000 and pro.table.find("nvs").size == 0x8000
    assert pro.table.find("nvs_keys").offset == 0x11000  # placed after the larger nvs
    assert {k: e.value for k, e in pro.values["nvs"].namespaces["dev"].items()} == {
        "model": "pro", "boots": 9}
    assert pro.values["nvs"].namespaces["cloud"]["url"].value == "x"
    assert basic.values["nvs"].namespaces["dev"]["model"].value == "base"


def test_unknown_product_lists_the_known_ones(tmp_path):
    project = load_project(make_project(tmp_path))
    with pytest.raises(InputError) as info:
        resolve_project(project, "ultra", env=ENV)
    assert "unknown product 'ultra'" in str(info.value)
    assert info.value.hint == "products: basic, pro"
    with pytest.raises(InputError, match="choose one with --product"):
        resolve_project(project, None, env=ENV)


@pytest.mark.parametrize("project_text, message", [
    (PROJECT.replace("version: 1", "version: 2"), "must be 1"),
    (PROJECT.replace("partitions.yaml", "nope.yaml"), "partition file 'nope.yaml' not found"),
    (PROJECT + "colour: red\n", "unknown field 'colour'"),
    (PROJECT.replace("values: {nvs: [pro.yaml]}", "values: {nvz: [pro.yaml]}"),
     "'nvz', which is not an NVS partition"),
    (PROJECT.replace("keys: {source: derive}", "keys: {source: magic}"), "'magic' is not one of"),
    (PROJECT.replace("keys: {source: derive}", "keys: {source: file}"), "needs file:"),
    (PROJECT + "default_product: gold\n", "default_product 'gold' is not a product"),
])
def test_project_file_errors_are_located(tmp_path, project_text, message):
    make_project(tmp_path, **{"nvs_secure.yaml": project_text})
    with pytest.raises(InputError) as info:
        load_project(tmp_path)
    assert message in str(info.value)
    assert info.value.file.endswith("nvs_secure.yaml") and info.value.line


def test_product_partition_changes_are_checked(tmp_path):
    text = PROJECT.replace("partitions: {nvs: {size: 0x8000}}", "partitions: {ghost: null}")
    project = load_project(make_project(tmp_path, **{"nvs_secure.yaml": text}))
    with pytest.raises(InputError, match="removes partition 'ghost'"):
        resolve_project(project, "pro", env=ENV)


def test_derived_keys_are_the_same_on_every_machine(tmp_path):
    project = load_project(make_project(tmp_path))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    assert [d for d in plan.diagnostics if d.severity == "error"] == []
    one = build_artifacts(resolved, plan, env=ENV)
    two = build_artifacts(resolved, plan, env=ENV)
    assert [a.data for a in one.artifacts] == [a.data for a in two.artifacts]
    keys = parse_nvs_keys(one.find("nvs_keys_image").data)
    assert keys == derive_nvs_keys(bytes.fromhex(SECRET), product="basic", partition="nvs_keys")
    image = parse_nvs_image(one.find("nvs_image").data, keys=keys)
    assert image_to_json(image) == {"dev": {"model": {"type": "string", "value": "base"},
                                            "boots": {"type": "u16", "value": 5}}}
    pro_resolved, pro_plan = plan_for_project(project, "pro", env=ENV)
    pro = build_artifacts(pro_resolved, pro_plan, env=ENV)
    assert parse_nvs_keys(pro.find("nvs_keys_image").data) != keys  # product is in the context


def test_hmac_scheme_builds_an_efuse_key_and_an_image_for_its_keys(tmp_path):
    sdk = ('CONFIG_IDF_TARGET="esp32c3"\nCONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\n'
           'CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"\n'
           'CONFIG_NVS_ENCRYPTION=y\nCONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y\n'
           'CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=2\n')
    project = load_project(make_project(tmp_path, **{"sdkconfig.defaults": sdk}))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    assert plan.scheme == "hmac"
    build = build_artifacts(resolved, plan, env=ENV)
    hmac_key = build.find("hmac_key").data
    assert hmac_key == derive_hmac_key(bytes.fromhex(SECRET), product="basic",
                                       partition="efuse_hmac")
    assert build.find("nvs_keys_image") is None
    image = parse_nvs_image(build.find("nvs_image").data, keys=derive_nvs_keys_from_hmac(hmac_key))
    assert not image.problems and image_to_json(image)["dev"]["model"]["value"] == "base"


def test_generated_keys_are_kept_and_never_overwritten(tmp_path):
    text = PROJECT.replace("keys: {source: derive}", "keys: {source: generate}")
    project = load_project(make_project(tmp_path, **{"nvs_secure.yaml": text}))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    store = tmp_path / "keystore"
    first = build_artifacts(resolved, plan, env=ENV, keystore=store)
    kept = store / "basic" / "nvs_keys.nvs_keys.bin"
    assert not kept.exists()  # the library writes no file: the caller persists
    assert list(first.new_keystore_files) == [kept]
    for path, data in first.new_keystore_files.items():
        write_key_file(path, data)
    second = build_artifacts(resolved, plan, env=ENV, keystore=store)
    assert first.find("nvs_keys_image").data == second.find("nvs_keys_image").data
    assert not second.new_keystore_files
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert any("generated new key material" in n for n in first.notes) and not second.notes
    assert not build_artifacts(resolved, plan, env=ENV).reproducible


def test_missing_master_secret_is_a_key_error(tmp_path):
    project = load_project(make_project(tmp_path))
    resolved, plan = plan_for_project(project, "basic", env={})
    with pytest.raises(KeyMaterialError, match="MASTER .*not set"):
        build_artifacts(resolved, plan, env={})


def test_chip_generated_keys_with_values_is_refused_by_the_plan(tmp_path):
    text = PROJECT.replace("keys: {source: derive}", "keys: {source: chip}")
    project = load_project(make_project(tmp_path, **{"nvs_secure.yaml": text}))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    errors = [d for d in plan.diagnostics if d.severity == "error"]
    assert [d.code for d in errors] == ["values-need-host-keys"]
    assert "host cannot encrypt" in errors[0].message
    with pytest.raises(Exception, match="plan has 1 error"):
        build_artifacts(resolved, plan, env=ENV)


# --- CLI -------------------------------------------------------------------------------


def run(args, env=None):
    return CliRunner().invoke(cli, args, env=env)


def test_cli_build_writes_everything(tmp_path):
    make_project(tmp_path)
    out = tmp_path / "out"
    result = run(["build", str(tmp_path), "--product", "pro", "-o", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    table = parse_partition_table((out / "partition-table.bin").read_bytes())
    assert table.find("nvs").size == 0x8000
    assert stat.S_IMODE(os.stat(out / "nvs_keys.bin").st_mode) == 0o600
    keys = parse_nvs_keys((out / "nvs_keys.bin").read_bytes())
    assert keys.data_key.hex() not in result.output
    assert image_to_json(parse_nvs_image((out / "nvs.bin").read_bytes(), keys=keys))[
        "cloud"] == {"url": {"type": "string", "value": "x"}}
    assert (out / "partitions.csv").read_text().startswith("# ESP-IDF Partition Table")


def test_cli_build_error_leaves_no_output(tmp_path):
    make_project(tmp_path, **{"values.yaml": "dev:\n  x: {type: u8, value: 999}\n"})
    out = tmp_path / "out"
    result = run(["build", str(tmp_path), "--product", "basic", "-o", str(out)], env=ENV)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "values.yaml:2:" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_config_show_masks_secrets(tmp_path):
    make_project(tmp_path, **{"values.yaml": "dev:\n  pw: {type: string, env: PW}\n"
                                             "  tok: {type: blob, hex: 'aabb', secret: true}\n"})
    env = dict(ENV, PW="hunter2")
    masked = run(["config", "show", str(tmp_path), "--product", "basic", "--json"], env=env)
    assert masked.exit_code == 0, masked.output
    data = json.loads(masked.output)
    assert data["nvs"]["nvs"]["values"]["dev"] == {"pw": {"type": "string", "value": "****"},
                                                   "tok": {"type": "blob", "value": "****"}}
    assert "hunter2" not in masked.output and SECRET not in masked.output
    shown = run(["config", "show", str(tmp_path), "--product", "basic", "--json",
                 "--show-secrets"], env=env)
    assert json.loads(shown.output)["nvs"]["nvs"]["values"]["dev"]["pw"]["value"] == "hunter2"
    text = run(["config", "show", str(tmp_path), "--product", "basic"], env=env)
    assert text.exit_code == 0 and "product basic" in text.output
    assert "hunter2" not in text.output and re.search(r"pw +string +\*\*\*\*\n", text.output)


def test_cli_unknown_product_is_one_error_line(tmp_path):
    make_project(tmp_path)
    result = run(["config", "show", str(tmp_path), "--product", "gold"], env=ENV)
    assert result.exit_code == 2
    line = (tmp_path / "nvs_secure.yaml").read_text().splitlines().index("products:") + 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'nvs_secure.yaml'}:{line}: unknown product 'gold'",
        "hint: products: basic, pro"]


def test_cli_detect_uses_the_project_file(tmp_path):
    make_project(tmp_path)
    result = run(["detect", str(tmp_path), "--product", "pro", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["partition_table"] == {"file": "partitions.csv", "offset": 0x8000}
    [nvs] = plan["nvs_partitions"]
    assert nvs["size"] == 0x8000 and nvs["values_file"] == "values.yaml"
    assert nvs["key_source"] == "nvs_keys_host"
    assert {o["kind"] for o in plan["outputs"]["outputs"]} >= {"nvs_image", "nvs_keys_image"}

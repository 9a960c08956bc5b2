"""The output plan: what detect announces is exactly what build writes (names, offsets,
flags), for every fixture project and every product of the example; and an output set
that fails part-way leaves the previous set byte for byte."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from idf_nvs_secure import fsutil
from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.formats.partition_table import parse_partition_table
from idf_nvs_secure.inputs.project import load_project
from idf_nvs_secure.plan.project_plan import plan_project
from idf_nvs_secure.words import KeySource, OutputKind

from fixture_projects import EXAMPLE, copy_example_project

ENV = {"EXAMPLE_WIFI_PASSWORD": "output-plan-test", "NVS_MASTER_SECRET": None,
       "IDF_PATH": None, "IDF_TARGET": None, "SDKCONFIG_DEFAULTS": None}


def _variant(root: Path, name: str) -> tuple[Path, dict]:
    """A copy of the example changed in one way; returns it and extra environment."""
    project = copy_example_project(root)
    env: dict = {}
    if name == "nvs_key":  # the name ESP-IDF's own *_encr_nvs.csv tables use
        text = (project / "partitions.yaml").read_text().replace("name: nvs_keys", "name: nvs_key")
        (project / "partitions.yaml").write_text(text)
    elif name == "hmac":
        shutil.copy(EXAMPLE / "sdkconfig.defaults.esp32c3", project)
        env["SDKCONFIG_DEFAULTS"] = "sdkconfig.defaults;sdkconfig.defaults.esp32c3"
        env["IDF_TARGET"] = "esp32c3"
    elif name == "generate":
        text = (project / "nvs_secure.yaml").read_text().replace(
            "keys: {source: derive}", "keys: {source: generate}")
        (project / "nvs_secure.yaml").write_text(text)
    elif name == "plain":
        text = (project / "sdkconfig.defaults").read_text() + "CONFIG_NVS_ENCRYPTION=n\n"
        (project / "sdkconfig.defaults").write_text(text)
    return project, env


VARIANTS = ["example", "nvs_key", "hmac", "generate", "plain"]
CASES = [(v, p) for v in VARIANTS for p in ("basic", "pro")]


def _run(args: list[str], env: dict) -> object:
    result = CliRunner().invoke(cli, args, env={**ENV, **env})
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("variant,product", CASES)
def test_announced_outputs_are_exactly_the_files_written(tmp_path: Path, variant: str,
                                                          product: str) -> None:
    project, env = _variant(tmp_path, variant)
    detect = _run(["detect", str(project), "--product", product, "--json"], env)
    assert detect.exit_code == 0, detect.output
    announced = {o["path"]: o for o in json.loads(detect.output)["outputs"]["outputs"]}
    out = tmp_path / "out"
    build = _run(["build", str(project), "--product", product, "-o", str(out)], env)
    assert build.exit_code == 0, build.output
    written = {p.name for p in out.iterdir()} - {"outputs.json"}
    assert written == set(announced)
    manifest = {f["path"]: f for f in json.loads((out / "outputs.json").read_text())["files"]}
    table = parse_partition_table((out / "partition-table.bin").read_bytes())
    for path, item in announced.items():
        assert manifest[path]["kind"] == item["kind"]
        assert manifest[path]["offset"] == item["offset"]
        assert manifest[path]["partition"] == item["partition"]
        mode = (out / path).stat().st_mode & 0o777
        assert mode == (0o600 if item["secret"] else 0o644), path
        if item["partition"]:  # the offset and size are the table's
            part = table.find(item["partition"])
            assert (part.offset, part.size) == (item["offset"], item["size"])
            assert part.encrypted == item["flash_encrypted"] or item["kind"] == "nvs_image"
    kinds = {o["kind"] for o in announced.values()}
    expected_keys = {"example": "nvs_keys.bin", "nvs_key": "nvs_key.bin",
                     "hmac": "hmac_key.bin", "generate": "nvs_keys.bin", "plain": None}[variant]
    if expected_keys:
        assert expected_keys in announced
    else:
        assert kinds == {"partition_table", "partition_csv", "nvs_image"}
        assert announced["nvs.bin"]["keys"] is None


def test_the_plan_is_one_model(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    planned = plan_project(load_project(project), "pro", env={"EXAMPLE_WIFI_PASSWORD": "x"})
    outputs = planned.outputs
    image = outputs.find(OutputKind.NVS_IMAGE, "nvs")
    assert (image.offset, image.size) == (0xE000, 0x10000)
    assert image.keys == "nvs_keys.bin" and image.key_source == KeySource.DERIVE
    key = outputs.key(image.keys)
    assert key.partition == "nvs_keys" and key.flash_encrypted and key.reproducible
    names = [r.name for r in image.inputs]
    assert names[:3] == ["nvs_values.yaml", "certs/device_cert.der", "products/pro.yaml"]
    assert "EXAMPLE_WIFI_PASSWORD" in names and "env:NVS_MASTER_SECRET" in names
    assert sorted(outputs.env_vars) == ["EXAMPLE_WIFI_PASSWORD", "NVS_MASTER_SECRET"]
    assert json.dumps(outputs.to_json())  # JSON-ready: enums serialise as their text
    assert "6964662d" not in json.dumps(outputs.to_json())  # no secret, not even the default


@pytest.mark.parametrize("name", ["../../../pwn", "a/b", "..", ".hidden", "nu\x01l"])
def test_a_partition_name_never_becomes_a_path(tmp_path: Path, name: str) -> None:
    project, _ = _variant(tmp_path, "example")
    text = (project / "partitions.yaml").read_text().replace(
        "{name: nvs,      type: data", "{name: " + json.dumps(name) + ", type: data")
    (project / "partitions.yaml").write_text(text)
    (project / "nvs_secure.yaml").write_text(
        (project / "nvs_secure.yaml").read_text().replace("nvs:\n  nvs:\n", "nvs:\n  " +
                                                          json.dumps(name) + ":\n"))
    result = _run(["build", str(project), "-o", str(tmp_path / "out" / "x")], {})
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert not (tmp_path / "pwn.bin").exists() and not (tmp_path / "out").exists()


def test_a_set_that_fails_part_way_leaves_the_old_set(tmp_path: Path, monkeypatch) -> None:
    project, _ = _variant(tmp_path, "example")
    out = tmp_path / "out"
    assert _run(["build", str(project), "-o", str(out)], {}).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = fsutil._write_new
    calls = []

    def failing(path, data, mode):
        calls.append(path)
        if len(calls) == 3:  # the table and CSV are staged; the keys hit a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, mode)

    monkeypatch.setattr(fsutil, "_write_new", failing)
    result = _run(["build", str(project), "-o", str(out), "--force"],
                  {"NVS_MASTER_SECRET": "cd" * 32})
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "no space left on the device" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == [
        ".out.lock"]  # no staging folder left


def test_other_keys_are_not_written_over_without_force(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    out = tmp_path / "out"
    assert _run(["build", str(project), "-o", str(out)], {}).exit_code == 0
    before = (out / "nvs_keys.bin").read_bytes()
    # Building again with the same inputs is fine; another master secret is refused.
    assert _run(["build", str(project), "-o", str(out)], {}).exit_code == 0
    result = _run(["build", str(project), "-o", str(out)], {"NVS_MASTER_SECRET": "ef" * 32})
    assert result.exit_code == 2
    assert "nvs_keys.bin would change from SHA256:" in result.output and "--force" in result.output
    assert (out / "nvs_keys.bin").read_bytes() == before
    assert _run(["build", str(project), "-o", str(out), "--force"],
                {"NVS_MASTER_SECRET": "ef" * 32}).exit_code == 0
    assert (out / "nvs_keys.bin").read_bytes() != before


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    out = tmp_path / "out"
    with fsutil.output_lock(out):
        result = _run(["build", str(project), "-o", str(out)], {})
    assert result.exit_code == 2
    assert "another run is writing here (pid" in result.output
    assert not out.exists()


def test_random_release_keys_are_not_replaced_without_force(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    out = tmp_path / "rk"
    args = ["release", str(project), "--product", "pro", "--random-keys", "-o", str(out)]
    assert _run(args, {}).exit_code == 0, "first"
    keys = (out / "nvs_secure" / "nvs_keys.bin").read_bytes()
    again = _run(args, {})
    assert again.exit_code == 2
    assert "other keys in nvs_secure/nvs_keys.bin" in again.output
    assert "random keys, which nothing can make again" in again.output
    assert (out / "nvs_secure" / "nvs_keys.bin").read_bytes() == keys
    assert _run(args + ["--force"], {}).exit_code == 0
    assert (out / "nvs_secure" / "nvs_keys.bin").read_bytes() != keys
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["keys"]["derivation"] == 2


def test_the_development_default_never_silently_replaces_real_keys(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    out = tmp_path / "out"
    assert _run(["build", str(project), "-o", str(out)], {"NVS_MASTER_SECRET": "12" * 32}
                ).exit_code == 0
    result = _run(["build", str(project), "-o", str(out)], {})  # secret forgotten
    assert result.exit_code == 2 and "would change from SHA256:" in result.output
    assert json.loads((out / "outputs.json").read_text())["derivation"] == 2


def test_a_product_name_never_escapes_the_release_folder(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    (project / "nvs_secure.yaml").write_text((project / "nvs_secure.yaml").read_text()
                                             + '  "../../../escaped": {}\n')
    result = _run(["release", str(project), "--product", "../../../escaped", "--random-keys",
                   "-o", str(tmp_path / "a" / "b" / "c")], {})
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert not list(tmp_path.rglob("*escaped*"))


def test_a_batch_partition_name_never_escapes(tmp_path: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    text = (project / "partitions.yaml").read_text().replace("name: nvs_keys", 'name: "../k"')
    (project / "partitions.yaml").write_text(text)
    devices = tmp_path / "d.csv"
    devices.write_text("device_id,device.serial:string\nSN-1,A\n")
    result = _run(["batch", str(project), "--devices", str(devices), "-o", str(tmp_path / "o"),
                   "--master-secret-file", str(_secret_file(tmp_path))], {})
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert not (tmp_path / "k.bin").exists() and not (tmp_path / "o").exists()


def _secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.hex"
    path.write_text("ab" * 32 + "\n")
    return path


@pytest.mark.parametrize("args", [
    ["nvs", "build", "{v}", "--size", "0x6000", "-o", "{ro}/n.bin"],
    ["keys", "generate", "-o", "{ro}/k.bin"],
    ["partitions", "show", "{p}", "--svg", "{ro}/m.svg"],
])
def test_a_failing_write_is_one_error_naming_the_file(tmp_path: Path, monkeypatch, args) -> None:
    # Simulated (the suite may run as root, whom a read-only folder does not stop).
    project, _ = _variant(tmp_path, "example")
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.replace

    def refuse(src, dst, *a, **kw):
        if str(dst).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", refuse)
    values = tmp_path / "v.yaml"
    values.write_text("ns:\n  k: {type: u8, value: 1}\n")
    argv = [a.format(v=values, ro=ro, p=project / "partitions.yaml") for a in args]
    result = _run(argv, {})
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].endswith(": cannot write: the file system is read-only")
    named = errors[0][len("error: "):].rsplit(": cannot write", 1)[0]
    assert named == argv[-1]  # the output as the user named it,
    assert ".tmp" not in errors[0]  # never its temporary copy
    assert "internal error" not in result.output and not list(ro.iterdir())


def test_an_output_in_a_folder_that_cannot_exist_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("a file where a folder is needed\n")
    result = _run(["keys", "generate", "-o", str(target / "k.bin")], {})
    assert result.exit_code == 2
    assert result.output.splitlines()[0].startswith(f"error: {target / 'k.bin'}: ")
    assert ".tmp" not in result.output


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 96 KiB tmpfs, where the machine lets us mount one (root on Linux)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_really_full_disk_leaves_the_old_set(tmp_path: Path, small_tmpfs: Path) -> None:
    project, _ = _variant(tmp_path, "example")
    out = small_tmpfs / "out"
    assert _run(["build", str(project), "-o", str(out)], {}).exit_code == 0  # basic: 24K NVS
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # pro's 64K NVS image does not fit beside the old set: the disk fills part-way.
    result = _run(["build", str(project), "--product", "pro", "-o", str(out), "--force"], {})
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no space left on the device" in errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in small_tmpfs.iterdir()) == [".out.lock", "out"]


def test_secure_boot_v1_app_sizes_come_from_the_build_configuration(tmp_path: Path) -> None:
    from idf_nvs_secure.plan.project_plan import secure_boot_rules

    assert secure_boot_rules({"SECURE_BOOT": True}) is None  # version unknown: no guess
    assert secure_boot_rules({"SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": True,
                              "SECURE_BOOT_V2_ENABLED": False}) == "v1"
    assert secure_boot_rules({"SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": False,
                              "SECURE_BOOT_V2_ENABLED": True}) == "v2"
    assert secure_boot_rules({"SECURE_BOOT": False, "SECURE_BOOT_V1_ENABLED": False,
                              "SECURE_BOOT_V2_ENABLED": False}) is None
    project, _ = _variant(tmp_path, "example")
    text = (project / "partitions.yaml").read_text().replace("size: 1536K}", "size: 1540K}", 1)
    (project / "partitions.yaml").write_text(text)
    sdk = {"IDF_TARGET": "esp32", "PARTITION_TABLE_CUSTOM": True,
           "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv", "PARTITION_TABLE_OFFSET": 0xD000,
           "ESPTOOLPY_FLASHSIZE": "8MB", "SECURE_BOOT": True, "SECURE_BOOT_V1_ENABLED": True,
           "SECURE_BOOT_V2_ENABLED": False}
    (tmp_path / "sdkconfig.json").write_text(json.dumps(sdk))
    result = _run(["detect", str(project), "--sdkconfig", str(tmp_path / "sdkconfig.json")], {})
    assert result.exit_code == 2 and "Secure Boot V1" in result.output


@pytest.mark.parametrize("out", [".", "..", "{here}"])
def test_an_output_folder_holding_the_working_directory_is_refused(tmp_path: Path, monkeypatch,
                                                                   out: str) -> None:
    """``build -o .`` in an empty folder: the set would replace the folder the user
    stands in (their shell left in a deleted folder); one error line instead, and no
    lock file or staging folder left inside it."""
    project, _ = _variant(tmp_path, "example")
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    result = _run(["build", str(project), "-o", out.format(here=here)], {})
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "holds the current folder" in errors[0], result.output
    assert "hint: name a folder of its own, for example -o out" in result.output
    assert list(here.iterdir()) == []


def test_a_batch_into_the_working_directory_locks_beside_it(tmp_path: Path,
                                                           monkeypatch) -> None:
    """A batch writes inside its folder (devices/, index.csv), so ``-o .`` works; its
    lock file goes beside the folder, as for any other name."""
    project, _ = _variant(tmp_path, "example")
    table = tmp_path / "devices.csv"
    table.write_text("device_id,device.serial:string\nSN-1,S1\nSN-2,S2\n")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    args = ["batch", str(project), "--product", "pro", "--devices", str(table), "-o", "."]
    result = _run(args, {"NVS_MASTER_SECRET": "ab" * 32})
    assert result.exit_code == 0, result.output
    names = {p.name for p in here.iterdir()}
    assert {"devices", "index.csv", "index.json"} <= names
    assert not [n for n in names if n.endswith(".lock")] and (tmp_path / ".here.lock").is_file()

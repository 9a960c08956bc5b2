"""Release bundles: reproducible zips, manifest, flasher_args.json, merge, key sources,
and host pre-encryption checked against espsecure itself."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_projects import BASIC_PROJECT, ESP32_FLASH_ENC

from idf_nvs_secure import __version__
from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.artifacts import plan_for_project
from idf_nvs_secure.build.flash_encrypt import decrypt_from_flash, encrypt_for_flash
from idf_nvs_secure.build.flasher import read_build_outputs
from idf_nvs_secure.errors import InputError
from idf_nvs_secure.formats.nvs_keys import parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import image_to_json, parse_nvs_image
from idf_nvs_secure.inputs.keysource import derive_nvs_keys
from idf_nvs_secure.inputs.project import load_project
from idf_nvs_secure.release.bundle import (
    DEFAULT_SOURCE_DATE_EPOCH,
    BundleFile,
    build_zip,
    make_release,
    write_bundle,
)

SECRET = "5a" * 32
ENV = {"MASTER": SECRET}

PARTITIONS = """\
table: {offset: 0x8000, flash_size: 4MB}
partitions:
  - {name: nvs, type: data, subtype: nvs, size: 24K}
  - {name: otadata, type: data, subtype: ota, size: 8K}
  - {name: nvs_keys, type: data, subtype: nvs_keys, size: 4K, flags: [encrypted]}
  - {name: ota_0, type: app, subtype: ota_0, size: 1M}
"""
VALUES = """\
dev:
  model: sensor
  boots: {type: u16, value: 5}
  cert: {type: blob, file: cert.der}
"""
ESP32C3_RELEASE = """\
CONFIG_IDF_TARGET="esp32c3"
CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y
CONFIG_PARTITION_TABLE_CUSTOM=y
CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
CONFIG_SECURE_FLASH_ENC_ENABLED=y
CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y
"""


def make_project(root: Path, *, firmware: bool = True, **files: str) -> Path:
    texts = {"nvs_secure.yaml": BASIC_PROJECT, "partitions.yaml": PARTITIONS, "values.yaml": VALUES,
             "sdkconfig.defaults": ESP32_FLASH_ENC}
    texts.update(files)
    root.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (root / name).write_text(textwrap.dedent(text))
    (root / "cert.der").write_bytes(bytes(range(256)) * 3)
    if firmware:
        build = root / "build"
        (build / "bootloader").mkdir(parents=True)
        (build / "partition_table").mkdir()
        (build / "bootloader" / "bootloader.bin").write_bytes(b"\xe9\x03\x02\x20" + b"B" * 0x5ffc)
        (build / "app.bin").write_bytes(b"\xe9\x06\x02\x20" + b"A" * 0x20000)
        (build / "ota_data_initial.bin").write_bytes(b"\xff" * 0x2000)
        (build / "partition_table" / "partition-table.bin").write_bytes(b"stale table")
        target = "esp32c3" if "esp32c3" in texts["sdkconfig.defaults"] else "esp32"
        boot = 0x1000 if target == "esp32" else 0x0
        args = {
            "write_flash_args": ["--flash-mode", "dio", "--flash-size", "4MB",
                                 "--flash-freq", "40m"],
            "flash_settings": {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m"},
            "flash_files": {f"{boot:#x}": "bootloader/bootloader.bin",
                            "0x8000": "partition_table/partition-table.bin",
                            "0x20000": "app.bin", "0xf000": "ota_data_initial.bin"},
            "bootloader": {"offset": f"{boot:#x}", "file": "bootloader/bootloader.bin",
                           "encrypted": "true"},
            "app": {"offset": "0x20000", "file": "app.bin", "encrypted": "true"},
            "partition-table": {"offset": "0x8000",
                                "file": "partition_table/partition-table.bin",
                                "encrypted": "true"},
            "otadata": {"offset": "0xf000", "file": "ota_data_initial.bin", "encrypted": "true"},
            "extra_esptool_args": {"after": "no-reset", "before": "default-reset",
                                   "stub": True, "chip": target},
        }
        (build / "flasher_args.json").write_text(json.dumps(args, indent=4))
    return root


def run(args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=dict(ENV, **(env or {})))


def release(project: Path, out: Path, *extra, env=None):
    result = run(["release", project, "--product", "basic", "-o", out, *extra], env=env)
    return result


def bundle_zip(out: Path) -> bytes:
    return (out / "basic-release.zip").read_bytes()


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def entry(out: Path, name: str) -> dict:
    return next(f for f in manifest(out)["files"] if f["name"] == name)


def strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


# --- reproducibility -------------------------------------------------------------------


def test_same_inputs_give_a_byte_identical_zip_in_any_directory(tmp_path, monkeypatch):
    one = make_project(tmp_path / "a" / "proj")
    two = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(one, two)
    monkeypatch.chdir(tmp_path / "a")
    first = release(Path("proj"), Path("out"))
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(tmp_path)
    second = release(two, tmp_path / "b" / "release")
    assert second.exit_code == 0, second.output
    third = release(two, tmp_path / "b" / "release")  # again, over the earlier bundle
    assert third.exit_code == 0, third.output
    zips = [bundle_zip(tmp_path / "a" / "out"), bundle_zip(tmp_path / "b" / "release")]
    assert zips[0] == zips[1]
    with zipfile.ZipFile(io.BytesIO(zips[0])) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 in (0o100644, 0o100600)
            assert info.compress_type == zipfile.ZIP_STORED
            text = archive.read(info).decode("latin-1")
            assert str(tmp_path) not in text and "/elsewhere/" not in text, info.filename
    data = manifest(tmp_path / "a" / "out")
    assert data["reproducible"] is True and data["source_date_epoch"] == DEFAULT_SOURCE_DATE_EPOCH
    assert not [s for s in strings(data) if s.startswith("/") or str(tmp_path) in s]


def test_source_date_epoch_is_honoured(tmp_path):
    project = make_project(tmp_path / "p")
    assert release(project, tmp_path / "default").exit_code == 0
    epoch = 1_700_000_000
    result = release(project, tmp_path / "dated", env={"SOURCE_DATE_EPOCH": str(epoch)})
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "dated" / "basic-release.zip") as archive:
        assert {i.date_time for i in archive.infolist()} == {time.gmtime(epoch)[:6]}
    assert manifest(tmp_path / "dated")["date"] == "2023-11-14T22:13:20Z"
    assert bundle_zip(tmp_path / "dated") != bundle_zip(tmp_path / "default")
    bad = release(project, tmp_path / "bad", env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert bad.exit_code == 2 and "SOURCE_DATE_EPOCH" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_zip_ignores_file_order_and_marks_key_files_private():
    files = [BundleFile("b.bin", "x", b"2"), BundleFile("a/key.bin", "x", b"1", secret=True)]
    assert build_zip(files, 0) == build_zip(files[::-1], 0)
    with zipfile.ZipFile(io.BytesIO(build_zip(files, 0))) as archive:
        assert archive.getinfo("a/key.bin").external_attr >> 16 == 0o100600


# --- contents --------------------------------------------------------------------------


def test_manifest_describes_every_file_and_input(tmp_path):
    project = make_project(tmp_path / "p")
    out = tmp_path / "out"
    result = release(project, out)
    assert result.exit_code == 0, result.output
    data = manifest(out)
    assert data["tool"] == {"name": "idf-nvs-secure", "version": __version__}
    assert data["product"] == "basic" and data["target"] == "esp32"
    with zipfile.ZipFile(out / "basic-release.zip") as archive:
        zipped = {n: archive.read(n) for n in archive.namelist()}
    listed = {f["name"]: f for f in data["files"]}
    assert set(zipped) == set(listed) | {"manifest.json"}
    for name, item in listed.items():
        assert item["sha256"] == hashlib.sha256(zipped[name]).hexdigest()
        assert item["size"] == len(zipped[name]) == (out / name).stat().st_size
    assert listed["nvs_secure/nvs.bin"]["offset"] == "0x9000"
    # Files by path, the master secret by where it comes from (never its value).
    assert listed["nvs_secure/nvs.bin"]["made_from"] == [
        "values.yaml", "cert.der", "env:MASTER", "development-default"]
    assert listed["nvs_secure/nvs_keys.bin"]["secret"] is True
    assert listed["app.bin"]["made_from"] == ["build:app.bin"]
    assert (out / "nvs_secure" / "nvs_keys.bin").stat().st_mode & 0o777 == 0o600
    inputs = {i["path"]: i for i in data["inputs"]}
    for name in ("nvs_secure.yaml", "partitions.yaml", "values.yaml", "cert.der",
                 "sdkconfig.defaults"):
        assert inputs[name]["sha256"] == hashlib.sha256((project / name).read_bytes()).hexdigest()
    assert inputs["build:flasher_args.json"]["role"] == "build"
    assert data["keys"]["partitions"]["nvs"]["source"] == "derive"
    assert data["keys"]["master_secret"]["origin"] == "environment variable MASTER"
    assert SECRET not in (out / "manifest.json").read_text()
    assert "report.html" in listed and b"<html" in zipped["report.html"].lower()
    # the build's stale partition table is replaced by the generated one, with a note
    assert any("differs from the partition table" in n for n in data["notes"])
    assert "partition_table/partition-table.bin" in listed
    keys = parse_nvs_keys(zipped["nvs_secure/nvs_keys.bin"])
    assert keys == derive_nvs_keys(bytes.fromhex(SECRET), product="basic", partition="nvs_keys")
    image = image_to_json(parse_nvs_image(zipped["nvs_secure/nvs.bin"], keys=keys))
    assert image["dev"]["model"]["value"] == "sensor"


def test_flasher_args_json_has_esp_idf_shape(tmp_path):
    out = tmp_path / "out"
    assert release(make_project(tmp_path / "p"), out).exit_code == 0
    args = json.loads((out / "flasher_args.json").read_text())
    assert list(args)[:3] == ["write_flash_args", "flash_settings", "flash_files"]
    assert list(args)[-1] == "extra_esptool_args"
    assert args["write_flash_args"] == ["--flash-mode", "dio", "--flash-size", "4MB",
                                        "--flash-freq", "40m"]
    assert args["flash_settings"] == {"flash_mode": "dio", "flash_size": "4MB",
                                      "flash_freq": "40m"}
    assert args["extra_esptool_args"] == {"after": "no-reset", "before": "default-reset",
                                          "stub": True, "chip": "esp32"}
    assert args["flash_files"] == {
        "0x1000": "bootloader/bootloader.bin", "0x8000": "partition_table/partition-table.bin",
        "0x9000": "nvs_secure/nvs.bin", "0xf000": "ota_data_initial.bin",
        "0x11000": "nvs_secure/nvs_keys.bin", "0x20000": "app.bin"}
    sections = {k: v for k, v in args.items() if isinstance(v, dict) and "offset" in v}
    assert set(sections) == {"bootloader", "partition-table", "nvs", "otadata", "nvs_keys",
                             "app"}
    for section in sections.values():
        assert set(section) == {"offset", "file", "encrypted"}
        assert (out / section["file"]).is_file()
    # development mode: everything flash encryption stores encrypted goes through it
    assert {k: v["encrypted"] for k, v in sections.items()} == {
        "bootloader": "true", "partition-table": "true", "nvs": "false", "otadata": "true",
        "nvs_keys": "true", "app": "true"}
    assert (out / "flash_args").read_text().splitlines() == [
        "--flash-mode dio --flash-freq 40m --flash-size 4MB",
        "0x1000 bootloader/bootloader.bin", "0x8000 partition_table/partition-table.bin",
        "0x9000 nvs_secure/nvs.bin", "0xf000 ota_data_initial.bin",
        "0x11000 nvs_secure/nvs_keys.bin", "0x20000 app.bin"]
    assert (out / "encrypted_flash_args").read_text().splitlines() == [
        "--flash-mode dio --flash-freq 40m --flash-size 4MB", "0x9000 nvs_secure/nvs.bin",
        "--encrypt-files", "0x1000 bootloader/bootloader.bin",
        "0x8000 partition_table/partition-table.bin", "0xf000 ota_data_initial.bin",
        "0x11000 nvs_secure/nvs_keys.bin", "0x20000 app.bin"]


def test_without_a_build_the_bundle_has_the_nvs_artifacts_and_a_note(tmp_path):
    out = tmp_path / "out"
    result = release(make_project(tmp_path / "p", firmware=False), out)
    assert result.exit_code == 0, result.output
    args = json.loads((out / "flasher_args.json").read_text())
    assert sorted(args["flash_files"].values()) == [
        "nvs_secure/nvs.bin", "nvs_secure/nvs_keys.bin", "partition_table/partition-table.bin"]
    assert "no firmware" in result.stderr


def test_merged_image_is_made_by_esptool_with_every_file_at_its_offset(tmp_path):
    out = tmp_path / "out"
    result = release(make_project(tmp_path / "p"), out, "--merged")
    assert result.exit_code == 0, result.output
    merged = (out / "merged-flash.bin").read_bytes()
    args = json.loads((out / "flasher_args.json").read_text())
    for offset, name in args["flash_files"].items():
        data = (out / name).read_bytes()
        start = int(offset, 16)
        assert merged[start:start + len(data)] == data, name
    assert merged[:0x1000] == b"\xff" * 0x1000  # esptool pads from offset 0
    item = entry(out, "merged-flash.bin")
    assert item["offset"] == "0x0" and "first boot" in item["note"]


# --- key sources -----------------------------------------------------------------------


def test_generated_keys_need_random_keys_and_are_recorded(tmp_path):
    text = BASIC_PROJECT.replace("keys: {source: derive}", "keys: {source: generate}")
    project = make_project(tmp_path / "p", **{"nvs_secure.yaml": text})
    refused = release(project, tmp_path / "refused")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: ") and "source 'generate'" in refused.stderr
    assert "--random-keys" in refused.stderr and "Traceback" not in refused.output
    assert not (tmp_path / "refused").exists()
    one = release(project, tmp_path / "one", "--random-keys")
    two = release(project, tmp_path / "two", "--random-keys")
    assert one.exit_code == two.exit_code == 0, one.output
    data = manifest(tmp_path / "one")
    assert data["reproducible"] is False and data["keys"]["reproducible"] is False
    assert data["keys"]["partitions"]["nvs"]["source"] == "generate"
    assert "cannot be reproduced" in one.stderr
    assert bundle_zip(tmp_path / "one") != bundle_zip(tmp_path / "two")


def test_random_keys_override_a_derived_source_too(tmp_path):
    result = release(make_project(tmp_path / "p"), tmp_path / "out", "--random-keys")
    assert result.exit_code == 0, result.output
    assert manifest(tmp_path / "out")["reproducible"] is False


def test_development_default_master_secret_is_refused(tmp_path):
    project = make_project(tmp_path / "p")
    result = CliRunner().invoke(cli, ["release", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out")], env={"MASTER": None})
    assert result.exit_code == 2
    assert "refusing the development default master secret" in result.stderr
    assert "--master-secret-file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_master_secret_file_overrides_the_project_source(tmp_path):
    text = BASIC_PROJECT.replace("keys: {source: derive}", "keys: {source: generate}")
    project = make_project(tmp_path / "p", **{"nvs_secure.yaml": text})
    secret = bytes(range(100, 132))
    (tmp_path / "secret.hex").write_text(secret.hex() + "\n")
    result = CliRunner().invoke(cli, ["release", str(project), "--product", "basic", "-o",
                                      str(tmp_path / "out"), "--master-secret-file",
                                      str(tmp_path / "secret.hex")], env={"MASTER": None})
    assert result.exit_code == 0, result.output
    keys = parse_nvs_keys((tmp_path / "out" / "nvs_secure" / "nvs_keys.bin").read_bytes())
    assert keys == derive_nvs_keys(secret, product="basic", partition="nvs_keys")
    data = manifest(tmp_path / "out")
    assert data["reproducible"] is True
    assert data["keys"]["master_secret"]["origin"] == "--master-secret-file"
    assert data["keys"]["partitions"]["nvs"]["source"] == "derive"
    both = release(project, tmp_path / "both", "--random-keys", "--master-secret-file",
                   tmp_path / "secret.hex")
    assert both.exit_code == 2 and "exclude each other" in both.stderr


# --- pre-encryption with the flash-encryption key --------------------------------------


def espsecure_decrypt(data: bytes, offset: int, key: bytes, xts: bool) -> bytes:
    import espsecure

    out = io.BytesIO()
    espsecure.decrypt_flash_data(io.BytesIO(key), out, offset, 0xF, xts, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("sdkconfig, key_size, xts", [(ESP32_FLASH_ENC, 32, False),
                                                      (ESP32C3_RELEASE, 32, True)])
def test_flash_encryption_key_pre_encrypts_for_each_offset(tmp_path, sdkconfig, key_size, xts):
    project = make_project(tmp_path / "p", **{"sdkconfig.defaults": sdkconfig})
    key = bytes(range(7, 7 + key_size))
    (tmp_path / "fe.key").write_bytes(key)
    plain, enc = tmp_path / "plain", tmp_path / "enc"
    assert release(project, plain).exit_code == 0
    result = release(project, enc, "--flash-encryption-key", tmp_path / "fe.key")
    assert result.exit_code == 0, result.output
    args = json.loads((enc / "flasher_args.json").read_text())
    files = {int(o, 16): n for o, n in args["flash_files"].items()}
    pre = {n for n in files.values() if n.endswith("-enc.bin")}
    assert pre == {"bootloader/bootloader-enc.bin", "partition_table/partition-table-enc.bin",
                   "ota_data_initial-enc.bin", "nvs_secure/nvs_keys-enc.bin", "app-enc.bin"}
    assert not (enc / "nvs_secure" / "nvs_keys.bin").exists()  # no plaintext keys shipped
    for offset, name in files.items():
        section = next(v for v in args.values() if isinstance(v, dict) and v.get("file") == name)
        assert section["encrypted"] == "false"  # written raw
        data = (enc / name).read_bytes()
        if name in pre:
            original = (plain / name.replace("-enc.bin", ".bin")).read_bytes()
            assert data != original
            back = espsecure_decrypt(data, offset, key, xts)
            assert back[:len(original)] == original, name  # padded to 16 with 0xFF
            assert back[len(original):] == b"\xff" * (len(back) - len(original)) and \
                len(back) - len(original) < 16
            assert entry(enc, name)["pre_encrypted"] is True
        else:
            assert data == (plain / name).read_bytes()  # the NVS image: NVS encrypts itself
    data = manifest(enc)
    assert data["security"]["pre_encrypted"] is True
    assert "encrypted_flash_args" not in {f["name"] for f in data["files"]}


def test_flash_encryption_key_of_the_wrong_size_or_without_flash_encryption(tmp_path):
    project = make_project(tmp_path / "p", **{"sdkconfig.defaults": ESP32C3_RELEASE})
    (tmp_path / "k64").write_bytes(b"k" * 64)
    wrong = release(project, tmp_path / "o1", "--flash-encryption-key", tmp_path / "k64")
    assert wrong.exit_code == 2 and "needs 32 bytes" in wrong.stderr
    plain = "\n".join(ESP32_FLASH_ENC.splitlines()[:4]) + "\n"  # no flash (or NVS) encryption
    other = make_project(tmp_path / "q", **{"sdkconfig.defaults": plain})
    (tmp_path / "k32").write_bytes(b"k" * 32)
    result = release(other, tmp_path / "o2", "--flash-encryption-key", tmp_path / "k32")
    assert result.exit_code == 2 and "does not enable flash encryption" in result.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_a_key_with_equal_xts_halves_is_a_key_error(tmp_path):
    project = make_project(tmp_path / "p", **{"sdkconfig.defaults": ESP32C3_RELEASE})
    (tmp_path / "k").write_bytes(b"k" * 32)
    result = release(project, tmp_path / "out", "--flash-encryption-key", tmp_path / "k")
    assert result.exit_code == 2 and "duplicated keys" in result.stderr
    assert "internal error" not in result.stderr


def test_firmware_that_overlaps_a_partition_is_refused(tmp_path):
    project = make_project(tmp_path / "p")
    path = project / "build" / "flasher_args.json"
    path.write_text(path.read_text().replace('"0x20000"', '"0x10000"'))
    result = release(project, tmp_path / "out")
    assert result.exit_code == 2 and "overlaps" in result.stderr
    assert not (tmp_path / "out").exists()


def test_release_mode_without_a_key_flashes_plaintext_before_first_boot(tmp_path):
    project = make_project(tmp_path / "p", **{"sdkconfig.defaults": ESP32C3_RELEASE})
    result = release(project, tmp_path / "out")
    assert result.exit_code == 0, result.output
    args = json.loads((tmp_path / "out" / "flasher_args.json").read_text())
    assert {v["encrypted"] for v in args.values() if isinstance(v, dict) and "encrypted" in v} \
        == {"false"}
    assert args["bootloader"]["offset"] == "0x0"
    assert any("before the first boot" in n for n in manifest(tmp_path / "out")["notes"])


def test_encrypt_for_flash_round_trips_and_pads_with_erased_flash():
    key = bytes(range(64))
    data = b"odd length data"
    for target, k in (("esp32", key[:32]), ("esp32s3", key)):
        enc = encrypt_for_flash(data, 0x10000, k, target=target)
        assert len(enc) == 16
        assert decrypt_from_flash(enc, 0x10000, k, target=target) == data + b"\xff"


# --- the library API -------------------------------------------------------------------


def test_make_release_in_memory_and_write_bundle_refuses_foreign_directories(tmp_path):
    project = load_project(make_project(tmp_path / "p"))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    outputs = read_build_outputs(project.root / "build", table=resolved.table,
                                 target=plan.target)
    bundle = make_release(resolved, plan, outputs=outputs, env=ENV,
                          report=lambda r, p: "<html>hook</html>")
    assert bundle.find("report.html").data == b"<html>hook</html>"
    assert bundle.manifest["reproducible"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_bundle(bundle, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    path = write_bundle(bundle, tmp_path / "fresh")
    assert path.read_bytes() == bundle.zip_data
    # No staging folder is left; only the folders' lock files.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")
                and not p.name.endswith(".lock")]

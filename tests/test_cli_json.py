"""Issue 15, finding 7: ``--json`` on ``build`` and ``nvs check``, with the documented keys."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from fixture_projects import copy_example_project

from idf_nvs_secure.app.cli import cli

ENV = {"EXAMPLE_WIFI_PASSWORD": "json-pass", "NVS_MASTER_SECRET": None}


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=ENV)


def test_build_json(tmp_path: Path):
    project = copy_example_project(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", str(project), "--product", "pro", "-o", str(out),
                                      "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is only the JSON; notes go to stderr
    assert set(data) == {"format", "product", "out_dir", "reproducible", "master_secret",
                         "files", "notes", "diagnostics"}
    assert data["format"] == "idf-nvs-secure-build/1" and data["product"] == "pro"
    assert data["out_dir"] == str(out)
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == {p.name for p in out.iterdir()} - {"outputs.json"}
    keys, nvs = files["nvs_keys.bin"], files["nvs.bin"]
    assert keys["offset"] == 0x21000 and keys["flash_encrypted"] is True
    assert "fingerprint" in keys and "sha256" not in keys  # key material: no full hash
    assert nvs["kind"] == "nvs_image" and nvs["offset"] == 0xE000 and not nvs["flash_encrypted"]
    assert nvs["size"] == (out / "nvs.bin").stat().st_size
    assert any("development default" in n for n in data["notes"])
    # the manifest written and the JSON printed agree
    manifest = json.loads((out / "outputs.json").read_text())
    assert [f["sha256"] for f in manifest["files"] if "sha256" in f] == \
        [f["sha256"] for f in data["files"] if "sha256" in f]


def test_nvs_check_json(tmp_path: Path):
    project = copy_example_project(tmp_path)
    out = tmp_path / "out"
    assert run(["build", project, "--product", "pro", "-o", out]).exit_code == 0
    result = run(["nvs", "check", out / "nvs.bin", "--keys", out / "nvs_keys.bin", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"image", "ok", "encrypted", "wrong_key", "entries", "namespaces",
                         "pages", "problems"}
    assert data["ok"] is True and data["encrypted"] is True and data["problems"] == []
    assert data["entries"] == 11 and data["pages"] == 16
    # a damaged image: exit 1, each problem with its code and place
    image = bytearray((out / "nvs.bin").read_bytes())
    image[64 + 32 * 2 + 5] ^= 0xFF  # inside an entry of page 0
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(image))
    result = run(["nvs", "check", bad, "--keys", out / "nvs_keys.bin", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["problems"]
    assert all(set(p) == {"code", "message", "page", "entry"} for p in data["problems"])
    assert data["problems"][0]["page"] == 0

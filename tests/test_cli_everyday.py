"""Issue 15, finding 6: the small things a user notices, each reproduced as it was reported.

Bare command, summaries, hidden internal commands, build --master-secret-file, config
show's text, internal names, RST in help, portable converted YAML, the report's flash
encryption badges, release without firmware, shell completion.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from fixture_projects import copy_example_project

from idf_nvs_secure.app.cli import COMMANDS, HIDDEN, cli

ENV = {"EXAMPLE_WIFI_PASSWORD": "everyday-pass"}


def run(args, env=None):
    env = {**ENV, **(env or {})}
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example_project(tmp_path)


def _all_commands(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, ctx, prefix + (name,))


def test_bare_command_prints_help_and_exits_0():
    result = run([])
    assert result.exit_code == 0, result.output
    assert "error:" not in result.output
    assert result.output.startswith("Usage: idf-nvs-secure")
    assert "Commands:" in result.output and "build" in result.output


def test_no_command_summary_is_cut_mid_sentence():
    with click.Context(cli) as ctx:
        for path, command in _all_commands(cli, ctx):
            if isinstance(command, click.Group):
                result = run([*path, "--help"])
                assert result.exit_code == 0
                listing = result.output.split("Commands:", 1)[1]
                assert "..." not in listing, (path, listing)


def test_internal_commands_are_hidden_but_callable():
    assert HIDDEN == {n for n in COMMANDS if n.startswith("cmake-")} and HIDDEN
    listing = run(["--help"]).output
    for name in HIDDEN:
        assert name not in listing
    result = run(["cmake-dir"])
    assert result.exit_code == 0 and Path(result.output.strip()).is_dir()


def test_no_rst_markup_in_any_help():
    with click.Context(cli) as ctx:
        for path, _ in _all_commands(cli, ctx):
            if path[0] in HIDDEN:
                continue
            text = run([*path, "--help"]).output
            assert "``" not in text and ":func:" not in text, path


def test_build_takes_master_secret_file(project: Path, tmp_path: Path):
    secret = tmp_path / "ms.hex"
    secret.write_text("5a" * 32 + "\n")
    out = tmp_path / "out"
    result = run(["build", str(project), "--product", "pro", "-o", str(out),
                  "--master-secret-file", str(secret)])
    assert result.exit_code == 0, result.output
    assert "development" not in result.output  # no note about the development default
    from idf_nvs_secure.inputs.keysource import SecretSpec, read_master_secret

    expected = read_master_secret(SecretSpec(file=secret)).fingerprint
    assert json.loads((out / "outputs.json").read_text())["master_secret"] == expected
    # a missing file is a located user error, nothing written
    result = run(["build", str(project), "-o", str(tmp_path / "out2"),
                  "--master-secret-file", str(tmp_path / "nope.hex")])
    assert result.exit_code == 2 and "nope.hex" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out2").exists()


def test_config_show_is_readable_text(project: Path):
    result = run(["config", "show", str(project), "--product", "pro"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "{'" not in text and "sha256':" not in text  # no Python repr
    assert re.search(r"cert +blob +398 bytes, sha256 [0-9a-f]{16}\.\.\.", text)
    assert "0x00e000" not in text and " 0xe000 " in text  # offsets as other commands write
    rows = [line for line in text.splitlines() if re.match(r"  \w+ +(data|app)/", line)]
    assert len(rows) == 7
    # aligned: every row's type/subtype starts in the same column, sizes end in one column
    assert len({re.search(r"(data|app)/", r).start() for r in rows}) == 1
    assert len({re.search(r"0x[0-9a-f]+ +0x[0-9a-f]+", r).end() for r in rows}) == 1


def test_no_internal_names_in_output(project: Path, tmp_path: Path):
    detect = run(["detect", str(project), "--product", "pro"])
    built = run(["build", str(project), "--product", "pro", "-o", str(tmp_path / "o")])
    report = run(["report", str(project), "--product", "pro", "-o", str(tmp_path / "r.html")])
    assert built.exit_code == 0 and report.exit_code == 0, built.output + report.output
    html = (tmp_path / "r.html").read_text()
    for text in (detect.output, built.output, html):
        for internal in ("partition_csv", "nvs_keys_host", "nvs_image", "partition_table:"):
            assert internal not in text, internal
    assert "partition table CSV" in detect.output
    assert "nvs_keys partition written by the host" in html


@pytest.mark.parametrize("kind", ["partitions", "nvs"])
def test_converted_yaml_names_no_path_of_this_machine(tmp_path: Path, kind: str):
    if kind == "partitions":
        source = tmp_path / "p.csv"
        source.write_text("nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 1M,\n")
    else:
        source = tmp_path / "v.csv"
        source.write_text("key,type,encoding,value\ndev,namespace,,\nn,data,u8,1\n")
    out = tmp_path / "out.yaml"
    result = run([kind, "convert", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "$schema" not in text and str(tmp_path) not in text
    assert os.sep + "site-packages" not in text and str(Path(sys.prefix)) not in text
    assert text.startswith("# Schema: idf_nvs_secure/inputs/schemas/")


def test_report_badges_everything_flash_encryption_writes(project: Path, tmp_path: Path):
    out = tmp_path / "r.html"
    assert run(["report", str(project), "--product", "pro", "-o", str(out)]).exit_code == 0
    html = out.read_text()
    marked = set(re.findall(r'<g class="region (\w+) encrypted" data-name="([^"]+)"', html))
    # flash encryption is on in the example: bootloader, table, both apps, nvs_keys
    assert {("bootloader", "bootloader"), ("table", "partition table"), ("app", "ota_0"),
            ("app", "ota_1"), ("nvs_keys", "nvs_keys")} <= marked
    assert ("nvs", "nvs") in marked  # NVS-encrypted (by NVS encryption, not flash's)
    assert not any(kind == "free" for kind, _ in marked)
    row = re.search(r"<tr><td>partition table</td>.*?</tr>", html, re.S).group(0)
    assert "flash-encrypted" in row
    row = re.search(r"<tr><td>NVS image</td>.*?</tr>", html, re.S).group(0)
    assert "flash-encrypted" not in row  # NVS data is never written through it
    # file names never break mid-word: the path cells do not wrap, code does not break-all
    assert '<td class="nowrap"><code>partition-table.bin</code>' in html
    css = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert not re.search(r"code \{[^}]*break-all", css.replace("td.value, code", "code"))


def test_report_without_flash_encryption_marks_no_app(project: Path, tmp_path: Path):
    defaults = project / "sdkconfig.defaults"
    defaults.write_text("\n".join(line for line in defaults.read_text().splitlines()
                                  if "FLASH_ENC" not in line) + "\n")
    out = tmp_path / "r.html"
    result = run(["report", str(project), "--product", "pro", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert not re.search(r'<g class="region (app|bootloader|table) encrypted"', html)


def test_release_without_firmware_says_so(project: Path, tmp_path: Path):
    secret = tmp_path / "ms.hex"
    secret.write_text("ab" * 32)
    out = tmp_path / "rel"
    result = run(["release", str(project), "--product", "pro", "-o", str(out),
                  "--master-secret-file", str(secret)])
    assert result.exit_code == 0, result.output
    summary = [line for line in result.output.splitlines() if line.startswith("wrote ")]
    assert len(summary) == 1 and "NO firmware" in summary[0]
    assert json.loads((out / "manifest.json").read_text())["firmware"] == []


def test_shell_completion_prints_a_script():
    exe = Path(sys.executable).parent / "idf-nvs-secure"
    env = {**os.environ, "_IDF_NVS_SECURE_COMPLETE": "bash_source"}
    result = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "complete " in result.stdout and "_IDF_NVS_SECURE_COMPLETE" in result.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "_IDF_NVS_SECURE_COMPLETE=bash_source idf-nvs-secure" in readme


def test_readme_linux_steps_use_preview():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "idf.py --preview set-target linux" in readme
    assert not re.search(r"idf\.py set-target linux", readme)

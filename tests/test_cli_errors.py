"""Every failure the user causes ends in one 'error: ...' line (plus a hint), exit 2, no
traceback, and no output file: click's usage errors included."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from idf_nvs_secure.app.cli import cli


@pytest.mark.parametrize("args, message", [
    (["nvs", "build", "v.yaml", "--size", "0x6000"], "Missing option '-o' / '--output'."),
    (["nvs", "build", "v.yaml", "--size", "1", "-o", "o.bin", "--format-version", "3"],
     "Invalid value for '--format-version'"),
    (["partitions", "show"], "Missing argument 'INPUT'."),
    (["nosuch"], "No such command 'nosuch'."),
    (["keys", "generate", "-o", "k.bin", "--bogus"], "No such option '--bogus'"),
])
def test_usage_errors_are_one_error_line_and_a_hint(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: see 'idf-nvs-secure")
    assert "Usage:" not in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["partitions", "build", "nope.csv", "-o", "out.bin"],
    ["partitions", "convert", "nope.csv", "-o", "out.yaml"],
    ["nvs", "build", "nope.yaml", "--size", "0x6000", "-o", "out.bin"],
    ["nvs", "dump", "nope.bin"],
    ["nvs", "check", "nope.bin"],
    ["nvs", "diff", "nope.bin", "nope2.bin"],
    ["nvs", "convert", "nope.csv", "-o", "out.yaml"],
    ["keys", "show", "nope.bin"],
    ["keys", "generate", "-o", "out.bin", "--hmac-key", "nope.bin"],
    ["detect", "nodir"],
    ["build", "nodir", "-o", "out"],
    ["config", "show", "nodir"],
    ["report", "nodir", "-o", "out.html"],
    ["release", "nodir", "-o", "out"],
    ["batch", "nodir", "--devices", "d.csv", "-o", "out"],
])
def test_missing_inputs_are_one_error_line_and_leave_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    assert list(tmp_path.iterdir()) == []

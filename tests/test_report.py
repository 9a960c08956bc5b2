"""The HTML report: model (fill level, masking), page structure, CLI, no network resources."""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_projects import ESP32_FLASH_ENC, PARTITIONS_WITH_KEYS

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.artifacts import plan_for_project
from idf_nvs_secure.formats.nvs_image import NvsEntry
from idf_nvs_secure.inputs.nvs_yaml import NvsValues
from idf_nvs_secure.inputs.project import load_project
from idf_nvs_secure.views.report import (
    MASK,
    build_report,
    measure_fill,
    render_report_html,
)

ENV = {"MASTER": "11" * 32, "PW": "hunter2-secret"}
FILES = {
    "nvs_secure.yaml": """\
        version: 1
        partitions: partitions.yaml
        master_secret: {env: MASTER}
        keys: {source: derive}
        nvs:
          nvs: {values: [values.yaml]}
        """,
    "partitions.yaml": PARTITIONS_WITH_KEYS,
    "values.yaml": """\
        dev:
          model: <Sensor & Co>
          boots: {type: u16, value: 5}
          pw: {type: string, env: PW}
          tok: {type: blob, hex: 'c0ffee00c0ffee', secret: true}
          url: https://example.com/x
        """,
    "sdkconfig.defaults": ESP32_FLASH_ENC,
}


@pytest.fixture
def project(tmp_path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


class _Resources(HTMLParser):
    """Collects every attribute that could load something, and the tags seen."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "xlink:href", "action"):
                self.urls.append(value or "")


def _page(project: Path, show_secrets: bool = False) -> str:
    resolved, plan = plan_for_project(load_project(project), env=ENV)
    return render_report_html(build_report(resolved, plan, show_secrets=show_secrets))


def test_page_structure_and_content(project):
    html = _page(project)
    parser = _Resources()
    parser.feed(html)
    assert parser.urls == []  # nothing to load: no links, images, scripts, fonts
    assert "script" not in parser.tags and "link" not in parser.tags
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)  # nor from CSS
    assert "@import" not in html and "@font-face" not in html
    for section in ('id="plan"', 'id="diagnostics"', 'id="flash-map"', 'id="nvs-nvs"'):
        assert section in html
    assert html.count("<svg") == 1 and "<?xml" not in html  # the map inline
    assert "flash_enc" in html and "esp32" in html
    assert "&lt;Sensor &amp; Co&gt;" in html  # escaped
    assert 'data-name="nvs"' in html and "encrypted-marker" in html


def test_secrets_masked_by_default_and_shown_with_flag(project):
    masked = _page(project)
    assert "hunter2-secret" not in masked and "c0ffee" not in masked
    assert masked.count(MASK) == 2
    assert "&#39;https://example.com/x&#39;" in masked  # a plain value is shown
    shown = _page(project, show_secrets=True)
    assert "hunter2-secret" in shown and "c0ffee00c0ffee" in shown
    assert MASK not in shown and "secrets shown" in shown


def test_fill_level(project):
    html = _page(project)
    match = re.search(r'data-percent="([0-9.]+)"', html)
    assert match and 0 < float(match.group(1)) < 10
    assert "of 5 usable pages (6 in the partition" in html
    assert "of 630 entries" in html


def test_measure_fill_counts_entries_and_pages():
    values = NvsValues(namespaces={"a": {f"k{i}": NvsEntry("a", f"k{i}", "u32", i)
                                         for i in range(200)}})
    fill = measure_fill(values, 0x6000)
    assert (fill.entries_used, fill.pages_used, fill.pages_usable, fill.pages_total) == \
        (201, 2, 5, 6)
    assert fill.percent == pytest.approx(100 * 201 / 630)


def test_values_that_do_not_fit_are_reported(project):
    (project / "values.yaml").write_text("dev:\n  big: {type: blob, hex: '" + "ab" * 30000 + "'}\n")
    html = _page(project)
    assert "does not build" in html


def test_cli_report(project, tmp_path):
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(cli, ["report", str(project), "-o", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "hunter2-secret" not in html
    result = CliRunner().invoke(cli, ["report", str(project), "-o", str(out), "--show-secrets"],
                                env=ENV)
    assert result.exit_code == 0 and "hunter2-secret" in out.read_text()


def test_cli_report_error_leaves_no_file(project, tmp_path):
    out = tmp_path / "report.html"
    (project / "values.yaml").write_text("dev:\n  n: 7\n")  # a number without its type
    result = CliRunner().invoke(cli, ["report", str(project), "-o", str(out)], env=ENV)
    assert result.exit_code == 2 and "error:" in result.output and "values.yaml" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_cli_report_needs_no_secret_value(project, tmp_path):
    # Issue 15, finding 1: a report is read-only; an unset variable shows as unset.
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(project), "-o", str(out)],
                                env={"MASTER": "11" * 32, "PW": None})
    assert result.exit_code == 0, result.output
    assert "note: PW is not set" in result.output
    assert "&lt;env PW: unset&gt;" in out.read_text()

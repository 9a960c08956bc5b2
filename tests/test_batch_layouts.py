"""The batch's fast paths give the bytes of a fresh layout: every device's files, in the
folder layout and read back device by device from the packed layout, equal
build_nvs_image's image of the device's entries and the reference generator's, under
the device's own keys."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_batch import ENV, HEADER, SECRET, batch, make_project
from test_nvs_reference import reference_image

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.artifacts import plan_for_project
from idf_nvs_secure.formats.nvs_image import build_nvs_image
from idf_nvs_secure.formats.nvs_keys import build_nvs_keys
from idf_nvs_secure.inputs.keysource import derive_nvs_keys
from idf_nvs_secure.inputs.project import load_project
from idf_nvs_secure.release.batch import load_devices, plan_batch, run_batch
from idf_nvs_secure.release.devices_csv import device_entries, entry_layouts
from idf_nvs_secure.release.packed import read_packed_device

ROWS = st.lists(st.tuples(st.text(alphabet="SN-0123456789abc", min_size=1, max_size=40),
                          st.integers(0, 65535), st.integers(1, 700)),
                min_size=1, max_size=12)


def _expected(project: Path, rows: list[str]) -> dict[str, dict[str, bytes]]:
    """Each device's files made the slow way: build_nvs_image of its entries, checked
    against the reference generator."""
    resolved, plan = plan_for_project(load_project(project), "basic", env=ENV)
    work = plan_batch(resolved, plan, env=ENV)
    table = load_devices(project / "devices.csv", work)
    (template, slots), = entry_layouts(work, table.columns)
    job = work.jobs[0]
    out = {}
    for device, _line, values in table.rows:
        keys = derive_nvs_keys(bytes.fromhex(SECRET), product="basic", partition="nvs_keys",
                               device_id=device)
        entries = device_entries(template, slots, table.columns, values)
        image = build_nvs_image(entries, job.size, version=job.version, keys=keys)
        assert image == reference_image(entries, job.size, job.version, keys), device
        out[device] = {"nvs": image, "nvs_keys": build_nvs_keys(keys)}
    return out


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ROWS, st.integers(1, 2))
def test_both_layouts_give_fresh_images_device_by_device(tmp_path_factory, rows, jobs):
    root = tmp_path_factory.mktemp("layouts")
    lines = [HEADER]
    project = make_project(root / "p", rows=[HEADER])
    for n, (serial, boots, cert_len) in enumerate(rows, 1):
        (project / "certs" / f"c{n}.der").write_bytes(bytes([n]) * cert_len)
        lines.append(f"D{n:03d},{serial},{boots},certs/c{n}.der")
    (project / "devices.csv").write_text("\n".join(lines) + "\n")
    expected = _expected(project, lines)
    for layout in ("folders", "packed"):
        out = root / layout
        result = batch(project, out, "--layout", layout, "--jobs", str(jobs))
        assert result.exit_code == 0, result.output
        for device, files in expected.items():
            if layout == "folders":
                folder = out / "devices" / device
                got = {"nvs": (folder / "nvs.bin").read_bytes(),
                       "nvs_keys": (folder / "nvs_keys.bin").read_bytes()}
            else:
                got = read_packed_device(out, device)
            assert got == files, (layout, device)


def test_packed_layout_index_pack_and_resume(tmp_path):
    project = make_project(tmp_path / "p", devices=5)
    out = tmp_path / "out"
    result = batch(project, out, "--layout", "packed")
    assert result.exit_code == 0, result.output
    pack = out / "devices.bin"
    assert stat.S_IMODE(pack.stat().st_mode) == 0o600  # it holds key material
    assert not (out / "devices").exists()
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["partition"] for r in rows[:2]] == ["nvs_keys", "nvs"]
    assert [int(r["pack_offset"]) for r in rows[:4]] == [0, 0x1000, 0x1000 + 0x6000,
                                                         0x2000 + 0x6000]
    assert pack.stat().st_size == sum(int(r["size"]) for r in rows)
    assert rows[1]["offset"] == "0x9000" and rows[1]["nvs_encrypted"] == "true"
    again = batch(project, out, "--layout", "packed")
    assert "(0 built, 5 already done)" in again.output
    text = (project / "devices.csv").read_text().replace("SN-0003", "SN-0333")
    (project / "devices.csv").write_text(text)
    changed = batch(project, out, "--layout", "packed")
    assert "(5 built, 0 already done)" in changed.output  # all or nothing
    assert sorted(os.listdir(out)) == ["devices.bin", "index.csv", "index.json"]


def test_packed_layout_refuses_generated_keys(tmp_path):
    from fixture_projects import BASIC_PROJECT

    text = BASIC_PROJECT.replace("keys: {source: derive}", "keys: {source: generate}")
    project = make_project(tmp_path / "p", devices=2, **{"nvs_secure.yaml": text})
    result = batch(project, tmp_path / "out", "--layout", "packed")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "'generate'" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "devices.bin").exists()


def test_a_shard_packs_its_own_devices(tmp_path):
    project = make_project(tmp_path / "p", devices=7)
    out = tmp_path / "out"
    whole = make_project(tmp_path / "q", devices=7)
    assert batch(whole, tmp_path / "whole", "--layout", "packed").exit_code == 0
    for k in (1, 2):
        result = batch(project, out, "--layout", "packed", "--shard", f"{k}/2")
        assert result.exit_code == 0, result.output
    for n in range(1, 8):
        k = 1 + (n - 1) % 2
        assert read_packed_device(out, f"D{n:03d}", index=f"index-{k}-of-2.csv") == \
            read_packed_device(tmp_path / "whole", f"D{n:03d}")


def test_unknown_layout_is_a_usage_error(tmp_path):
    project = make_project(tmp_path / "p", devices=1)
    result = CliRunner().invoke(cli, ["batch", str(project), "--product", "basic", "--devices",
                                      str(project / "devices.csv"), "-o", str(tmp_path / "o"),
                                      "--layout", "zip"], env=ENV)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_the_api_refuses_an_unknown_layout(tmp_path):
    project = load_project(make_project(tmp_path / "p", devices=1))
    resolved, plan = plan_for_project(project, "basic", env=ENV)
    work = plan_batch(resolved, plan, env=ENV)
    with pytest.raises(Exception, match="layout"):
        run_batch(work, load_devices(project.root / "devices.csv", work), tmp_path / "o",
                  layout="zip")


def test_the_shipped_schemas_are_valid_schemas():
    """Start-up no longer checks them (it cost ~60 ms of every command): this does."""
    import jsonschema

    from idf_nvs_secure.inputs.schemas import SCHEMA_KINDS, load_schema

    for kind in SCHEMA_KINDS:
        schema = load_schema(kind)
        jsonschema.validators.validator_for(schema).check_schema(schema)


@pytest.mark.parametrize("chunk_rows", [1, 2, 250])
def test_chunks_read_like_the_whole_table_and_name_the_right_line(tmp_path, chunk_rows):
    """Workers read chunks of the CSV: blank lines, CRLF and a quoted line break at
    chunk edges change neither the rows nor the line an error names."""
    from idf_nvs_secure.errors import InputError

    rows = [HEADER, "D1,S1,1,certs/d1.der", "", "  ", 'D2,"two\nlines",2,certs/d2.der',
            "", "D3,S3,3,certs/d3.der\r", "D4,S4,4,certs/d4.der"]
    project = make_project(tmp_path / "p", devices=4, rows=rows)
    load = load_project(project)
    resolved, plan = plan_for_project(load, "basic", env=ENV)
    work = plan_batch(resolved, plan, env=ENV)
    table = load_devices(project / "devices.csv", work, chunk_rows=chunk_rows)
    assert [(d, line, v[:2]) for d, line, v in table.rows] == [
        ("D1", 2, ("S1", 1)), ("D2", 5, ("two\nlines", 2)), ("D3", 8, ("S3", 3)),
        ("D4", 9, ("S4", 4))]
    (project / "devices.csv").write_text("\n".join(rows[:-1] + ["D4,S4,x,certs/d4.der"]) +
                                         "\n")
    table = load_devices(project / "devices.csv", work, chunk_rows=chunk_rows)
    with pytest.raises(InputError) as info:
        table.rows
    assert info.value.line == 9 and "'x' is not a whole number" in info.value.message

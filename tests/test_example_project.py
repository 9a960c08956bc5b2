"""example_project promises what it builds: nothing in it is generated or stale.

Every product builds from it and its images read back to exactly the merged values;
main.c reads every key the values files and devices.csv define; the documented
configurations (esp32 flash-encryption scheme, esp32c3 HMAC scheme) plan without
errors; the project's development master secret is refused for releases.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from idf_nvs_secure.build.artifacts import build_artifacts, plan_for_project
from idf_nvs_secure.errors import KeyMaterialError
from idf_nvs_secure.formats.nvs_keys import derive_nvs_keys_from_hmac, parse_nvs_keys
from idf_nvs_secure.formats.nvs_reader import parse_nvs_image
from idf_nvs_secure.inputs.project import load_project

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
ENV = {"EXAMPLE_WIFI_PASSWORD": "example-test"}


@pytest.fixture(scope="module")
def project():
    return load_project(EXAMPLE)


@pytest.mark.parametrize("product", ["basic", "pro"])
def test_every_product_builds_and_reads_back_its_values(project, product):
    resolved, plan = plan_for_project(project, product, env=ENV)
    assert plan.target == "esp32" and plan.scheme == "flash_enc"
    assert [d for d in plan.diagnostics if d.severity == "error"] == []
    build = build_artifacts(resolved, plan, env=ENV)
    keys = parse_nvs_keys(build.find("nvs_keys_image").data)
    image = parse_nvs_image(build.find("nvs_image").data, keys=keys)
    assert image.problems == []
    got = {(i.namespace, i.key): (i.type, i.value) for i in image.entries}
    want = {(e.namespace, e.key): (e.type, e.value) for e in resolved.values["nvs"].entries}
    assert got == want
    assert build.find("nvs_image").offset == resolved.table.find("nvs").offset


def test_products_differ_in_values_and_one_partition_size(project):
    basic, _ = plan_for_project(project, "basic", env=ENV)
    pro, _ = plan_for_project(project, "pro", env=ENV)
    assert basic.table.find("nvs").size != pro.table.find("nvs").size
    assert "cloud" in pro.values["nvs"].namespaces and "cloud" not in basic.values["nvs"].namespaces


def test_main_c_reads_every_value_the_project_defines(project):
    source = (EXAMPLE / "main" / "main.c").read_text()
    read = set(re.findall(r'"(\w+)", "(\w+)"', source))
    keys = set()
    for product in project.products:
        resolved, _ = plan_for_project(project, product, env=ENV)
        keys |= {(e.namespace, e.key) for e in resolved.values["nvs"].entries}
    with open(EXAMPLE / "devices.csv", newline="") as fh:
        columns = next(csv.reader(fh))[1:]
    keys |= {tuple(c.split(":")[0].split("/")[-1].split(".", 1)) for c in columns}
    assert keys - read == set(), f"main.c does not read {sorted(keys - read)}"


def test_hmac_configuration_for_esp32c3_plans_cleanly(project):
    # idf.py set-target esp32c3: sdkconfig.defaults, then sdkconfig.defaults.esp32c3
    env = dict(ENV, IDF_TARGET="esp32c3")
    resolved, plan = plan_for_project(project, "pro", env=env)
    assert (plan.target, plan.scheme, plan.hmac_efuse_key_id) == ("esp32c3", "hmac", 0)
    assert plan.config["files"] == ("sdkconfig.defaults", "sdkconfig.defaults.esp32c3")
    assert [d for d in plan.diagnostics if d.severity == "error"] == []
    build = build_artifacts(resolved, plan, env=env)
    keys = derive_nvs_keys_from_hmac(build.find("hmac_key").data)
    assert parse_nvs_image(build.find("nvs_image").data, keys=keys).problems == []


def test_development_master_secret_is_refused_for_releases(project):
    resolved, plan = plan_for_project(project, "pro", env=ENV)
    assert resolved.master_secret.development_default is not None
    build = build_artifacts(resolved, plan, env=ENV)
    assert any("development default" in note for note in build.notes)
    with pytest.raises(KeyMaterialError, match="development default"):
        build_artifacts(resolved, plan, env=ENV, release=True)


def test_no_generated_files_are_committed():
    for generated in ("partitions.csv", "sdkconfig", "build"):
        assert not (EXAMPLE / generated).exists() or generated == "partitions.csv" and \
            "example_project/partitions.csv" in (EXAMPLE.parent / ".gitignore").read_text()

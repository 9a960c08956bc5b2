"""The declared public API: every name in __all__ exists, and the documented example runs."""

from __future__ import annotations

import os
from pathlib import Path

import idf_nvs_secure

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def test_every_public_name_exists():
    missing = [name for name in idf_nvs_secure.__all__ if not hasattr(idf_nvs_secure, name)]
    assert missing == []


def test_docstring_example_builds_the_example_project(monkeypatch):
    monkeypatch.setenv("EXAMPLE_WIFI_PASSWORD", "api-test")
    monkeypatch.delenv("NVS_MASTER_SECRET", raising=False)
    from idf_nvs_secure import build_artifacts, load_project, plan_for_project

    resolved, plan = plan_for_project(load_project(EXAMPLE), "pro", env=dict(os.environ))
    build = build_artifacts(resolved, plan, env=dict(os.environ))
    names = {a.name: a for a in build.artifacts}
    assert {"partition-table.bin", "partitions.csv", "nvs.bin", "nvs_keys.bin"} <= set(names)
    assert names["nvs.bin"].offset == resolved.table.find("nvs").offset

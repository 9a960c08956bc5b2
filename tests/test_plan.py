"""The security plan: a matrix of fixture projects, one fixture per diagnostic, intents.

Fixture projects live in tests/fixtures/sdkconfig/ (each file starts with a comment
saying why); diagnostic fixtures in tests/fixtures/sdkconfig/diag/<code>/.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from idf_nvs_secure.formats.partition_table import (
    APP_TYPE,
    DATA_TYPE,
    NVS_KEYS_SUBTYPE,
    NVS_SUBTYPE,
    Partition,
    PartitionTable,
)
from idf_nvs_secure.plan.outputs import plan_outputs
from idf_nvs_secure.plan.security import PlanIntent, SecurityPlan, detect_plan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sdkconfig"
DIAG = FIXTURES / "diag"


def plan_of(name: str, env: dict[str, str] | None = None, **kw: Any) -> SecurityPlan:
    return detect_plan(FIXTURES / name, env=env or {}, **kw)


def codes(plan: SecurityPlan, *severities: str) -> list[str]:
    return [d.code for d in plan.diagnostics if not severities or d.severity in severities]


# --- the matrix ---------------------------------------------------------------------------

MATRIX = [
    # fixture, env, expected plan fields, NVS partitions (name, encrypted, key source),
    # error+warning codes, info codes
    ("esp32_flash_enc_dev", {},
     dict(target="esp32", nvs_encryption=True, scheme="flash_enc", hmac_efuse_key_id=None,
          flash_encryption=True, flash_encryption_mode="development", flash_encryption_key="aes-256",
          partition_table={"file": "partitions.csv", "offset": 0x9000}, flash_size="4MB",
          keys_partition="nvs_keys"),
     [("nvs", True, "nvs_keys_chip"), ("storage", False, None)], [], []),
    ("esp32c3_hmac", {},
     dict(target="esp32c3", nvs_encryption=True, scheme="hmac", hmac_efuse_key_id=0,
          flash_encryption=False, flash_encryption_mode=None, flash_encryption_key=None,
          partition_table={"file": "builtin:partitions_singleapp.csv", "offset": 0x8000},
          flash_size="4MB", keys_partition=None),
     [("nvs", True, "hmac")], [], ["hmac-key-on-chip"]),
    ("esp32s3_release", {},
     dict(target="esp32s3", nvs_encryption=True, scheme="flash_enc", flash_encryption=True,
          flash_encryption_mode="release", flash_encryption_key="xts-aes-256",
          partition_table={"file": "partitions/secure.csv", "offset": 0xC000}, flash_size="8MB",
          keys_partition="nvs_keys"),
     [("nvs", True, "nvs_keys_chip")], [], []),
    ("nvs_off", {},
     dict(target="esp32", nvs_encryption=False, scheme=None, hmac_efuse_key_id=None,
          flash_encryption=False, flash_encryption_mode=None,
          partition_table={"file": "builtin:partitions_singleapp.csv", "offset": 0x8000},
          flash_size="2MB", keys_partition=None),
     [("nvs", False, None)], [], ["nvs-encryption-off"]),
    ("defaults_partial", {},
     dict(target="esp32c3", nvs_encryption=True, scheme="hmac", hmac_efuse_key_id=2,
          flash_encryption=True, flash_encryption_mode="development", flash_encryption_key="xts-aes-128",
          partition_table={"file": "builtin:partitions_singleapp.csv", "offset": 0x8000},
          flash_size="4MB"),
     [("nvs", True, "hmac")], [], ["hmac-key-on-chip"]),
    ("defaults_env", {"SDKCONFIG_DEFAULTS": "config/base.defaults;config/secure.defaults"},
     dict(target="esp32s3", nvs_encryption=True, scheme="hmac", hmac_efuse_key_id=4,
          flash_encryption=False, flash_size="16MB"),
     [("nvs", True, "hmac")], [], ["hmac-key-on-chip"]),
    ("idf_target_env", {"IDF_TARGET": "esp32h2"},
     dict(target="esp32h2", nvs_encryption=True, scheme="hmac", hmac_efuse_key_id=1, flash_size="2MB"),
     [("nvs", True, "hmac")], [], ["hmac-key-on-chip"]),
    ("builtin_encr_nvs", {},
     dict(target="esp32", nvs_encryption=True, scheme="flash_enc", flash_encryption=True,
          partition_table={"file": "builtin:partitions_two_ota_encr_nvs.csv", "offset": 0x8000},
          flash_size="4MB", keys_partition="nvs_key"),
     [("nvs", True, "nvs_keys_chip")], [], []),
    ("renamed_options", {},
     dict(target="esp32", flash_encryption=True, scheme="flash_enc", keys_partition="nvs_key",
          partition_table={"file": "builtin:partitions_singleapp_encr_nvs.csv", "offset": 0x8000}),
     [("nvs", True, "nvs_keys_chip")], [], []),
    ("linux_host", {},
     dict(target="linux", nvs_encryption=False, scheme=None, flash_encryption=False, flash_size=None),
     [("nvs", False, None)], ["linux-no-nvs-encryption"], []),
    ("no_config", {},
     dict(target="esp32", nvs_encryption=False, flash_size="2MB"),
     [("nvs", False, None)], [], ["nvs-encryption-off"]),
]


@pytest.mark.parametrize("name, env, fields, parts, problems, infos", MATRIX,
                         ids=[row[0] for row in MATRIX])
def test_matrix(name: str, env: dict[str, str], fields: dict[str, Any],
                parts: list[tuple[str, bool, str | None]], problems: list[str], infos: list[str]) -> None:
    plan = plan_of(name, env)
    for key, value in fields.items():
        got = dict(plan.partition_table) if key == "partition_table" else getattr(plan, key)
        assert got == value, key
    assert [(p.name, p.encrypted, p.key_source) for p in plan.nvs_partitions] == parts
    assert codes(plan, "error", "warning") == problems
    assert codes(plan, "info") == infos
    assert plan.ok


def test_builtin_table_layout_is_known() -> None:
    plan = plan_of("builtin_encr_nvs")
    table = plan.table
    assert table is not None
    assert [(p.name, p.offset, p.size) for p in table.partitions] == [
        ("nvs", 0x9000, 0x4000), ("otadata", 0xD000, 0x2000), ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x100000), ("ota_0", 0x110000, 0x100000), ("ota_1", 0x210000, 0x100000),
        ("nvs_key", 0x310000, 0x1000)]
    assert table.find("nvs_key").encrypted
    # No project file: nothing of ours is written; the chip's keys need an erased partition.
    outputs = plan_outputs(plan, None)
    assert outputs.outputs == ()
    assert [a.split(":")[0] for a in outputs.actions] == ["keep nvs_key at 0x310000 erased"]


def _matching_sdkconfig(json_file: Path) -> str:
    """The sdkconfig text ESP-IDF writes beside a sdkconfig.json (same values)."""
    lines = []
    for name, value in json.loads(json_file.read_text()).items():
        if value is True:
            lines.append(f"CONFIG_{name}=y")
        elif value is False:
            lines.append(f"# CONFIG_{name} is not set")
        elif isinstance(value, str):
            lines.append(f"CONFIG_{name}={json.dumps(value)}")
        else:
            lines.append(f"CONFIG_{name}={value}")
    return "\n".join(lines) + "\n"


def test_sdkconfig_json_precedence(tmp_path: Path) -> None:
    # ESP-IDF writes sdkconfig about 60 ms after build/config/sdkconfig.json: the JSON
    # (the build's resolved configuration) is used when the two say the same.
    project = Path(shutil.copytree(FIXTURES / "json_precedence", tmp_path / "p"))
    resolved = project / "build" / "config" / "sdkconfig.json"
    (project / "sdkconfig").write_text(_matching_sdkconfig(resolved))
    os.utime(resolved, (1_000, 1_000))
    os.utime(project / "sdkconfig", (1_000.06, 1_000.06))
    plan = detect_plan(project, env={})
    assert (plan.target, plan.scheme, plan.hmac_efuse_key_id) == ("esp32c6", "hmac", 3)
    assert dict(plan.partition_table) == {"file": "builtin:partitions_two_ota.csv", "offset": 0x9000}
    assert plan.nvs_partition("nvs").offset == 0xA000
    assert plan.config["kind"] == "sdkconfig.json"
    assert not any("sdkconfig.json" in n for n in plan.notes)
    # An sdkconfig edited since (whatever the times say): the JSON is stale.
    shutil.copy(FIXTURES / "json_precedence" / "sdkconfig", project / "sdkconfig")
    os.utime(project / "sdkconfig", (500, 500))
    stale = detect_plan(project, env={})
    assert (stale.target, stale.nvs_encryption) == ("esp32", False)
    assert any("does not match sdkconfig" in n for n in stale.notes)


# --- one fixture per diagnostic ------------------------------------------------------------

DIAGNOSTICS = [
    # fixture (= code), env, intent, severity
    ("nvs-keys-partition-missing", {}, None, "error"),
    ("nvs-keys-not-encrypted", {}, None, "error"),
    ("nvs-keys-too-small", {}, None, "error"),
    ("nvs-partition-encrypted-flag", {}, None, "error"),
    ("hmac-unsupported", {}, None, "error"),
    ("flash-enc-scheme-without-flash-encryption", {}, None, "error"),
    ("hmac-key-id-unset", {}, None, "error"),
    ("nvs-encryption-unavailable", {}, None, "error"),
    ("scheme-none", {}, None, "warning"),
    ("release-plaintext-nvs-keys", {}, PlanIntent(host_keys=True), "warning"),
    ("values-need-host-keys", {}, PlanIntent(values_files={"nvs": "nvs_values.csv"}), "error"),
    ("partition-table-missing", {}, None, "error"),
    ("partition-table-not-generated", {}, PlanIntent(generated_csv="partitions.generated.csv"), "error"),
    ("partition-table-invalid", {}, None, "error"),
    ("builtin-table-unknown", {}, None, "error"),
    ("target-mismatch", {"IDF_TARGET": "esp32s3"}, None, "error"),
    ("config-warning", {}, None, "warning"),
    ("config-value-ignored", {}, None, "warning"),
    ("default-nvs-partition-missing", {}, None, "warning"),
    ("nvs-keys-unused", {}, None, "info"),
    ("intent-partition-unknown", {}, PlanIntent(values_files={"settings": "s.csv"}), "error"),
    ("plain-nvs-values", {}, PlanIntent(values_files={"calib": "calib.csv"}), "info"),
]


@pytest.mark.parametrize("code, env, intent, severity", DIAGNOSTICS, ids=[d[0] for d in DIAGNOSTICS])

def test_each_diagnostic(code: str, env: dict[str, str], intent: PlanIntent | None, severity: str) -> None:
    folder = DIAG / code
    first = next(folder.glob("sdkconfig*")).read_text().splitlines()[0]
    assert first.startswith("# "), "each fixture says why it exists"
    plan = detect_plan(folder, env=env, intent=intent)
    found = [d for d in plan.diagnostics if d.code == code]
    assert found, [d.code for d in plan.diagnostics]
    assert found[0].severity == severity
    assert len(found[0].message) > 40
    assert plan.ok is (not any(d.severity == "error" for d in plan.diagnostics))
    if severity == "error":
        assert not plan.ok


def test_every_documented_code_has_a_fixture_or_matrix_row() -> None:
    import idf_nvs_secure.plan.checks as checks

    documented = {line.split()[0] for line in checks.__doc__.splitlines()
                  if line[:1].islower() and "-" in line.split()[0]}
    covered = {d[0] for d in DIAGNOSTICS} | {c for row in MATRIX for c in row[4] + row[5]}
    covered |= {"nvs-keys-multiple"}  # test_generated_table_is_used
    # One test per row of the ESP-IDF feature table (tests/test_idf_versions.py).
    covered |= {"firmware-lacks-nvs-encryption", "firmware-lacks-hmac-scheme",
                "firmware-lacks-readonly", "firmware-lacks-small-readonly-nvs",
                "firmware-version-unknown", "nvs-sec-provider-missing"}
    assert documented <= covered, documented - covered


def test_messages_offer_the_fixes() -> None:
    plan = detect_plan(DIAG / "values-need-host-keys", env={},
                       intent=PlanIntent(values_files={"nvs": "nvs_values.csv"}))
    (diag,) = [d for d in plan.diagnostics if d.code == "values-need-host-keys"]
    assert "host cannot encrypt data for a key it never sees" in diag.message
    assert "host provide the keys" in diag.message and "firmware" in diag.message
    assert "HMAC" not in diag.message  # esp32 has no HMAC: that way out is not offered
    hmac_plan = plan_of("esp32c3_hmac", intent=PlanIntent(values_files={"nvs": "v.csv"}))
    (diag,) = [d for d in hmac_plan.diagnostics if d.code == "values-need-host-keys"]
    assert "HMAC key" in diag.message
    hmac_dev = detect_plan(DIAG / "hmac-unsupported", env={})
    (diag,) = [d for d in hmac_dev.diagnostics if d.code == "hmac-unsupported"]
    assert (diag.file, diag.line) == ("sdkconfig.defaults", 4)
    assert "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y" in diag.message


def test_encrypted_flag_with_compat_option_is_info(tmp_path: Path) -> None:
    project = Path(shutil.copytree(DIAG / "nvs-partition-encrypted-flag", tmp_path / "p"))
    with open(project / "sdkconfig", "a") as fh:
        fh.write("CONFIG_NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG=y\n")
    plan = detect_plan(project, env={})
    assert [(d.code, d.severity) for d in plan.diagnostics] == [("nvs-partition-encrypted-flag", "info")]


# --- intents ---------------------------------------------------------------------------------


def test_host_keys_with_values_make_artifacts() -> None:
    intent = PlanIntent(values_files={"nvs": "nvs.csv", "storage": "storage.csv"}, host_keys=True)
    plan = plan_of("esp32_flash_enc_dev", intent=intent)
    assert plan.ok and codes(plan, "error", "warning") == []
    assert [(p.name, p.key_source, p.values_file) for p in plan.nvs_partitions] == [
        ("nvs", "nvs_keys_host", "nvs.csv"), ("storage", None, "storage.csv")]
    assert [(p.name, p.encrypted) for p in plan.nvs_partitions] == [("nvs", True),
                                                                    ("storage", False)]
    assert codes(plan, "info") == ["plain-nvs-values"]


def test_secure_partitions_are_encrypted_too() -> None:
    plan = plan_of("esp32_flash_enc_dev", intent=PlanIntent(secure_partitions=frozenset({"storage"})))
    assert [(p.name, p.encrypted) for p in plan.nvs_partitions] == [("nvs", True), ("storage", True)]


def test_hmac_host_key_artifact() -> None:
    plan = plan_of("esp32c3_hmac", intent=PlanIntent(values_files={"nvs": "v.csv"}, host_keys=True))
    assert plan.ok and "hmac-key-on-chip" not in codes(plan)
    assert plan.hmac_efuse_key_id == 0
    assert any("BLOCK_KEY0" in a and "HMAC_UP" in a for a in plan_outputs(plan, None).actions)


def test_release_pre_encrypted_keys_are_fine() -> None:
    intent = PlanIntent(host_keys=True, nvs_keys_pre_encrypted=True)
    plan = detect_plan(DIAG / "release-plaintext-nvs-keys", env={}, intent=intent)
    assert codes(plan) == []


def _table(*parts: Partition) -> PartitionTable:
    return PartitionTable(tuple(parts))


def test_generated_table_is_used(tmp_path: Path) -> None:
    (tmp_path / "sdkconfig.defaults").write_text(
        '# The table comes from partitions.yaml (not written yet).\nCONFIG_IDF_TARGET="esp32"\n'
        'CONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_PARTITION_TABLE_CUSTOM=y\n'
        'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="build/partitions.csv"\n')
    table = _table(Partition("nvs", DATA_TYPE, NVS_SUBTYPE, 0x9000, 0x6000),
                   Partition("keys_a", DATA_TYPE, NVS_KEYS_SUBTYPE, 0xF000, 0x1000, encrypted=True),
                   Partition("keys_b", DATA_TYPE, NVS_KEYS_SUBTYPE, 0x10000, 0x1000, encrypted=True),
                   Partition("factory", APP_TYPE, 0, 0x20000, 0x100000))
    pending = detect_plan(tmp_path, env={}, intent=PlanIntent(generated_csv="build/partitions.csv"))
    assert pending.table is None and pending.ok
    assert any("generated from partitions.yaml" in n for n in pending.notes)
    plan = detect_plan(tmp_path, env={}, intent=PlanIntent(generated_csv="build/partitions.csv",
                                                           generated_table=table))
    assert plan.table is table and plan.keys_partition == "keys_a"
    assert codes(plan) == ["nvs-keys-multiple"]


def test_generated_csv_against_builtin_table() -> None:
    plan = plan_of("esp32c3_hmac", intent=PlanIntent(generated_csv="partitions.csv"))
    (diag,) = [d for d in plan.diagnostics if d.code == "partition-table-not-generated"]
    assert 'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"' in diag.message


# --- JSON -------------------------------------------------------------------------------------


def test_to_json_shape_and_determinism() -> None:
    plan = plan_of("esp32_flash_enc_dev", intent=PlanIntent(values_files={"nvs": "n.csv"}, host_keys=True))
    data = plan.to_json()
    for key in ("target", "nvs_encryption", "scheme", "hmac_efuse_key_id", "flash_encryption",
                "flash_encryption_mode", "partition_table", "flash_size", "diagnostics",
                "nvs_partitions", "symbols"):
        assert key in data
    assert data["partition_table"] == {"file": "partitions.csv", "offset": 0x9000}
    assert data["nvs_partitions"][0] == {"name": "nvs", "offset": 0xA000, "size": 0x6000, "encrypted": True,
                                         "key_source": "nvs_keys_host", "values_file": "n.csv",
                                         "flagged_encrypted": False}
    assert data["symbols"]["NVS_SEC_KEY_PROTECT_USING_FLASH_ENC"] is True
    text = json.dumps(data, sort_keys=True)
    again = json.dumps(plan_of("esp32_flash_enc_dev", intent=PlanIntent(values_files={"nvs": "n.csv"},
                                                                         host_keys=True)).to_json(),
                       sort_keys=True)
    assert text == again


def test_diagnostics_json_has_severity_code_message() -> None:
    data = detect_plan(DIAG / "hmac-unsupported", env={}).to_json()
    assert data["diagnostics"][0]["severity"] == "error"
    assert {"severity", "code", "message"} <= set(data["diagnostics"][0])
    order = [d["severity"] for d in data["diagnostics"]]
    assert order == sorted(order, key=["error", "warning", "info"].index)


def test_a_later_defaults_file_overrides_an_earlier_choice_without_a_diagnostic(tmp_path):
    # sdkconfig.defaults asks for the flash-encryption scheme; sdkconfig.defaults.esp32c3
    # selects HMAC instead: ESP-IDF applies them in order, so nothing is wrong.
    (tmp_path / "sdkconfig.defaults").write_text(
        "CONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_NVS_ENCRYPTION=y\n"
        "CONFIG_NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=y\n")
    (tmp_path / "sdkconfig.defaults.esp32c3").write_text(
        "CONFIG_SECURE_FLASH_ENC_ENABLED=n\nCONFIG_NVS_SEC_KEY_PROTECT_USING_HMAC=y\n"
        "CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID=1\n")
    plan = detect_plan(tmp_path, env={"IDF_TARGET": "esp32c3"})
    assert plan.scheme == "hmac"
    assert "flash-enc-scheme-without-flash-encryption" not in {d.code for d in plan.diagnostics}
    # the same request alone is still reported
    (tmp_path / "sdkconfig.defaults.esp32c3").write_text("CONFIG_SECURE_FLASH_ENC_ENABLED=n\n")
    plan = detect_plan(tmp_path, env={"IDF_TARGET": "esp32c3"})
    assert "flash-enc-scheme-without-flash-encryption" in {d.code for d in plan.diagnostics}

"""The idf.py extension, called the way idf.py calls it (no ESP-IDF here).

idf.py calls ``action_extensions(all_actions, project_dir)`` once per extension, each
action's callback as ``callback(name, ctx, global_args, **action_args)`` after moving
global-scope options (-p, -b) into ``global_args``, and each global callback as
``callback(ctx, global_args, tasks)`` before any task runs.  ``global_args`` is a dict
with attribute access (idf_py_actions.tools.PropertyDict).  The few idf.py services the
extension uses (ensure_build_directory, run_target, RunTool) are replaced by recorders.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from fixture_projects import copy_example_project, example_password_location

from idf_nvs_secure.app import idf_ext
from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.app.idf_ext import (
    ACTION_NAMES,
    NvsSecureIdfError,
    action_extensions,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
PASSWORD = "example-wifi-password"
BROKEN = "  broken:\n    partitions: {nvs_keys: null}\n"


class PropertyDict(dict):
    """idf.py's global_args: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


CTX = SimpleNamespace(info_name="idf.py")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IDF_PATH", "IDF_TARGET", "SDKCONFIG_DEFAULTS", "NVS_MASTER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXAMPLE_WIFI_PASSWORD", PASSWORD)


def global_args(project: Path, **extra) -> PropertyDict:
    return PropertyDict({"project_dir": str(project), "build_dir": str(project / "build"),
                         "define_cache_entry": [], "port": None, "baud": 460800,
                         "no_hints": True, "verbose": False, "generator": None, **extra})


def configure(project: Path, product: str | None = None, config: dict | None = None) -> None:
    """What CMake's configure step leaves in the build directory."""
    build = project / "build"
    sdkconfig = build / "config" / "sdkconfig.json"
    sdkconfig.parent.mkdir(parents=True, exist_ok=True)
    sdkconfig.write_text(json.dumps(config or {
        "IDF_TARGET": "esp32", "SECURE_FLASH_ENC_ENABLED": True,
        "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT": True, "NVS_ENCRYPTION": True,
        "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": True, "PARTITION_TABLE_CUSTOM": True,
        "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv", "PARTITION_TABLE_OFFSET": 0xD000,
        "ESPTOOLPY_FLASHSIZE": "4MB"}), encoding="utf-8")
    args = ["cmake-configure", str(project), "--build-dir", str(build), "--sdkconfig",
            str(sdkconfig)] + (["--product", product] if product else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (build / "flasher_args.json").write_text(json.dumps({"extra_esptool_args": {
        "after": "no-reset", "before": "default-reset", "stub": True, "chip": "esp32"}}))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replace idf.py's services; ensure_build_directory re-runs the configure step when
    a -D entry asks for another product, as CMake would."""
    calls: list[tuple] = []

    def ensure(args, prog_name):
        calls.append(("ensure_build_directory", prog_name))
        for entry in args.define_cache_entry:
            if entry.startswith("NVS_SECURE_PRODUCT="):
                configure(Path(args.project_dir), entry.split("=", 1)[1])

    monkeypatch.setattr(idf_ext, "_ensure_build_directory", ensure)
    monkeypatch.setattr(idf_ext, "_run_target",
                        lambda target, args, env: calls.append(("run_target", target, env)))
    monkeypatch.setattr(idf_ext, "_run_tool",
                        lambda name, argv, args: calls.append(("run_tool", name, argv)))
    return calls


def call(name: str, args: PropertyDict, **action_args) -> None:
    """Invoke an action's callback exactly as idf.py's Task does."""
    action = action_extensions({}, args.project_dir)["actions"][name]
    action["callback"](name, CTX, args, **action_args)


# --- registration -----------------------------------------------------------------------


def test_extension_dictionary() -> None:
    ext = action_extensions({}, "/nowhere")
    assert ext["version"] == "1"
    assert tuple(ext["actions"]) == ACTION_NAMES
    assert ext["global_action_callbacks"] == [idf_ext.check_before_build]
    for name, action in ext["actions"].items():
        assert callable(action["callback"]) and action["help"], name
        names = [n for option in action["options"] for n in option["names"]]
        assert "--product" in names, name
    serial = {n: [o for o in ext["actions"][n]["options"] if "-p" in o["names"]]
              for n in ("nvs-flash", "nvs-keys-flash", "nvs-keys-erase")}
    assert all(opts and opts[0]["scope"] == "global" for opts in serial.values())


def test_entry_point_and_component_shim_register_once() -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group="idf_extension")
           if ep.name == "idf_nvs_secure"]
    assert len(eps) == 1 and eps[0].load() is action_extensions
    # idf.py loads component idf_ext.py files first (ESP-IDF 6), then entry points.
    shim_file = REPO / "cmake" / "idf_nvs_secure" / "idf_ext.py"
    spec = importlib.util.spec_from_file_location("idf_ext_cmake", shim_file)
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    first = shim.action_extensions({"actions": {"flash": {}}}, "/p")
    assert set(first["actions"]) == set(ACTION_NAMES)
    merged = {"actions": {"flash": {}, **first["actions"]}}
    assert eps[0].load()(merged, "/p") == {"version": "1"}


# --- the global check before builds -------------------------------------------------------


def task(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, action_args={})


def test_check_stops_a_build_whose_plan_has_errors(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path, BROKEN)
    args = global_args(project, define_cache_entry=["NVS_SECURE_PRODUCT=broken"])
    with pytest.raises(NvsSecureIdfError, match=r"\[nvs-keys-partition-missing\]"):
        idf_ext.check_before_build(CTX, args, [task("all")])
    with pytest.raises(NvsSecureIdfError, match=r"subtype \"nvs_keys\" not found"):
        idf_ext.check_before_build(CTX, args, [task("flash")])
    idf_ext.check_before_build(CTX, args, [task("menuconfig")])  # not a build: no check
    idf_ext.check_before_build(CTX, global_args(project), [task("all")])  # product basic: fine


def test_check_reports_input_errors_and_ignores_other_projects(tmp_path: Path,
                                                              monkeypatch) -> None:
    project = copy_example_project(tmp_path)
    monkeypatch.delenv("EXAMPLE_WIFI_PASSWORD")
    with pytest.raises(NvsSecureIdfError, match="EXAMPLE_WIFI_PASSWORD is not set"):
        idf_ext.check_before_build(CTX, global_args(project), [task("all")])
    idf_ext.check_before_build(CTX, global_args(tmp_path), [task("all")])  # no nvs_secure.yaml


def test_check_uses_the_build_s_product(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path, BROKEN)
    (project / "build").mkdir()
    (project / "build" / "CMakeCache.txt").write_text("NVS_SECURE_PRODUCT:STRING=broken\n")
    with pytest.raises(NvsSecureIdfError):
        idf_ext.check_before_build(CTX, global_args(project), [task("all")])


def test_check_reuses_a_current_manifest_and_nothing_else(tmp_path: Path, monkeypatch) -> None:
    # Found in a real `idf.py build` (ESP-IDF master, linux target): the check evaluated
    # the whole plan on every call, about 0.5 s of a 1.9 s no-op build.  When the
    # configure step's manifest was made from exactly the current inputs and found no
    # error, the check trusts it; any difference evaluates the plan again.
    project = copy_example_project(tmp_path)
    configure(project)
    evaluated: list[str | None] = []
    real_plan = idf_ext._plan

    def counting_plan(args, product):
        evaluated.append(product)
        return real_plan(args, product)

    monkeypatch.setattr(idf_ext, "_plan", counting_plan)
    args = global_args(project)
    idf_ext.check_before_build(CTX, args, [task("all")])
    assert evaluated == []  # nothing changed since the configure step: no evaluation

    # Each of these makes the manifest stale: the check evaluates the plan again.
    monkeypatch.delenv("EXAMPLE_WIFI_PASSWORD")  # a value's variable unset
    with pytest.raises(NvsSecureIdfError, match="EXAMPLE_WIFI_PASSWORD is not set"):
        idf_ext.check_before_build(CTX, args, [task("all")])
    monkeypatch.setenv("EXAMPLE_WIFI_PASSWORD", PASSWORD)
    idf_ext.check_before_build(CTX, global_args(project, define_cache_entry=["X=1"]),
                               [task("all")])
    (project / "sdkconfig").write_text("CONFIG_IDF_TARGET=\"esp32c3\"\n")  # not the build's
    idf_ext.check_before_build(CTX, args, [task("all")])
    (project / "sdkconfig").unlink()
    assert len(evaluated) == 3
    idf_ext.check_before_build(CTX, args, [task("all")])
    assert len(evaluated) == 3  # current again

    # The project file edited after the configure step (a plan error now): the check
    # finds the error the stale manifest does not have.
    project_file = project / "nvs_secure.yaml"
    project_file.write_text(project_file.read_text().replace(
        "default_product: basic", "default_product: broken") + BROKEN)
    with pytest.raises(NvsSecureIdfError, match=r"\[nvs-keys-partition-missing\]"):
        idf_ext.check_before_build(CTX, args, [task("all")])
    # Configured with the error, the manifest has it: the check evaluates and stops.
    configure(project)
    assert manifest_errors(project)
    with pytest.raises(NvsSecureIdfError, match=r"\[nvs-keys-partition-missing\]"):
        idf_ext.check_before_build(CTX, args, [task("all")])
    assert len(evaluated) == 5


def manifest_errors(project: Path) -> list[str]:
    data = json.loads((project / "build" / "nvs_secure" / "config.json").read_text())
    return data["errors"]


def test_manifest_records_the_configure_inputs(tmp_path: Path) -> None:
    import hashlib

    project = copy_example_project(tmp_path)
    configure(project)
    data = json.loads((project / "build" / "nvs_secure" / "config.json").read_text())
    files = [project / "nvs_secure.yaml", project / "partitions.yaml",
             project / "build" / "config" / "sdkconfig.json"]
    assert data["input_digests"] == {
        str(f.resolve()): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert data["value_env"] == ["EXAMPLE_WIFI_PASSWORD"]  # not NVS_MASTER_SECRET
    assert "NVS_MASTER_SECRET" in data["env"]


# --- commands -------------------------------------------------------------------------


def test_commands_need_a_configured_build(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path)
    for name in ("nvs-secure-gen", "nvs-flash", "nvs-keys-flash", "nvs-keys-erase"):
        with pytest.raises(NvsSecureIdfError, match="has not been configured"):
            call(name, global_args(project))
    assert recorder == []


def test_nvs_flash_and_keys_flash_use_esp_idf_targets(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path)
    configure(project)
    args = global_args(project, port="/dev/ttyUSB3", baud=921600)
    call("nvs-flash", args)
    call("nvs-keys-flash", args)
    call("nvs-keys-flash", args, plaintext=True)
    serial = {"ESPBAUD": "921600", "ESPPORT": "/dev/ttyUSB3"}
    assert [c for c in recorder if c[0] == "run_target"] == [
        ("run_target", "nvs-flash", serial),
        ("run_target", "encrypted-nvs_keys-flash", serial),
        ("run_target", "nvs_keys-flash", serial)]
    assert ("ensure_build_directory", "idf.py") in recorder


def test_gen_and_another_product(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path)
    configure(project)
    args = global_args(project)
    call("nvs-secure-gen", args, product="pro")
    assert "NVS_SECURE_PRODUCT=pro" in args.define_cache_entry
    assert recorder[-1] == ("run_target", "nvs-secure-gen", {})
    manifest = json.loads((project / "build/nvs_secure/config.json").read_text())
    assert manifest["product"] == "pro"


def test_keys_erase_only_for_chip_made_keys(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path)
    configure(project)
    with pytest.raises(NvsSecureIdfError, match="nvs-keys-flash"):
        call("nvs-keys-erase", global_args(project))

    chip = tmp_path / "chip"
    chip.mkdir()
    shutil.copy(EXAMPLE / "partitions.yaml", chip)
    (chip / "nvs_secure.yaml").write_text(
        "version: 1\npartitions: partitions.yaml\nkeys: {source: chip}\nnvs:\n  nvs: {}\n")
    configure(chip)
    call("nvs-keys-erase", global_args(chip, port="/dev/ttyUSB0"))
    (_, name, argv), = [c for c in recorder if c[0] == "run_tool"]
    assert argv[1:] == ["-m", "esptool", "--chip", "esp32", "-p", "/dev/ttyUSB0", "-b", "460800",
                        "--before", "default-reset", "--after", "no-reset",
                        "erase-region", "0x17000", "0x1000"]
    with pytest.raises(NvsSecureIdfError, match="chip makes its own NVS keys"):
        call("nvs-keys-flash", global_args(chip))


def test_release_mode_keys_are_not_flashed(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path)
    configure(project, config={
        "IDF_TARGET": "esp32", "SECURE_FLASH_ENC_ENABLED": True,
        "SECURE_FLASH_ENCRYPTION_MODE_RELEASE": True, "NVS_ENCRYPTION": True,
        "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": True, "PARTITION_TABLE_CUSTOM": True,
        "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv", "PARTITION_TABLE_OFFSET": 0xD000,
        "ESPTOOLPY_FLASHSIZE": "4MB"})
    with pytest.raises(NvsSecureIdfError, match="release-mode flash encryption"):
        call("nvs-keys-flash", global_args(project))
    assert not [c for c in recorder if c[0] == "run_target"]


def test_linux_target_has_nothing_to_flash(tmp_path: Path, recorder, capsys) -> None:
    project = copy_example_project(tmp_path)
    configure(project, config={"IDF_TARGET": "linux", "PARTITION_TABLE_CUSTOM": True,
                               "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv",
                               "PARTITION_TABLE_OFFSET": 0xD000, "ESPTOOLPY_FLASHSIZE": "4MB"})
    call("nvs-flash", global_args(project))
    assert "emulated flash" in capsys.readouterr().out
    assert not [c for c in recorder if c[0] == "run_target"]


def test_build_errors_stop_the_commands(tmp_path: Path, recorder) -> None:
    project = copy_example_project(tmp_path, BROKEN)
    configure(project, "broken")
    with pytest.raises(NvsSecureIdfError, match="cannot make the NVS images"):
        call("nvs-flash", global_args(project))


def test_secure_check_prints_the_plan(tmp_path: Path, capsys) -> None:
    project = copy_example_project(tmp_path, BROKEN)
    call("nvs-secure-check", global_args(project))
    out = capsys.readouterr().out
    assert "product:           basic" in out and "NVS encryption:    on" in out
    with pytest.raises(NvsSecureIdfError, match="1 error"):
        call("nvs-secure-check", global_args(project), product="broken")
    assert "nvs-keys-partition-missing" in capsys.readouterr().out


def test_secure_check_needs_no_secret_value(tmp_path: Path, capsys, monkeypatch) -> None:
    # Issue 15, finding 1: showing the plan is read-only; only building needs the value.
    monkeypatch.delenv("EXAMPLE_WIFI_PASSWORD")
    call("nvs-secure-check", global_args(copy_example_project(tmp_path)))
    assert (f"nvs_values.yaml:{example_password_location()}): build, "
            "release and batch need it") in capsys.readouterr().out


def test_release_calls_the_library_not_the_cli(tmp_path: Path, recorder, monkeypatch) -> None:
    # The extension calls the library's release_project, never the CLI or a subprocess.
    import idf_nvs_secure.release.bundle as bundle_module

    project = copy_example_project(tmp_path)
    args = global_args(project)
    seen = {}

    def fake(project_dir, out, **kw):
        seen.update(project_dir=project_dir, out=out, **kw)
        return bundle_module.Bundle((), {}, "pro-release.zip", b""), out / "pro-release.zip"

    monkeypatch.setattr(bundle_module, "release_project", fake)
    call("nvs-secure-release", args, product="pro")
    assert recorder == []  # no subprocess
    assert seen["project_dir"] == project and seen["product"] == "pro"
    assert seen["out"] == project / "build" / "nvs_secure_release" / "pro"
    # Without --product: the project's default product names the folder (not "default").
    call("nvs-secure-release", args)
    assert seen["out"] == project / "build" / "nvs_secure_release" / "basic"


def test_loading_the_extension_loads_nothing_heavy() -> None:
    # idf.py loads the extension on every call (reconfigure, menuconfig, monitor ...).
    import subprocess
    import sys

    code = ("import sys, idf_nvs_secure.app.idf_ext; "
            "print(sorted(m for m in sys.modules if m.startswith('idf_nvs_secure.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "idf_nvs_secure.plan" not in loaded and "idf_nvs_secure.config" not in loaded
    from idf_nvs_secure.app import idf_ext
    from idf_nvs_secure.inputs.project import PROJECT_FILE
    assert idf_ext.PROJECT_FILE == PROJECT_FILE

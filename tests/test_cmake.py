"""The CMake layer: ``idf-nvs-secure cmake-*`` in-process, and cmake/idf_nvs_secure.cmake
under real CMake against the ESP-IDF test double in tests/cmake_double (no ESP-IDF here).

The CMake tests configure a copy of example_project whose CMakeLists.txt is the one
users write, with the double in place of ESP-IDF's project.cmake; the double records
every ESP-IDF call it receives.  Then they build and check that a second build runs
nothing.  They are skipped when cmake is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_projects import copy_example_project

from idf_nvs_secure.app.cli import cli
from idf_nvs_secure.build.artifacts import build_artifacts, plan_for_project
from idf_nvs_secure.build.integration import BuildIntegration
from idf_nvs_secure.inputs.project import load_project

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
DOUBLE = Path(__file__).resolve().parent / "cmake_double"
CMAKE = shutil.which("cmake")
GENERATOR = os.environ.get("CMAKE_GENERATOR") or (
    "Ninja" if shutil.which("ninja") else "Unix Makefiles")
PASSWORD = "example-wifi-password"
ENV = {"EXAMPLE_WIFI_PASSWORD": PASSWORD}
CLEAN = ("IDF_PATH", "IDF_TARGET", "SDKCONFIG_DEFAULTS", "NVS_MASTER_SECRET", "MAKEFLAGS")
needs_cmake = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")

#: The user's CMakeLists.txt, with the double in place of ESP-IDF's project.cmake.
PROJECT_CMAKELISTS = """\
cmake_minimum_required(VERSION 3.16)
include({double}/idf_double.cmake)  # TEST DOUBLE of $ENV{{IDF_PATH}}/tools/cmake/project.cmake
execute_process(COMMAND ${{PYTHON}} -m idf_nvs_secure cmake-dir
                OUTPUT_VARIABLE NVS_SECURE_DIR OUTPUT_STRIP_TRAILING_WHITESPACE
                COMMAND_ERROR_IS_FATAL ANY)
{hook}
project(double_test)
"""
INCLUDE_FORM = "include(${NVS_SECURE_DIR}/idf_nvs_secure.cmake)"
COMPONENT_FORM = "list(APPEND EXTRA_COMPONENT_DIRS ${NVS_SECURE_DIR})"


def sdkconfig_json(target: str = "esp32", mode: str | None = "development",
                   scheme: str | None = "flash_enc", table: str = "partitions.csv") -> dict:
    """A build's config/sdkconfig.json, as far as the plan reads it."""
    data: dict = {"IDF_TARGET": target, "PARTITION_TABLE_CUSTOM": True,
                  "PARTITION_TABLE_CUSTOM_FILENAME": table, "PARTITION_TABLE_FILENAME": table,
                  "PARTITION_TABLE_OFFSET": 0xD000, "ESPTOOLPY_FLASHSIZE": "4MB",
                  "SECURE_FLASH_ENC_ENABLED": mode is not None,
                  "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT": mode == "development",
                  "SECURE_FLASH_ENCRYPTION_MODE_RELEASE": mode == "release",
                  "NVS_ENCRYPTION": scheme is not None,
                  "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": scheme == "flash_enc",
                  "NVS_SEC_KEY_PROTECT_USING_HMAC": scheme == "hmac"}
    if scheme == "hmac":
        data["NVS_SEC_HMAC_EFUSE_KEY_ID"] = 0
    if target == "linux":
        data.update(SECURE_FLASH_ENC_ENABLED=False, SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=False,
                    NVS_ENCRYPTION=False, NVS_SEC_KEY_PROTECT_USING_FLASH_ENC=False)
    return data


def run_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a build: ours less ESP-IDF's and the test's variables, plus
    ``extra`` (a None value unsets the variable)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.update(ENV)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class DoubleBuild:
    """One project configured with real CMake against the ESP-IDF double."""

    def __init__(self, root: Path, *, hook: str = INCLUDE_FORM, config: dict | None = None,
                 extra_yaml: str = "", **cache: str) -> None:
        self.project = copy_example_project(root, extra_yaml=extra_yaml)
        self.build = self.project / "build"
        self.log = root / "calls.log"
        self.json = root / "sdkconfig.json"
        self.json.write_text(json.dumps(config or sdkconfig_json()), encoding="utf-8")
        (self.project / "CMakeLists.txt").write_text(
            PROJECT_CMAKELISTS.format(double=DOUBLE.as_posix(), hook=hook), encoding="utf-8")
        target = (config or {}).get("IDF_TARGET", "esp32")
        mode = (config or sdkconfig_json()).get("SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT")
        self.cache = {"PYTHON": sys.executable, "IDF_DOUBLE_LOG": str(self.log),
                      "IDF_DOUBLE_SDKCONFIG_JSON": str(self.json), "IDF_DOUBLE_TARGET": target,
                      "IDF_DOUBLE_DEV_MODE": "ON" if mode else "OFF", **cache}

    def configure(self, env: dict | None = None) -> subprocess.CompletedProcess:
        args = [CMAKE, "-G", GENERATOR, "-S", str(self.project), "-B", str(self.build)]
        args += [f"-D{k}={v}" for k, v in self.cache.items()]
        result = subprocess.run(args, capture_output=True, text=True, env=run_env(env))
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def cmake_build(self, target: str | None = None, ok: bool = True,
                    env: dict | None = None) -> str:
        args = [CMAKE, "--build", str(self.build)] + (["--target", target] if target else [])
        result = subprocess.run(args, capture_output=True, text=True, env=run_env(env))
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        return result.stdout + result.stderr

    def calls(self, name: str | None = None) -> list[list[str]]:
        rows = [line.split("|") for line in self.log.read_text(encoding="utf-8").splitlines()]
        return [r for r in rows if name is None or r[0] == name]

    def registrations(self) -> dict[str, list[str]]:
        return {r[1]: r[3].split(",") for r in self.calls("esp_partition_register_target")}

    def out(self, name: str) -> Path:
        return self.build / "nvs_secure" / "images" / name


def expected_images(project: Path, config: dict, product: str | None = None) -> dict[str, bytes]:
    """The images the library makes in-process for the same inputs."""
    sdkconfig = project.parent / "expected-sdkconfig.json"
    sdkconfig.write_text(json.dumps(config), encoding="utf-8")
    resolved, plan = plan_for_project(load_project(project), product, sdkconfig=sdkconfig,
                                      env=ENV)
    build = build_artifacts(resolved, plan, env=ENV)
    return {a.name: a.data for a in build.artifacts
            if a.kind in ("nvs_image", "nvs_keys_image", "hmac_key")}


# --- the CLI commands CMake runs (in-process) --------------------------------------------


def manifest(build: Path) -> BuildIntegration:
    return BuildIntegration.from_json(json.loads((build / "nvs_secure/config.json").read_text()))


def invoke(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args), env={**ENV, **{k: None for k in CLEAN}})
    assert "Traceback" not in result.output
    return result


def test_cmake_dir_is_the_component() -> None:
    result = invoke("cmake-dir")
    assert result.exit_code == 0
    folder = Path(result.output.strip())
    for name in ("idf_nvs_secure.cmake", "CMakeLists.txt", "project_include.cmake", "idf_ext.py"):
        assert (folder / name).is_file(), name


def test_configure_writes_csv_and_description_once(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    build = tmp_path / "build"
    args = ("cmake-configure", str(project), "--build-dir", str(build), "--sdkconfig", str(config))
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    csv = project / "partitions.csv"
    assert csv.read_text().startswith("# Generated by idf-nvs-secure from partitions.yaml")
    assert "nvs_keys,data,nvs_keys,0x17000,4K,encrypted" in csv.read_text()
    # CMake learns that the CSV changed from a variable, not from a message.
    assert "set(NVS_SECURE_CSV_CHANGED TRUE)" in (build / "nvs_secure/config.cmake").read_text()
    csv.write_text(csv.read_text())  # same text: not "changed" on the next run
    first = {p: p.stat().st_mtime_ns for p in (csv, build / "nvs_secure" / "config.json",
                                             build / "nvs_secure" / "stamp.json")}
    again = invoke(*args)
    assert again.exit_code == 0
    assert "set(NVS_SECURE_CSV_CHANGED FALSE)" in (build / "nvs_secure/config.cmake").read_text()
    assert {p: p.stat().st_mtime_ns for p in first} == first  # nothing re-written
    # The configure step builds nothing: no image, no key, no keystore.
    assert sorted(p.name for p in (build / "nvs_secure").iterdir()) == [
        "config.cmake", "config.json", "stamp.json"]

    integ = manifest(build)
    assert BuildIntegration.from_json(integ.to_json()) == integ
    assert integ.product == "basic" and integ.ok
    assert [(i.kind, i.file.name, i.partition, i.offset) for i in integ.images] == [
        ("nvs_keys_image", "nvs_keys.bin", "nvs_keys", 0x17000),
        ("nvs_image", "nvs.bin", "nvs", 0xE000)]
    assert {i.file.parent for i in integ.images} == {build / "nvs_secure" / "images"}
    keys, nvs = integ.images
    assert keys.encrypted and keys.flash_in_project and not keys.always_plaintext and keys.secret
    assert nvs.always_plaintext and nvs.flash_in_project and not nvs.encrypted
    assert integ.depends == (project / "nvs_secure.yaml", project / "partitions.yaml", config,
                             project / "nvs_values.yaml", project / "certs" / "device_cert.der",
                             project / "products" / "basic.yaml")
    # Values files are build dependencies only: editing one does not re-run configure.
    assert integ.configure_depends == (project / "nvs_secure.yaml", project / "partitions.yaml")
    assert sorted(integ.env) == ["EXAMPLE_WIFI_PASSWORD", "NVS_MASTER_SECRET"]
    assert any("encrypted-flash" in m for m in integ.messages)


def test_configure_does_not_load_the_builder(tmp_path: Path) -> None:
    # Every CMake configure step runs cmake-configure; it builds nothing, so it need not
    # import the artifact builder (cryptography and the image writers).
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    code = ("import sys\nfrom idf_nvs_secure.app.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in sys.modules if m.startswith('idf_nvs_secure.build.')))\n")
    done = subprocess.run(
        [sys.executable, "-c", code, "cmake-configure", str(project), "--build-dir",
         str(tmp_path / "build"), "--sdkconfig", str(config)],
        capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['idf_nvs_secure.build.integration']"
    assert (tmp_path / "build" / "nvs_secure" / "config.json").is_file()


def test_configure_needs_no_secret_values(tmp_path: Path) -> None:
    # A value's variable unset at configure time is not a configure error: the output
    # plan does not depend on values, so the images are registered and the build step
    # (which needs the value) reports it, every build, until it is set.
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["cmake-configure", str(project), "--build-dir",
                                      str(tmp_path / "b"), "--sdkconfig", str(config)],
                                env={k: None for k in (*CLEAN, "EXAMPLE_WIFI_PASSWORD")})
    assert result.exit_code == 0, result.output
    integ = manifest(tmp_path / "b")
    assert integ.ok and [i.file.name for i in integ.images] == ["nvs_keys.bin", "nvs.bin"]
    assert any("needs EXAMPLE_WIFI_PASSWORD set" in m for m in integ.messages)
    assert "EXAMPLE_WIFI_PASSWORD" in json.loads((tmp_path / "b/nvs_secure/stamp.json")
                                                 .read_text())["env"]


def test_configure_records_plan_errors_instead_of_failing(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path, extra_yaml="  broken:\n    partitions: {nvs_keys: null}\n")
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    result = invoke("cmake-configure", str(project), "--build-dir", str(tmp_path / "b"),
                    "--sdkconfig", str(config), "--product", "broken")
    assert result.exit_code == 0, result.output
    integ = manifest(tmp_path / "b")
    assert not integ.images and "nvs-keys-partition-missing" in integ.errors[0]
    text = (tmp_path / "b/nvs_secure/config.cmake").read_text()
    assert "set(NVS_SECURE_ERRORS" in text


def test_configure_without_project_file_is_inactive(tmp_path: Path) -> None:
    result = invoke("cmake-configure", str(tmp_path), "--build-dir", str(tmp_path / "b"))
    assert result.exit_code == 0
    assert "set(NVS_SECURE_ACTIVE FALSE)" in (tmp_path / "b/nvs_secure/config.cmake").read_text()
    assert invoke("cmake-configure", str(tmp_path), "--build-dir", str(tmp_path / "b"),
                  "--csv-only").exit_code == 0


@pytest.mark.parametrize("mode", ["release", None])
def test_release_mode_builds_but_never_flashes_plain_keys(tmp_path: Path, mode) -> None:
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json(mode="release")), encoding="utf-8")
    invoke("cmake-configure", str(project), "--build-dir", str(tmp_path / "b"), "--sdkconfig",
           str(config))
    integ = manifest(tmp_path / "b")
    keys = integ.of_kind("nvs_keys_image")[0]
    assert not keys.registered and not keys.flash_in_project
    assert any(m.startswith("nvs_keys.bin: release-mode") and "pre-encrypted" in m
               for m in integ.messages)


def test_chip_made_keys_register_nothing_and_can_be_erased(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLE / "partitions.yaml", project)
    (project / "nvs_secure.yaml").write_text(
        "version: 1\npartitions: partitions.yaml\nkeys: {source: chip}\nnvs:\n  nvs: {}\n")
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    assert invoke("cmake-configure", str(project), "--build-dir", str(tmp_path / "b"),
                  "--sdkconfig", str(config)).exit_code == 0
    integ = manifest(tmp_path / "b")
    assert integ.ok and integ.images == ()
    assert [(e.partition, e.offset, e.size) for e in integ.erase] == [("nvs_keys", 0x17000, 0x1000)]
    assert any("nvs-keys-erase" in m for m in integ.messages)


def test_hmac_scheme_makes_a_key_file_that_is_not_flashed(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json("esp32c3", mode=None, scheme="hmac")))
    invoke("cmake-configure", str(project), "--build-dir", str(tmp_path / "b"), "--sdkconfig",
           str(config))
    integ = manifest(tmp_path / "b")
    assert integ.ok, integ.errors
    assert [(i.kind, i.registered) for i in integ.images] == [("hmac_key", False),
                                                               ("nvs_image", True)]
    assert any("HMAC_UP" in m for m in integ.messages)


def test_build_step_refuses_another_set_of_images(tmp_path: Path) -> None:
    project = copy_example_project(tmp_path)
    config = tmp_path / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("cmake-build", str(project), "--sdkconfig", str(config), "-o", str(out),
                    "--keystore", str(tmp_path / "keys"), "--image", "nvs.bin")
    assert result.exit_code == 2
    assert "reconfigure" in result.output and not out.exists()


# --- cmake/idf_nvs_secure.cmake under real CMake, against the double --------------------


@needs_cmake
def test_cmake_configure_build_and_noop(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path)
    double.configure()
    # The early pass wrote the CSV before partition_table's project_include.cmake looked.
    assert double.calls("partition_table_project_include") == [
        ["partition_table_project_include", "csv exists"]]
    assert len(double.calls("idf_component_register")) == 1  # the component is in the build
    regs = double.registrations()
    out = double.build / "nvs_secure"
    assert regs == {
        "nvs_keys": ["DEPENDS", "nvs_secure_images", "FLASH_IN_PROJECT",
                     "FLASH_IN_PROJECT_DEPENDENCY_TARGETS", "encrypted-flash"],
        "nvs": ["DEPENDS", "nvs_secure_images", "ALWAYS_PLAINTEXT", "FLASH_IN_PROJECT",
                "FLASH_IN_PROJECT_DEPENDENCY_TARGETS", "encrypted-flash"]}
    files = {r[1]: r[2] for r in double.calls("esp_partition_register_target")}
    assert files == {"nvs_keys": str(out / "images" / "nvs_keys.bin"),
                     "nvs": str(out / "images" / "nvs.bin")}
    assert not double.calls("fail_at_build_time")

    output = double.cmake_build()
    assert "generating NVS images (product basic)" in output
    expected = expected_images(double.project, sdkconfig_json())
    assert {p.name: p.read_bytes() for p in (double.out("nvs.bin"), double.out("nvs_keys.bin"))} \
        == expected
    assert double.out("nvs_keys.bin").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == [".images.lock", "config.cmake", "config.json",
                                                     "early.sha256", "env.stamp",
                                                     "images", "stamp.json"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "nvs.bin", "nvs_keys.bin", "outputs.json"]  # and nothing else

    stamps = {p: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    output = double.cmake_build()  # a no-op build runs nothing
    assert "generating NVS images" not in output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # A file a value references is a build dependency (not a configure one).
    os.utime(double.project / "certs" / "device_cert.der")
    configured = len(double.calls("project_done"))
    assert "generating NVS images" in double.cmake_build()
    assert len(double.calls("project_done")) == configured

    # A values edit regenerates the images without re-running the configure step.
    values = double.project / "nvs_values.yaml"
    values.write_text(values.read_text().replace("value: 3}", "value: 4}"), encoding="utf-8")
    assert "generating NVS images" in double.cmake_build()
    assert len(double.calls("project_done")) == configured
    assert double.out("nvs.bin").read_bytes() != expected["nvs.bin"]

    assert "regenerating NVS images" in double.cmake_build("nvs-secure-gen")


def _digests(double: "DoubleBuild") -> dict[str, bytes]:
    return {name: double.out(name).read_bytes() for name in ("nvs.bin", "nvs_keys.bin")}


@needs_cmake
def test_a_changed_secret_or_variable_takes_effect_on_the_next_build(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path)
    double.configure()
    double.cmake_build()
    first = _digests(double)
    configured = len(double.calls("project_done"))

    # Another master secret: new keys and a new image, without configuring again.
    secret = "ab" * 32
    output = double.cmake_build(env={"NVS_MASTER_SECRET": secret})
    assert "generating NVS images" in output
    second = _digests(double)
    assert second["nvs_keys.bin"] != first["nvs_keys.bin"] and second["nvs.bin"] != first["nvs.bin"]
    assert len(double.calls("project_done")) == configured
    # The same secret again: nothing runs but the stamp step.
    assert "generating NVS images" not in double.cmake_build(env={"NVS_MASTER_SECRET": secret})
    # The stamp holds a keyed fingerprint, never the secret or the password.
    build_files = b"".join(p.read_bytes() for p in (double.build / "nvs_secure").iterdir()
                           if p.is_file())
    assert secret.encode() not in build_files and PASSWORD.encode() not in build_files

    # A value's variable: the device gets the new value.
    output = double.cmake_build(env={"NVS_MASTER_SECRET": secret,
                                     "EXAMPLE_WIFI_PASSWORD": "another-password"})
    assert "generating NVS images" in output
    assert _digests(double)["nvs.bin"] != second["nvs.bin"]
    assert _digests(double)["nvs_keys.bin"] == second["nvs_keys.bin"]


@needs_cmake
def test_a_fixed_error_passes_on_the_next_build(tmp_path: Path) -> None:
    # Configured with the variable unset: the build fails, naming it; once it is set the
    # very next build passes (no second build, no reconfigure by hand).
    double = DoubleBuild(tmp_path)
    double.configure(env={"EXAMPLE_WIFI_PASSWORD": None})
    output = double.cmake_build(ok=False, env={"EXAMPLE_WIFI_PASSWORD": None})
    assert "EXAMPLE_WIFI_PASSWORD is not set" in output
    assert not double.out("nvs.bin").exists()
    double.cmake_build()
    assert _digests(double) == expected_images(double.project, sdkconfig_json())


@needs_cmake
def test_component_form_generates_the_csv_in_project_include(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path, hook=COMPONENT_FORM)
    double.configure()
    # Without the early pass, partition_table's project_include.cmake runs first (ESP-IDF
    # warns once); the component's project_include.cmake writes the CSV before any
    # component's CMakeLists.txt reads it.
    assert double.calls("partition_table_project_include") == [
        ["partition_table_project_include", "csv missing"]]
    assert (double.project / "partitions.csv").is_file()
    assert set(double.registrations()) == {"nvs", "nvs_keys"}


@needs_cmake
def test_trimmed_build_adds_images_after_project(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path, IDF_DOUBLE_MINIMAL_BUILD="ON")
    double.configure()
    names = [r[0] for r in double.calls()]
    assert "idf_component_register" not in names
    assert names.index("project_done") < names.index("esp_partition_register_target")
    assert set(double.registrations()) == {"nvs", "nvs_keys"}


@needs_cmake
def test_plan_errors_fail_the_build_not_the_configure_step(tmp_path: Path) -> None:
    broken = "  broken:\n    partitions: {nvs_keys: null}\n"
    double = DoubleBuild(tmp_path, extra_yaml=broken, NVS_SECURE_PRODUCT="broken")
    result = double.configure()
    assert "nvs-keys-partition-missing" in result.stderr
    assert [r[1] for r in double.calls("fail_at_build_time")] == ["nvs_secure_images"]
    assert not double.calls("esp_partition_register_target")
    output = double.cmake_build(ok=False)
    assert "nvs-keys-partition-missing" in output


@needs_cmake
def test_linux_target_registers_plain_nvs_only(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path, config=sdkconfig_json("linux"))
    double.configure()
    assert double.registrations() == {
        "nvs": ["DEPENDS", "nvs_secure_images", "ALWAYS_PLAINTEXT", "FLASH_IN_PROJECT"]}
    assert double.cmake_build()
    assert double.out("nvs.bin").read_bytes() == \
        expected_images(double.project, sdkconfig_json("linux"))["nvs.bin"]


@needs_cmake
def test_esp_idf_5_registration(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path, IDF_DOUBLE_IDF_VERSION="5")
    double.configure()
    out = double.build / "nvs_secure" / "images"
    main = "double-esptool_py-FLASH_ARGS|double-esptool_py-FLASH_SUB_ARGS"
    assert ["|".join(r) for r in double.calls("esptool_py_flash_target")] == [
        f"esptool_py_flash_target|nvs_keys-flash|{main}|",
        f"esptool_py_flash_target|nvs-flash|{main}|ALWAYS_PLAINTEXT"]
    assert ["|".join(r[1:]) for r in double.calls("esptool_py_flash_to_partition")] == [
        f"nvs_keys-flash|nvs_keys|{out / 'nvs_keys.bin'}", f"flash|nvs_keys|{out / 'nvs_keys.bin'}",
        f"nvs-flash|nvs|{out / 'nvs.bin'}", f"flash|nvs|{out / 'nvs.bin'}"]


@needs_cmake
def test_generated_cmake_quotes_odd_paths(tmp_path: Path) -> None:
    root = tmp_path / 'odd "dir" $x {y} #z'  # (CMake itself cannot take a backslash)
    root.mkdir()
    project = copy_example_project(root)
    config = root / "sdkconfig.json"
    config.write_text(json.dumps(sdkconfig_json()), encoding="utf-8")
    assert invoke("cmake-configure", str(project), "--build-dir", str(project / "build"),
                  "--sdkconfig", str(config)).exit_code == 0
    script = tmp_path / "show.cmake"
    script.write_text('include("${CONFIG}")\nforeach(p IN LISTS NVS_SECURE_DEPENDS)\n'
                      '  message("${p}")\nendforeach()\n', encoding="utf-8")
    result = subprocess.run([CMAKE, f"-DCONFIG={project / 'build/nvs_secure/config.cmake'}", "-P",
                             str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == str(project / "nvs_secure.yaml")
    assert str(config) in result.stderr.splitlines()


@needs_cmake
@pytest.mark.parametrize("minimal", [False, True])
def test_final_configuration_corrects_the_early_csv(tmp_path: Path, minimal: bool) -> None:
    # The early pass only knows sdkconfig.defaults (table at 0xd000); the build's final
    # sdkconfig.json moves the table to 0x9000, so the CSV changes.
    config = dict(sdkconfig_json(), PARTITION_TABLE_OFFSET=0x9000)
    double = DoubleBuild(tmp_path, config=config,
                         **({"IDF_DOUBLE_MINIMAL_BUILD": "ON"} if minimal else {}))
    double.configure()
    assert "nvs,data,nvs,0xa000,24K," in (double.project / "partitions.csv").read_text()
    failed = [r[1] for r in double.calls("fail_at_build_time")]
    # Before partition_table's CMakeLists.txt (component): nothing to do.  After project()
    # (trimmed build): ESP-IDF read the old CSV, so the build fails once and re-configures.
    assert failed == (["nvs_secure_partition_csv"] if minimal else [])
    if minimal:
        assert "changed after ESP-IDF read it" in double.cmake_build(ok=False)
        configured = len(double.calls("project_done"))
        double.cmake_build()  # configures again: the early pass now agrees, nothing fails
        assert len(double.calls("project_done")) == configured + 1
        assert len(double.calls("fail_at_build_time")) == 1
        assert double.out("nvs.bin").is_file()


@needs_cmake
def test_the_early_pass_runs_only_when_its_inputs_change(tmp_path: Path) -> None:
    double = DoubleBuild(tmp_path)
    skipped = "early pass skipped"

    def configure() -> str:
        args = [CMAKE, "--log-level=VERBOSE", "-S", str(double.project), "-B", str(double.build)]
        args += [f"-D{k}={v}" for k, v in double.cache.items()]
        done = subprocess.run(args, capture_output=True, text=True, env=run_env())
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert skipped not in configure()  # first configure: the CSV is written
    assert skipped in configure()  # nothing changed: no Python run before project()
    partitions = double.project / "partitions.yaml"
    partitions.write_text(partitions.read_text().replace("size: 24K}", "size: 28K}"))
    assert skipped not in configure()
    assert "nvs,data,nvs,0xe000,28K" in (double.project / "partitions.csv").read_text()
    assert skipped in configure()
    double.cache["NVS_SECURE_PRODUCT"] = "pro"  # another product: another table
    assert skipped not in configure()
    (double.project / "partitions.csv").unlink()  # the CSV gone: written again
    assert skipped not in configure() and (double.project / "partitions.csv").is_file()

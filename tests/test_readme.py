"""Every command the README shows is run here, so the README cannot drift from the code.

Fenced blocks marked ``sh`` are run line by line (``# comments`` stripped), in order, in
a scratch copy of the example project as a fresh clone has it, each in a clean
environment: PATH, HOME and what the README's own ``export`` lines set before it, so a
command that needs a secret fails here unless the README exports it first.  ``make
test`` is what runs this suite, so it is only checked to exist, and ``make demo`` runs
with its output in the scratch directory.
Lines that start with ``idf.py`` need ESP-IDF, which CI does not have: each of those
must name an ESP-IDF command or one our idf.py extension registers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BIN = Path(sys.executable).parent

#: ESP-IDF's own idf.py commands the README may show.
IDF_PY_COMMANDS = {"build", "flash", "monitor", "set-target", "menuconfig", "reconfigure",
                   "encrypted-flash", "erase-flash", "--help", "fullclean"}


def readme_commands(info: str = "sh") -> list[str]:
    """The command lines of the README's fenced blocks whose info string is ``info``."""
    blocks = re.findall(rf"^```{info}\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


COMMANDS = readme_commands()
#: Blocks marked ``sh idf`` run in an ESP-IDF environment, which CI does not have.
IDF_COMMANDS = readme_commands("sh idf")


def test_readme_shows_the_two_commands():
    assert "make demo" in COMMANDS and "make test" in COMMANDS


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A directory holding a copy of example_project, with the sample CSV files the
    migration section converts (example_project/migration/), but without what a build
    leaves in the project (its build folder, sdkconfig, generated partitions.csv)."""
    root = tmp_path_factory.mktemp("readme")

    def generated(folder: str, names: list[str]) -> list[str]:
        if Path(folder) != REPO / "example_project":
            return []
        return [n for n in names if n in ("build", "sdkconfig", "out", "partitions.csv")]

    shutil.copytree(REPO / "example_project", root / "example_project", ignore=generated)
    assert (root / "example_project" / "migration" / "partitions.csv").is_file()
    return root


def _env(before: int | None = None) -> dict[str, str]:
    """A clean environment, as a new user's shell: only PATH (with the venv first) and
    HOME, plus what the README itself exports before command ``before`` (all of its
    ``export`` lines when None).  Nothing the README does not say is preset."""
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    for command in COMMANDS[:before]:
        if command.startswith("export "):
            for word in shlex.split(command)[1:]:
                name, _, value = word.partition("=")
                env[name] = value
    return env


@pytest.mark.parametrize("index", [i for i, c in enumerate(COMMANDS)
                                   if not c.startswith(("make ", "idf.py"))],
                         ids=lambda i: COMMANDS[i])
def test_readme_command_runs(scratch, index):
    command = COMMANDS[index]
    result = subprocess.run(command, shell=True, cwd=scratch, env=_env(index),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_esp_idf_blocks_hold_only_what_this_suite_can_check():
    assert IDF_COMMANDS, "the README shows how to use the plugin with idf.py"
    for command in IDF_COMMANDS:
        assert command.startswith(("idf.py ", "python -m pip install ")), command


def test_readme_install_line_installs_this_package():
    [line] = [c for c in IDF_COMMANDS if c.startswith("python -m pip install")]
    assert line.split()[-1].rstrip("/").endswith("idf_nvs_secure")
    assert re.search(r'^name = "idf-nvs-secure"$', (REPO / "pyproject.toml").read_text(), re.M)


@pytest.mark.parametrize("command", [c for c in COMMANDS + IDF_COMMANDS
                                     if c.startswith("idf.py")])
def test_readme_idf_py_commands_exist(command):
    from idf_nvs_secure.app.idf_ext import action_extensions

    ours = set(action_extensions({}, str(REPO / "example_project"))["actions"])
    words = [w for w in shlex.split(command)[1:] if not w.startswith("-")]
    assert words, command
    for word in words:
        if word in IDF_PY_COMMANDS or word in ours:
            continue
        assert word.startswith(("-D", "esp32")) or word == "linux", \
            f"{command}: '{word}' is neither an ESP-IDF nor an idf_nvs_secure idf.py command"


def test_make_demo_runs(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = BIN.parent
    result = subprocess.run(["make", "-C", str(REPO), "demo", f"DEMO={tmp_path / 'demo'}",
                             f"VENV={venv}"], env=_env(0), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "demo").is_dir()


def test_migration_section_converts_the_shipped_sample_csvs():
    """The "Migrating from CSV" commands run (above) on the sample CSVs the repository
    ships, and end by comparing the images built from both forms."""
    migration = [c for c in COMMANDS if "example_project/migration/" in c]
    assert any(c.startswith("idf-nvs-secure partitions convert") for c in migration)
    assert any(c.startswith("idf-nvs-secure nvs convert") for c in migration)
    assert "cmp out/migrated/from_csv.bin out/migrated/from_yaml.bin" in COMMANDS
    for c in migration:
        for word in shlex.split(c):
            if word.startswith("example_project/migration/"):
                assert (REPO / word).is_file(), word

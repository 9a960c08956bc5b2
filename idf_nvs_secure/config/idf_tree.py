"""ESP-IDF's own Kconfig tree, resolved the way ESP-IDF's build resolves it.

ESP-IDF's CMake (tools/cmake/kconfig.cmake, v5.5 to master) runs esp-idf-kconfig's
``kconfgen`` with:

* ``--kconfig $IDF_PATH/Kconfig --sdkconfig-rename $IDF_PATH/sdkconfig.rename``;
* ``--env-file config.env``: a JSON object (tools/kconfig_new/config.env.in) with
  ``COMPONENT_KCONFIGS``/``COMPONENT_KCONFIGS_PROJBUILD`` (each component's ``Kconfig``
  and ``Kconfig.projbuild``), ``COMPONENT_SDKCONFIG_RENAMES`` (each component's
  ``sdkconfig.rename`` and ``sdkconfig.rename.<target>``), ``IDF_TARGET``,
  ``IDF_TOOLCHAIN``, ``IDF_VERSION``, ``IDF_ENV_FPGA``, ``IDF_PATH`` and the two files
  of ``source`` lines the root Kconfig includes (``COMPONENT_KCONFIGS_SOURCE_FILE``,
  ``COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE``, written by prepare_kconfig_files.py);
* ``--env IDF_MINIMAL_BUILD=y|n``, ``--list-separator=semicolon``;
* ``--defaults F`` for each defaults file and its ``F.<target>`` companion, then
  ``--config sdkconfig``; ``--output json build/config/sdkconfig.json``.

Outside a build we do the same with every component of ``$IDF_PATH/components`` plus
the project's ``main`` and ``components/*`` (a full build's component set; a
``MINIMAL_BUILD`` has fewer, which only removes symbols), in a subprocess of this
Python when esp-idf-kconfig is importable (it is in ESP-IDF's Python environment; it
is never a dependency of ours), bounded by :data:`KCONFGEN_TIMEOUT`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ._kconfiglib import kconfiglib

__all__ = ["KCONFGEN_TIMEOUT", "esp_idf_kconfig_available", "component_dirs",
           "read_rename_files", "tree_renames", "resolve_with_kconfgen", "resolve_tree",
           "load_idf_tree_kconfiglib"]

#: Symbols ESP-IDF's own Kconfig tree must define for kconfiglib's result to be used.
_REQUIRED_IN_IDF_TREE = ("IDF_TARGET", "NVS_ENCRYPTION", "SECURE_FLASH_ENC_ENABLED",
                         "PARTITION_TABLE_OFFSET")
_ENV_LOCK = threading.Lock()

#: Seconds one kconfgen run may take (a full tree resolves in a few seconds).
KCONFGEN_TIMEOUT = 120


def esp_idf_kconfig_available() -> bool:
    """True when esp-idf-kconfig's kconfgen can be imported by this Python."""
    try:
        return importlib.util.find_spec("kconfgen") is not None
    except (ImportError, ValueError):
        return False


def component_dirs(idf_path: Path, project_dir: Path | None) -> list[Path]:
    """ESP-IDF's components (sorted, as build.cmake globs them), then the project's
    ``components/*`` and ``main``."""
    dirs = sorted(p for p in (Path(idf_path) / "components").glob("*") if p.is_dir())
    if project_dir is not None:
        dirs += sorted(p for p in (Path(project_dir) / "components").glob("*") if p.is_dir())
        if (Path(project_dir) / "main").is_dir():
            dirs.append(Path(project_dir) / "main")
    return dirs


def _rename_files(idf_path: Path, dirs: Sequence[Path], target: str) -> list[Path]:
    out = [p for p in [Path(idf_path) / "sdkconfig.rename"] if p.is_file()]
    for comp in dirs:
        out += sorted(p for p in (comp / "sdkconfig.rename", comp / f"sdkconfig.rename.{target}")
                      if p.is_file())
    return out


def read_rename_files(paths: Sequence[Path]) -> dict[str, str]:
    """``OLD -> NEW`` (no ``CONFIG_`` prefix) from sdkconfig.rename files; ``NEW`` starts
    with ``!`` for an inverted boolean (``CONFIG_OLD !CONFIG_NEW``)."""
    out: dict[str, str] = {}
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            parts = line.split("#", 1)[0].split()
            if len(parts) != 2 or not parts[0].startswith("CONFIG_"):
                continue
            new = parts[1]
            inverted = new.startswith("!")
            new = new.lstrip("!")
            if new.startswith("CONFIG_"):
                out[parts[0][7:]] = ("!" if inverted else "") + new[7:]
    return out


def tree_renames(idf_path: Path, target: str, project_dir: Path | None) -> dict[str, str]:
    """Every rename ESP-IDF's build applies for ``target``."""
    return read_rename_files(_rename_files(idf_path, component_dirs(idf_path, project_dir), target))


def _version_text(idf_path: Path) -> str:
    from .idf_versions import version_from_idf_path
    version = version_from_idf_path(idf_path)
    return f"{version.major}.{version.minor}.{version.patch}" if version else ""


def resolve_with_kconfgen(idf_path: Path, target: str, *, project_dir: Path | None,
                          defaults: Sequence[Path], config: Path | None, work: Path,
                          env: Mapping[str, str], minimal_build: bool = False,
                          timeout: float = KCONFGEN_TIMEOUT) -> dict[str, object]:
    """ESP-IDF's ``sdkconfig.json`` for these files, as kconfgen writes it.

    ``defaults`` are applied in order (each already followed by its ``.<target>``
    companion when the caller wants it), then ``config``.  Raises ``RuntimeError``
    (with kconfgen's last line of output) when kconfgen fails or times out."""
    idf_path = Path(idf_path).resolve()
    dirs = component_dirs(idf_path, Path(project_dir).resolve() if project_dir else None)
    kconfigs = [str(d / "Kconfig") for d in dirs if (d / "Kconfig").is_file()]
    projbuilds = [str(d / "Kconfig.projbuild") for d in dirs if (d / "Kconfig.projbuild").is_file()]
    root_rename = idf_path / "sdkconfig.rename"
    renames = [str(p) for p in _rename_files(idf_path, dirs, target) if p != root_rename]
    sources = work / "kconfigs.in"
    sources_pb = work / "kconfigs_projbuild.in"
    sources.write_text("\n".join(f'source "{p}"' for p in kconfigs), encoding="utf-8")
    sources_pb.write_text("\n".join(f'source "{p}"' for p in projbuilds), encoding="utf-8")
    version = _version_text(idf_path)
    config_env = {
        "COMPONENT_KCONFIGS": ";".join(kconfigs),
        "COMPONENT_KCONFIGS_PROJBUILD": ";".join(projbuilds),
        "COMPONENT_SDKCONFIG_RENAMES": ";".join(renames),
        "IDF_TARGET": target, "IDF_TOOLCHAIN": env.get("IDF_TOOLCHAIN", "gcc"),
        "IDF_VERSION": version, "IDF_ENV_FPGA": env.get("IDF_ENV_FPGA", ""),
        "IDF_PATH": str(idf_path),
        "COMPONENT_KCONFIGS_SOURCE_FILE": str(sources),
        "COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE": str(sources_pb),
        "KCONFIG_PROMPTLESS_NO_WARN": "IDF_TARGET",
    }
    env_file = work / "config.env"
    env_file.write_text(json.dumps(config_env), encoding="utf-8")
    out = work / "sdkconfig.json"
    command = [sys.executable, "-m", "kconfgen", "--list-separator=semicolon",
               "--kconfig", str(idf_path / "Kconfig"),
               "--env", f"IDF_MINIMAL_BUILD={'y' if minimal_build else 'n'}",
               "--env", f"IDF_INIT_VERSION={version}",
               "--env-file", str(env_file)]
    if (idf_path / "sdkconfig.rename").is_file():
        command += ["--sdkconfig-rename", str(idf_path / "sdkconfig.rename")]
    for path in defaults:
        command += ["--defaults", str(Path(path).resolve())]
    if config is not None:
        # kconfgen reads --config only when it exists and never writes it without
        # "--output config"; a copy keeps the user's file out of reach all the same.
        copy = work / "sdkconfig.in"
        copy.write_bytes(Path(config).read_bytes())
        command += ["--config", str(copy)]
    command += ["--output", "json", str(out)]
    run_env = {k: v for k, v in env.items() if k not in config_env}
    run_env.update({"KCONFIG_REPORT_VERBOSITY": "quiet", "PYTHONIOENCODING": "utf-8"})
    try:
        result = subprocess.run(command, cwd=work, env=run_env, capture_output=True,
                                text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"kconfgen took longer than {timeout:.0f} s") from None
    if result.returncode != 0 or not out.is_file():
        lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"kconfgen failed: {lines[-1] if lines else result.returncode}")
    data = json.loads(out.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RuntimeError("kconfgen wrote no JSON object")
    missing = [name for name in ("IDF_TARGET", "PARTITION_TABLE_OFFSET") if name not in data]
    if missing:
        raise RuntimeError("the tree does not define " + ", ".join(missing))
    return data


@contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


def load_idf_tree_kconfiglib(idf_path: Path, target: str, work: Path) -> kconfiglib.Kconfig:
    """Parse ESP-IDF's own Kconfig tree the way tools/cmake/kconfig.cmake sets it up."""
    root = idf_path / "Kconfig"
    if not root.is_file():
        raise FileNotFoundError(f"{root} not found")
    components = sorted(p for p in (idf_path / "components").glob("*") if p.is_dir())
    lists = {}
    for key, name in (("COMPONENT_KCONFIGS_SOURCE_FILE", "Kconfig"),
                      ("COMPONENT_KCONFIGS_PROJBUILD_SOURCE_FILE", "Kconfig.projbuild")):
        listing = work / f"{name}.sources"
        listing.write_text("".join(f'source "{c / name}"\n' for c in components
                                   if (c / name).is_file()), encoding="utf-8")
        lists[key] = str(listing)
    env = {"IDF_PATH": str(idf_path), "IDF_TARGET": target, "srctree": str(idf_path),
           "IDF_TOOLCHAIN": "gcc", "IDF_ENV_FPGA": "", "IDF_INIT_VERSION": "",
           "IDF_MINIMAL_BUILD": "n", **lists}
    kconf = kconfiglib.Kconfig.__new__(kconfiglib.Kconfig)
    with _patched_environ(env):
        try:
            kconf.__init__(str(root), warn=True, warn_to_stderr=False)
        except Exception as exc:
            # Kconfig.filename/linenr are the parser's position (public attributes).
            where = getattr(kconf, "filename", None)
            if where and not isinstance(exc, kconfiglib.KconfigError):
                raise RuntimeError(f"{where}:{getattr(kconf, 'linenr', '?')}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            raise
    missing = [name for name in _REQUIRED_IN_IDF_TREE if name not in kconf.syms
               or not kconf.syms[name].nodes]
    if missing:
        raise LookupError("it does not define " + ", ".join(missing))
    return kconf


def resolve_tree(project_dir: Path, config: Path | None, target: str,
                 chain: Sequence[tuple[Path, str]], work: Path,
                 env: Mapping[str, str]) -> tuple[dict[str, object] | None, str | None]:
    """ESP-IDF's own resolution through esp-idf-kconfig, when IDF_PATH and the parser
    are there: (sdkconfig.json values, None) or (None, why not)."""
    idf_path = env.get("IDF_PATH")
    if not idf_path:
        return None, None
    root = Path(idf_path)
    if not (root / "Kconfig").is_file():
        return None, f"{root / 'Kconfig'} not found"
    if not esp_idf_kconfig_available():
        return None, "esp-idf-kconfig is not importable in this Python (ESP-IDF's environment has it)"
    defaults = [p for p, _ in chain if config is None or p != config]
    tree_work = work / "tree"
    tree_work.mkdir()
    try:
        tree = resolve_with_kconfgen(root, target, project_dir=project_dir,
                                     defaults=defaults, config=config, work=tree_work, env=env)
    except (RuntimeError, OSError, ValueError) as exc:
        return None, f"esp-idf-kconfig: {str(exc).splitlines()[0] if str(exc) else repr(exc)}"
    return tree, None

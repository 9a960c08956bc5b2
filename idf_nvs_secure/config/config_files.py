"""Which configuration files describe an ESP-IDF project, in the order ESP-IDF applies
them (the rules are in :mod:`.sdkconfig`'s docstring, items 1 to 4)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..fsutil import display_path

__all__ = ["ConfigInputs", "find_config_inputs"]

_TARGET_LINE_RE = re.compile(r'^CONFIG_IDF_TARGET="([^"]+)"$')


@dataclass(frozen=True)
class ConfigInputs:
    """Which configuration files describe a project, and in which order they apply.

    ``kind`` is ``"sdkconfig.json"``, ``"sdkconfig"``, ``"defaults"`` or ``"none"``.
    ``config`` is the sdkconfig or sdkconfig.json that is read (None for the last two).
    ``defaults`` is ESP-IDF's defaults list (before ``.<target>`` companions are added).
    """

    project_dir: Path
    kind: str
    config: Path | None
    defaults: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()



def _display(path: Path, project_dir: Path) -> str:
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _target_in(text: str) -> str | None:
    """``CONFIG_IDF_TARGET`` as ESP-IDF's CMake finds it (an exact quoted line)."""
    for line in text.splitlines():
        match = _TARGET_LINE_RE.match(line.strip())
        if match:
            return match.group(1)
    return None


def _defaults_list(project_dir: Path, env: Mapping[str, str]) -> tuple[Path, ...]:
    listed = env.get("SDKCONFIG_DEFAULTS", "")
    if listed:
        paths = []
        for item in (part.strip() for part in listed.split(";")):
            if not item:
                continue
            path = Path(item) if Path(item).is_absolute() else project_dir / item
            if not path.is_file():
                raise InputError(
                    f"SDKCONFIG_DEFAULTS names {item!r}, which does not exist",
                    file=str(path),
                    hint="ESP-IDF stops on this too; fix or unset SDKCONFIG_DEFAULTS "
                         "(paths are relative to the project directory)")
            paths.append(path)
        return tuple(paths)
    plain = project_dir / "sdkconfig.defaults"
    return (plain,) if plain.is_file() else ()


def _same_config(text_config: Path, resolved: Path) -> bool:
    """True when every symbol sdkconfig sets has that value in sdkconfig.json (symbols
    only one of them has, such as sdkconfig's deprecated aliases, are not compared)."""
    try:
        values = json.loads(resolved.read_text(encoding="utf-8"))
        lines = text_config.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(values, dict):
        return False
    for line in lines:
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            name, value = line[9:-11], False
        elif line.startswith("CONFIG_") and "=" in line:
            name, _, raw = line[7:].partition("=")
            if raw == "y":
                value = True
            elif raw.startswith('"'):
                try:
                    value = json.loads(raw)
                except ValueError:
                    return False
            else:
                try:
                    value = int(raw, 0)
                except ValueError:
                    value = raw
        else:
            continue
        if name in values and values[name] != value:
            return False
    return True


def find_config_inputs(project_dir: Path, *, sdkconfig: Path | None = None,
                       env: Mapping[str, str] | None = None,
                       build_dir: Path | None = None) -> ConfigInputs:
    """Decide which configuration files describe ``project_dir`` (see module docstring).

    Raises :class:`InputError` when the project directory or an explicitly named file
    does not exist, or ``SDKCONFIG_DEFAULTS`` names a missing file.
    """
    env = os.environ if env is None else env
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise InputError("project directory not found", file=str(project_dir))
    defaults = _defaults_list(project_dir, env)
    if sdkconfig is not None:
        sdkconfig = Path(sdkconfig)
        if not sdkconfig.is_absolute() and not sdkconfig.exists():
            sdkconfig = project_dir / sdkconfig
        if not sdkconfig.is_file():
            raise InputError("sdkconfig file not found", file=str(sdkconfig))
        kind = "sdkconfig.json" if sdkconfig.suffix == ".json" else "sdkconfig"
        return ConfigInputs(project_dir, kind, sdkconfig, defaults)
    notes: list[str] = []
    text_config = project_dir / "sdkconfig"
    for path in (text_config, project_dir / "sdkconfig.defaults"):
        if path.exists() and not path.is_file():
            # ESP-IDF reads and writes these paths as files: never skip one silently.
            raise InputError(f"{path.name} is a {'folder' if path.is_dir() else 'special file'}"
                             ", not a configuration file", file=display_path(path),
                             hint=f"ESP-IDF reads {path.name} as a file; move it away")
    resolved = (Path(build_dir) if build_dir else project_dir / "build") / "config" / "sdkconfig.json"
    if resolved.is_file():
        # ESP-IDF writes sdkconfig just after sdkconfig.json: compare what they say, not
        # when they were written.
        if not text_config.is_file() or _same_config(text_config, resolved):
            return ConfigInputs(project_dir, "sdkconfig.json", resolved, defaults)
        if text_config.is_file():
            notes.append(f"{_display(resolved, project_dir)} does not match "
                         f"{_display(text_config, project_dir)}; used the latter "
                         "(`idf.py reconfigure` refreshes the former)")
    if text_config.is_file():
        return ConfigInputs(project_dir, "sdkconfig", text_config, defaults, tuple(notes))
    if defaults:
        return ConfigInputs(project_dir, "defaults", None, defaults, tuple(notes))
    notes.append("no sdkconfig, build/config/sdkconfig.json or sdkconfig.defaults found; "
                 "using ESP-IDF's defaults for the target")
    return ConfigInputs(project_dir, "none", None, (), tuple(notes))

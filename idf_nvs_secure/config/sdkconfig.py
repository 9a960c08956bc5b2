"""Find and read an ESP-IDF project's configuration, resolved with Kconfig semantics.

Which files are read (the first that applies wins):

1. ``sdkconfig=`` (the CLI's ``--sdkconfig FILE``): that file; a ``.json`` file is read
   as a resolved ``sdkconfig.json``, anything else as an sdkconfig.
2. ``<build>/config/sdkconfig.json`` when it is at least as new as every file that
   would otherwise be read (sdkconfig, else the defaults files): ESP-IDF's build wrote
   it from the complete Kconfig tree, so it is the most faithful record.  An older one
   is ignored, with a note.
3. ``sdkconfig`` in the project directory.
4. The defaults chain alone, as ESP-IDF's tools/cmake/project.cmake builds it: the
   files named in ``SDKCONFIG_DEFAULTS`` (semicolon-separated, relative to the project
   directory; a missing one is an error, as in ESP-IDF) or else ``sdkconfig.defaults``
   when it exists; after each such file its ``<file>.<target>`` companion when it
   exists (tools/cmake/kconfig.cmake).

As ESP-IDF's kconfgen does, the defaults chain is applied first and an sdkconfig (2, 3)
on top of it (kconfiglib ``load_config(replace=False)``), so symbols the sdkconfig does
not mention get their values from the defaults.

The target follows tools/cmake/targets.cmake: ``IDF_TARGET`` in the environment, else
``CONFIG_IDF_TARGET`` in the sdkconfig, else in the first defaults file naming one, else
``esp32``.  ESP-IDF refuses to build when the environment and the sdkconfig disagree;
then the sdkconfig's target is used (its values were made for it) and the mismatch is
reported (:attr:`ResolvedConfig.env_target`).

Values are evaluated by kconfiglib against the Kconfig model shipped in
``data/nvs_secure.Kconfig`` plus a block generated from :mod:`.chips` and the firmware's
ESP-IDF version.  When the injected environment has ``IDF_PATH`` (and no build's
sdkconfig.json is used), ESP-IDF's own Kconfig tree decides the values: resolved by
esp-idf-kconfig's kconfgen as ESP-IDF's build runs it (:mod:`.idf_tree`), else parsed by
kconfiglib (whose parser stops on ESP-IDF's newer syntax); on any failure the shipped
model is used and one note says why.  ``ResolvedConfig.model`` names what was used.  The environment is an injected mapping; the process environment is
only touched (briefly, under a lock) while kconfiglib parses ESP-IDF's tree, which
reads ``$IDF_TARGET``-style references from ``os.environ``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..fsutil import read_input_text
from ._kconfiglib import kconfiglib
from .config_files import ConfigInputs, _display, _target_in, find_config_inputs
from .chips import CHIPS, DEFAULT_TARGET, SOC_SYMBOLS, get_chip, soc_symbols
from .idf_tree import load_idf_tree_kconfiglib, resolve_tree, tree_renames
from .idf_versions import (
    HMAC_DEFAULT_SCHEME,
    find_idf_version,
    parse_idf_version,
    version_from_sdkconfig,
)

__all__ = [
    "Assignment",
    "ConfigInputs",
    "ConfigWarning",
    "ResolvedConfig",
    "RENAMED_SYMBOLS",
    "find_config_inputs",
    "read_config",
    "evaluate_config",
    "parse_sdkconfig_text",
    "parse_sdkconfig_json",
    "model_kconfig_text",
    "model_symbol_names",
]

#: Deprecated names ESP-IDF still accepts for symbols of the model: every line of an
#: ESP-IDF sdkconfig.rename (v4.4 to master, all targets) whose new name the model
#: defines.  components/bootloader/sdkconfig.rename and
#: components/espcoredump/sdkconfig.rename (same lines at v5.5.5, v6.0.2, v6.1-beta1 and
#: master); tests/test_kconfig_renames.py checks the list against the model.  A new
#: name starting with ``!`` is an inverted boolean (none of the model's so far).
RENAMED_SYMBOLS: dict[str, str] = {
    "FLASH_ENCRYPTION_ENABLED": "SECURE_FLASH_ENC_ENABLED",
    "FLASH_ENCRYPTION_INSECURE": "SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT",
    "SECURE_BOOT_ENABLED": "SECURE_BOOT_V1_ENABLED",
    "ESP32_ENABLE_COREDUMP_TO_FLASH": "ESP_COREDUMP_ENABLE_TO_FLASH",
    "ESP32_ENABLE_COREDUMP_TO_UART": "ESP_COREDUMP_ENABLE_TO_UART",
    "ESP32_ENABLE_COREDUMP_TO_NONE": "ESP_COREDUMP_ENABLE_TO_NONE",
}


_SET_RE = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
_PRE_6_0_ONLY_RE = re.compile(r"\n[ ]*config NVS_SEC_KEY_PROTECT_NONE\n[ ]*bool \"None\"\n"
                              r"[ ]*depends on MODEL_IDF_6_0_OR_LATER\n")
_DEFINED_AT_RE = re.compile(r" \(defined at [^)]*\)")
_WARN_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): warning: (?P<msg>.*)$")

Value = bool | int | str | None


@dataclass(frozen=True)
class Assignment:
    """One ``CONFIG_NAME=value`` (or ``# CONFIG_NAME is not set``) line.

    ``name`` has no ``CONFIG_`` prefix and deprecated names are already renamed;
    ``value`` is the text after ``=`` with string quotes removed, ``"n"`` for the
    "is not set" form.  ``file`` is the display path, ``line`` is 1-based.
    """

    name: str
    value: str
    file: str
    line: int

    @property
    def text(self) -> str:
        """The assignment as a user would write it, for messages."""
        return f"CONFIG_{self.name}={self.value}"


@dataclass(frozen=True)
class ConfigWarning:
    """A problem in a configuration file that kconfiglib reported (already located)."""

    message: str
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ResolvedConfig:
    """A project's configuration, resolved the way ESP-IDF resolves it.

    ``values`` maps every symbol of the model (no ``CONFIG_`` prefix) to a bool for
    bool symbols, an int for int/hex symbols, a str for string symbols, or None when
    ESP-IDF would not write the symbol (its dependencies are not met).
    ``requested`` holds the last assignment of each model symbol found in the files
    (empty for a resolved sdkconfig.json), to tell what the user asked for from what
    came out.  ``dependencies`` maps each user-settable (prompted) model symbol to its
    dependency expression in Kconfig syntax (``"y"`` when it has none); ``choices``
    maps each choice member to its choice's name.  ``requested`` is ordered by when
    each symbol was last assigned.  ``loaded`` lists display paths of the files applied, in order.
    """

    target: str
    target_source: str
    env_target: str | None
    kind: str
    values: Mapping[str, Value]
    requested: Mapping[str, Assignment] = field(default_factory=dict)
    dependencies: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, str] = field(default_factory=dict)
    loaded: tuple[str, ...] = ()
    model: str = "shipped"
    warnings: tuple[ConfigWarning, ...] = ()
    notes: tuple[str, ...] = ()
    #: The firmware's ESP-IDF (``"v6.0.2"``) and where that came from, when known
    #: (:func:`.idf_versions.find_idf_version`).
    idf_version: str | None = None
    idf_version_source: str | None = None
    #: Every symbol an ESP-IDF-written configuration names (a sdkconfig with kconfgen's
    #: header line, or a build's sdkconfig.json): a symbol missing there was not in the
    #: build's Kconfig tree.  None for files a user wrote (defaults).
    idf_symbols: frozenset[str] | None = None


# --- reading files -------------------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return kconfiglib.unescape(value[1:-1])
    return value


def _renamed(name: str, value: str, renames: Mapping[str, str]) -> tuple[str, str]:
    """``(name, value)`` after a rename; an inverted rename flips a boolean value."""
    new = renames.get(name)
    if new is None:
        return name, value
    if new.startswith("!"):
        return new[1:], {"y": "n", "n": "y"}.get(value, value)
    return new, value


def parse_sdkconfig_text(text: str, *, filename: str = "<sdkconfig>",
                         renames: Mapping[str, str] = RENAMED_SYMBOLS) -> list[Assignment]:
    """The assignments in sdkconfig text, in file order (``renames`` applied).

    Blank lines, comments and malformed lines are skipped here; kconfiglib reports
    malformed lines when the text is evaluated.
    """
    out: list[Assignment] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        match = _SET_RE.match(line)
        if match:
            name, value = match.group(1), _unquote(match.group(2))
        else:
            match = _UNSET_RE.match(line)
            if not match:
                continue
            name, value = match.group(1), "n"
        name, value = _renamed(name, value, renames)
        out.append(Assignment(name, value, filename, lineno))
    return out


def parse_sdkconfig_json(text: str, *, filename: str = "sdkconfig.json") -> dict[str, object]:
    """A build's ``config/sdkconfig.json``: symbol name (no prefix) to JSON value."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=filename, line=exc.lineno,
                         col=exc.colno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object of CONFIG values", file=filename)
    return data


def _loadable_text(text: str, renames: Mapping[str, str] = RENAMED_SYMBOLS) -> str:
    """sdkconfig text as kconfiglib should see it: renames applied and, as ESP-IDF's
    kconfgen does, ``CONFIG_X=`` turned into ``# CONFIG_X is not set``.  One line in,
    one line out, so kconfiglib's line numbers stay right."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        match = _SET_RE.match(line) or _UNSET_RE.match(line)
        if match and match.group(1) in renames:
            value = match.group(2) if match.re is _SET_RE else "n"
            name, value = _renamed(match.group(1), value, renames)
            raw = f"# CONFIG_{name} is not set" if value == "n" else f"CONFIG_{name}={value}"
            line = raw
        set_match = _SET_RE.match(line)
        if set_match and set_match.group(2) == "":
            raw = f"# CONFIG_{set_match.group(1)} is not set"
        lines.append(raw)
    return "\n".join(lines) + "\n"


# --- the Kconfig model ---------------------------------------------------------------


def _target_block(target: str, idf_version: str | None = None) -> str:
    """Kconfig text for IDF_TARGET, IDF_TARGET_<CHIP>, the SOC_* capabilities and the
    model's own ``MODEL_*`` facts about the firmware's ESP-IDF (unknown: the newest)."""
    chip = get_chip(target)
    version = parse_idf_version(idf_version) if idf_version else None
    newest = version is None or HMAC_DEFAULT_SCHEME.available_in(version)
    out = ["# generated by idf_nvs_secure.sdkconfig from idf_nvs_secure.chips",
           "config IDF_TARGET", "    string", f'    default "{chip.name}"', "",
           "config MODEL_IDF_6_0_OR_LATER", "    bool", f"    default {'y' if newest else 'n'}", ""]
    for name in sorted(CHIPS):
        out += [f"config IDF_TARGET_{name.upper()}", "    bool"]
        out += ["    default y", ""] if name == chip.name else [""]
    for sym, present in soc_symbols(chip).items():
        out += [f"config {sym}", "    bool"] + (["    default y", ""] if present else [""])
    return "\n".join(out) + "\n"


def model_kconfig_text(target: str, idf_version: str | None = None) -> str:
    """The complete Kconfig text kconfiglib evaluates for ``target`` and the firmware's
    ESP-IDF ``idf_version`` (None: the newest)."""
    shipped = resources.files("idf_nvs_secure").joinpath("data/nvs_secure.Kconfig")
    text = shipped.read_text(encoding="utf-8")
    version = parse_idf_version(idf_version) if idf_version else None
    if version is not None and not HMAC_DEFAULT_SCHEME.available_in(version):
        # Before v6.0 the symbol does not exist: ESP-IDF ignores an assignment to it.
        text, count = _PRE_6_0_ONLY_RE.subn("\n", text)
        assert count == 1, "the model's NVS_SEC_KEY_PROTECT_NONE block changed"
    return _target_block(target, idf_version) + "\n" + text


@functools.lru_cache(maxsize=1)
def model_symbol_names() -> tuple[str, ...]:
    """Every symbol the model defines, in definition order (stable across targets)."""
    names: list[str] = []
    for line in model_kconfig_text(DEFAULT_TARGET).splitlines():
        match = re.match(r"\s*(?:menu)?config\s+([A-Z0-9_]+)\s*$", line)
        if match and match.group(1) not in names and not match.group(1).startswith("MODEL_"):
            names.append(match.group(1))
    return tuple(names)


def _load_model(target: str, work: Path, env: Mapping[str, str], try_idf: bool = True,
                why_not: str | None = None,
                idf_version: str | None = None) -> tuple[kconfiglib.Kconfig, str, list[str]]:
    """kconfiglib parsed from ESP-IDF's tree (when IDF_PATH works) or the shipped model.
    ``why_not``: why esp-idf-kconfig did not resolve the tree, for the note."""
    notes: list[str] = []
    idf_path = env.get("IDF_PATH") if try_idf else None
    if idf_path:
        try:
            kconf = load_idf_tree_kconfiglib(Path(idf_path), target, work)
            notes.append(f"evaluated against ESP-IDF's Kconfig tree at {idf_path} with "
                         f"kconfiglib" + (f" ({why_not})" if why_not else ""))
            return kconf, f"esp-idf:{idf_path}", notes
        except Exception as exc:  # kconfiglib raises many kinds; any of them means "fall back"
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            first = f"{why_not}; " if why_not and "Kconfig not found" not in why_not else ""
            notes.append(f"could not use ESP-IDF's Kconfig tree at {idf_path} ({first}kconfiglib: "
                         f"{reason}); used the shipped model instead")
    model = work / "nvs_secure.Kconfig"
    model.write_text(model_kconfig_text(target, idf_version), encoding="utf-8")
    return kconfiglib.Kconfig(str(model), warn=True, warn_to_stderr=False), "shipped", notes


# --- evaluation ----------------------------------------------------------------------


def _symbol_value(sym: kconfiglib.Symbol | None) -> Value:
    if sym is None or not sym.nodes:
        return None
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        return sym.tri_value == 2
    if not sym.config_string:
        return None
    if sym.orig_type == kconfiglib.INT:
        return int(sym.str_value)
    if sym.orig_type == kconfiglib.HEX:
        return int(sym.str_value, 16)
    return sym.str_value


def _json_to_text(data: Mapping[str, object], kconf: kconfiglib.Kconfig, names: tuple[str, ...]) -> str:
    """The model's symbols from a sdkconfig.json, as sdkconfig lines kconfiglib loads."""
    lines = []
    for name in names:
        sym = kconf.syms.get(name)
        if name not in data or sym is None or not sym.nodes:
            continue
        value = data[name]
        if isinstance(value, bool):
            lines.append(f"CONFIG_{name}=y" if value else f"# CONFIG_{name} is not set")
        elif isinstance(value, int) and sym.orig_type == kconfiglib.HEX:
            lines.append(f"CONFIG_{name}={value:#x}")
        elif isinstance(value, int):
            lines.append(f"CONFIG_{name}={value}")
        elif isinstance(value, str):
            lines.append(f'CONFIG_{name}="{kconfiglib.escape(value)}"')
    return "\n".join(lines) + "\n"


def _json_value(value: object) -> Value:
    return value if isinstance(value, (bool, int, str)) or value is None else str(value)


def _located_warnings(raw: list[str], names: set[str], paths: Mapping[str, str],
                      requested: Mapping[str, Assignment]) -> list[ConfigWarning]:
    """kconfiglib's warnings about the model's symbols, with real paths and lines."""
    out: list[ConfigWarning] = []
    for text in raw:
        match = _WARN_RE.match(text)
        file, line, msg = (paths.get(match["file"], match["file"]), int(match["line"]),
                           match["msg"]) if match else (None, None, text.removeprefix("warning: "))
        msg = _DEFINED_AT_RE.sub("", msg)
        mentioned = [n for n in re.findall(r"\b[A-Z][A-Z0-9_]+\b", msg) if n in names]
        if not mentioned and "malformed line" not in msg:
            continue
        if file is None and mentioned and mentioned[0] in requested:
            where = requested[mentioned[0]]
            file, line = where.file, where.line
        out.append(ConfigWarning(msg, file, line))
    return out


def evaluate_config(inputs: ConfigInputs, *, env: Mapping[str, str] | None = None,
                    idf_version: str | None = None) -> ResolvedConfig:
    """Resolve ``inputs`` with kconfiglib (see the module docstring for the rules).

    ``idf_version``: the firmware's ESP-IDF as the user gives it; the shipped model
    follows it (else the version found, else the newest).  The result still records the
    version found (:func:`..plan.firmware.with_idf_version` applies the user's)."""
    env = os.environ if env is None else env
    project_dir = inputs.project_dir
    notes = list(inputs.notes)
    config_text = read_input_text(inputs.config) if inputs.config else None
    json_data = (parse_sdkconfig_json(config_text, filename=str(inputs.config))
                 if inputs.kind == "sdkconfig.json" and config_text is not None else None)

    # The target, as tools/cmake/targets.cmake decides it.
    env_target = env.get("IDF_TARGET") or None
    if json_data is not None:
        config_target = json_data.get("IDF_TARGET") if isinstance(json_data.get("IDF_TARGET"), str) else None
    else:
        config_target = _target_in(config_text) if config_text is not None else None
    texts = {p: read_input_text(p) for p in inputs.defaults}
    defaults_target = next((t for t in (_target_in(texts[p]) for p in inputs.defaults) if t), None)
    if config_target:
        target, target_source = config_target, _display(inputs.config, project_dir)
    elif env_target:
        target, target_source = env_target, "IDF_TARGET environment variable"
    elif defaults_target:
        target = defaults_target
        target_source = next(_display(p, project_dir) for p in inputs.defaults
                             if _target_in(texts[p]) == defaults_target)
    else:
        target, target_source = DEFAULT_TARGET, "ESP-IDF default"
    get_chip(target)  # unknown targets stop here, with the list of known ones

    # The files in the order kconfgen applies them.
    chain: list[tuple[Path, str]] = []
    if json_data is None:
        for path in inputs.defaults:
            chain.append((path, texts[path]))
            companion = path.with_name(f"{path.name}.{target}")
            if companion.is_file():
                chain.append((companion, read_input_text(companion)))
        if config_text is not None:
            chain.append((inputs.config, config_text))

    names = model_symbol_names()
    renames = dict(RENAMED_SYMBOLS)
    if env.get("IDF_PATH") and json_data is None:
        renames.update(tree_renames(Path(env["IDF_PATH"]), target, project_dir))
    requested: dict[str, Assignment] = {}
    for path, text in chain:
        for item in parse_sdkconfig_text(text, filename=_display(path, project_dir),
                                         renames=renames):
            if item.name in names:
                requested.pop(item.name, None)  # keep the order of last assignment
                requested[item.name] = item

    header = config_text if inputs.kind == "sdkconfig" else None
    if header is None and (project_dir / "sdkconfig").is_file():
        header = read_input_text(project_dir / "sdkconfig")
    version, version_source, version_notes = find_idf_version(
        env, header, "sdkconfig" if inputs.kind != "sdkconfig" else _display(inputs.config, project_dir))
    notes += version_notes

    with tempfile.TemporaryDirectory(prefix="idf-nvs-secure-") as tmp:
        work = Path(tmp)
        tree, why_not = (None, None) if json_data is not None else \
            resolve_tree(inputs.project_dir, inputs.config, target, chain, work, env)
        kconf, model, model_notes = _load_model(target, work, env, try_idf=tree is None,
                                                why_not=why_not,
                                                idf_version=idf_version or
                                                (str(version) if version else None))
        notes += model_notes
        if json_data is not None:
            model = "sdkconfig.json (ESP-IDF's build resolved it)"
        if tree is not None:
            model = f"esp-idf-kconfig:{env['IDF_PATH']}"
            notes.append(f"resolved with esp-idf-kconfig over ESP-IDF's Kconfig tree at "
                         f"{env['IDF_PATH']}, every component's sdkconfig.rename applied")
        kconf.warn_assign_override = kconf.warn_assign_redun = kconf.warn_assign_undef = False
        kconf.warnings.clear()
        paths: dict[str, str] = {}
        loads = [(p, _loadable_text(t, renames)) for p, t in chain]
        if json_data is not None:
            loads = [(inputs.config, _json_to_text(json_data, kconf, names))]
        for index, (path, text) in enumerate(loads):
            copy = work / f"config-{index}"
            copy.write_text(text, encoding="utf-8")
            paths[str(copy)] = _display(path, project_dir)
            kconf.load_config(str(copy), replace=False)
        values = {name: _symbol_value(kconf.syms.get(name)) for name in names}
        dependencies = {name: kconfiglib.expr_str(sym.direct_dep) for name in names
                        if (sym := kconf.syms.get(name)) is not None
                        and any(node.prompt for node in sym.nodes)}
        choices = {name: sym.choice.name or "" for name in names
                   if (sym := kconf.syms.get(name)) is not None and sym.choice is not None}
        raw_warnings = list(kconf.warnings)

    if json_data is not None:
        for name in names:
            if name in json_data and _json_value(json_data[name]) != values[name]:
                if values[name] is not None and name not in SOC_SYMBOLS:
                    notes.append(f"the model resolves {name} to {values[name]!r} but the build's "
                                 f"sdkconfig.json says {json_data[name]!r}; used the build's value")
                values[name] = _json_value(json_data[name])
    if tree is not None:
        for name in names:
            real = _json_value(tree.get(name))
            if real is None and isinstance(values[name], bool):
                real = False  # not written: its dependencies are not met
            if real != values[name] and name not in SOC_SYMBOLS and values[name] is not None:
                notes.append(f"the shipped model resolves {name} to {values[name]!r}; ESP-IDF's "
                             f"Kconfig tree to {real!r}, which is used")
            values[name] = real


    warnings = _located_warnings(raw_warnings, set(names), paths, requested)
    return ResolvedConfig(
        target=target, target_source=target_source,
        env_target=env_target if env_target and env_target != target else None,
        kind=inputs.kind, values=values,
        requested=requested if json_data is None else {}, dependencies=dependencies,
        choices=choices,
        loaded=tuple(paths.values()), model=model, warnings=tuple(warnings), notes=tuple(notes),
        idf_version=str(version) if version else None, idf_version_source=version_source,
        idf_symbols=_idf_symbols(inputs.kind, config_text, json_data),
    )


def _idf_symbols(kind: str, text: str | None,
                 json_data: Mapping[str, object] | None) -> frozenset[str] | None:
    if json_data is not None:
        return frozenset(json_data)
    if kind == "sdkconfig" and text is not None and version_from_sdkconfig(text) is not None:
        return frozenset(a.name for a in parse_sdkconfig_text(text, renames={}))
    return None


def read_config(project_dir: Path, *, sdkconfig: Path | None = None,
                env: Mapping[str, str] | None = None,
                build_dir: Path | None = None, idf_version: str | None = None) -> ResolvedConfig:
    """Find and resolve a project's configuration: :func:`find_config_inputs` then
    :func:`evaluate_config`."""
    inputs = find_config_inputs(project_dir, sdkconfig=sdkconfig, env=env, build_dir=build_dir)
    return evaluate_config(inputs, env=env, idf_version=idf_version)

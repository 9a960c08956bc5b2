"""idf.py commands and checks of idf_nvs_secure: the one implementation of the extension.

idf.py (ESP-IDF 6+) loads :func:`action_extensions` as the ``idf_extension`` entry point
of this package, and the ESP-IDF component in ``idf-nvs-secure cmake-dir`` carries an
``idf_ext.py`` shim that imports it.  Whichever idf.py loads first registers the
commands; the other sees them and adds nothing.  ESP-IDF 5.x loads neither: there, put
``from idf_nvs_secure.app.idf_ext import action_extensions`` in the project's ``idf_ext.py``.

Commands (each takes ``--product``; the serial ones use idf.py's ``-p``/``-b``, and all
use ``-B``):

* ``nvs-secure-check``: print the NVS security plan; fails when it has errors.
* ``nvs-secure-gen``: regenerate the NVS images now.
* ``nvs-flash`` / ``nvs-keys-flash``: write the NVS data images / the nvs_keys image
  through ESP-IDF's own ``<partition>-flash`` targets (``encrypted-<partition>-flash``
  for keys under development-mode flash encryption).
* ``nvs-keys-erase``: erase the nvs_keys partition when the chip makes its own keys.
* ``nvs-secure-release``: ``idf-nvs-secure release`` for the project.

A global check stops ``idf.py build`` and ``flash`` before they start when the plan has
errors, instead of a device that fails at boot (ESP_ERR_NVS_CORRUPT_KEY_PART).  When the
configure step's manifest was made from exactly the current files and configuration and
found no error, the check takes its word instead of evaluating the plan again.

The build-side decisions are the configure step's (:mod:`.buildsys`, read back from
``<build>/nvs_secure/config.json``); nothing here re-derives them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import NvsSecureError

if TYPE_CHECKING:  # pragma: no cover
    from ..build.integration import BuildIntegration

#: The project file (inputs.project.PROJECT_FILE, repeated so that loading the
#: extension, which idf.py does on every call, loads nothing else of the package).
PROJECT_FILE = "nvs_secure.yaml"

__all__ = ["action_extensions", "ACTION_NAMES", "BUILD_TASKS", "NvsSecureIdfError"]

#: The commands this extension adds.
ACTION_NAMES = ("nvs-secure-check", "nvs-secure-gen", "nvs-flash", "nvs-keys-flash",
                "nvs-keys-erase", "nvs-secure-release")
#: idf.py tasks that build (or flash) the images: the global check runs before them.
BUILD_TASKS = frozenset({"all", "build", "flash", "encrypted-flash", "nvs-secure-gen",
                         "nvs-flash", "nvs-keys-flash"})
#: Where the configure step writes the manifest, relative to the build directory.
MANIFEST = Path("nvs_secure") / "config.json"
#: The CMake cache variable that selects the product.
PRODUCT_CACHE_ENTRY = "NVS_SECURE_PRODUCT"


class NvsSecureIdfError(RuntimeError):
    """What a command raises when idf.py's own FatalError cannot be imported (tests)."""


# --- the few idf.py services used; tests replace these functions ---------------------


def _fatal(message: str) -> Exception:
    """idf.py's FatalError (printed without a traceback, exit status 2)."""
    try:
        from idf_py_actions.errors import FatalError
    except ImportError:
        return NvsSecureIdfError(message)
    return FatalError(message)


def _ensure_build_directory(args: Any, prog_name: str) -> None:
    from idf_py_actions.tools import ensure_build_directory

    ensure_build_directory(args, prog_name)


def _run_target(target: str, args: Any, env: dict[str, str]) -> None:
    from idf_py_actions.tools import run_target

    run_target(target, args, env, force_progression=True, interactive=True)


def _run_tool(name: str, argv: list[str], args: Any) -> None:
    try:
        from idf_py_actions.tools import RunTool
    except ImportError:
        if subprocess.call(argv, cwd=str(args.build_dir)) != 0:
            raise _fatal(f"{name} failed") from None
        return
    RunTool(name, argv, str(args.build_dir), hints=not args.get("no_hints"), interactive=True)()


def _echo(text: str) -> None:
    print(text, flush=True)


# --- reading the build directory -------------------------------------------------------


def _cache_entries(args: Any) -> dict[str, str]:
    """``-D NAME=VALUE`` entries of this idf.py call."""
    out: dict[str, str] = {}
    for entry in args.get("define_cache_entry") or ():
        name, _, value = str(entry).partition("=")
        out[name] = value.strip().strip('"').strip("'")
    return out


def _cmake_cache_value(build_dir: Path, name: str) -> str | None:
    try:
        text = (build_dir / "CMakeCache.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.split(":", 1)[0] == name:
            return value
    return None


def _product(args: Any, explicit: str | None) -> str | None:
    """``--product``, else ``-D NVS_SECURE_PRODUCT``, else the build's cache, else None
    (the project's default product)."""
    if explicit:
        return explicit
    entries = _cache_entries(args)
    if PRODUCT_CACHE_ENTRY in entries:
        return entries[PRODUCT_CACHE_ENTRY] or None
    return _cmake_cache_value(Path(args.build_dir), PRODUCT_CACHE_ENTRY) or None


def _sdkconfig(args: Any) -> Path | None:
    value = _cache_entries(args).get("SDKCONFIG")
    return Path(value) if value else None


def _read_manifest(args: Any) -> "BuildIntegration":
    from ..build.integration import BuildIntegration

    path = Path(args.build_dir) / MANIFEST
    if not path.is_file():
        raise _fatal(
            f"idf_nvs_secure: {path} does not exist: this build directory has not been "
            "configured with idf_nvs_secure. Run `idf.py reconfigure` (or `idf.py build`) "
            "first. The project's CMakeLists.txt must include idf_nvs_secure.cmake from "
            "`idf-nvs-secure cmake-dir` before project() (or list that folder in "
            "EXTRA_COMPONENT_DIRS, and with MINIMAL_BUILD make `main` require it).")
    try:
        integ = BuildIntegration.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fatal(f"idf_nvs_secure: {path} is unreadable ({exc}); run `idf.py reconfigure`") \
            from None
    if not integ.active:
        raise _fatal(f"idf_nvs_secure: the project has no {PROJECT_FILE}; nothing to do")
    return integ


def _configured(ctx: Any, args: Any, product: str | None) -> "BuildIntegration":
    """The configure step's manifest, for ``product`` (CMake configures again when it
    differs from the build's) and without errors."""
    integ = _read_manifest(args)
    if product and product != integ.product:
        args.define_cache_entry = list(args.get("define_cache_entry") or ())
        args.define_cache_entry.append(f"{PRODUCT_CACHE_ENTRY}={product}")
        _echo(f"idf_nvs_secure: configuring the build for product {product} "
              f"(was {integ.product or 'the default'})")
    _ensure_build_directory(args, ctx.info_name)
    integ = _read_manifest(args)
    if integ.errors:
        raise _fatal("idf_nvs_secure: the build cannot make the NVS images:\n  "
                     + "\n  ".join(integ.errors))
    return integ


def _serial_env(args: Any) -> dict[str, str]:
    env = {"ESPBAUD": str(args.get("baud") or "")}
    if args.get("port"):
        env["ESPPORT"] = str(args.port)
    return env


def _plan(args: Any, product: str | None, *, defer_unset: bool = False):
    """The project's plan against the configuration idf.py would build with;
    ``defer_unset`` for showing it (no secret value needed)."""
    from ..build.artifacts import plan_for_project
    from ..inputs.project import load_project

    project = load_project(Path(args.project_dir))
    return plan_for_project(project, product, sdkconfig=_sdkconfig(args),
                            build_dir=Path(args.build_dir), defer_unset=defer_unset)


def _current_manifest(args: Any, product: str | None) -> "BuildIntegration | None":
    """The configure step's manifest when it still describes the project exactly: no
    ``-D`` entries (idf.py configures again with them), the same product, every file the
    configure step read unchanged (SHA-256), the configuration idf.py builds with being
    that build's ``sdkconfig.json``, and every variable a value reads set.  None otherwise.

    Reading it costs a few file hashes; evaluating the plan again costs a Kconfig
    evaluation (about 0.5 s on ESP-IDF master), on every ``idf.py build``."""
    if args.get("define_cache_entry"):
        return None
    from ..build.integration import BuildIntegration

    build_dir = Path(args.build_dir)
    try:
        integ = BuildIntegration.from_json(
            json.loads((build_dir / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not integ.active or not integ.input_digests or (product and product != integ.product):
        return None
    for name, digest in integ.input_digests.items():
        try:
            if hashlib.sha256(Path(name).read_bytes()).hexdigest() != digest:
                return None
        except OSError:
            return None
    if any(name not in os.environ for name in integ.value_env):
        return None  # the plan's own evaluation names the variable
    from ..config.sdkconfig import find_config_inputs

    try:
        config = find_config_inputs(Path(args.project_dir), build_dir=build_dir)
    except NvsSecureError:
        return None
    if config.kind != "sdkconfig.json" or config.config is None or \
            str(config.config.resolve()) not in integ.input_digests:
        return None
    return integ


def _errors_text(plan: Any) -> str:
    return "\n".join(f"  error: [{d.code}] {d.located}" for d in plan.errors)


# --- the callbacks ---------------------------------------------------------------------


def check_before_build(ctx: Any, global_args: Any, tasks: list) -> None:
    """Global callback: before a build or flash, stop on an NVS security plan with errors."""
    if not {task.name for task in tasks} & BUILD_TASKS:
        return
    if not (Path(global_args.project_dir) / PROJECT_FILE).is_file():
        return  # not an idf_nvs_secure project
    product = _product(global_args, None)
    current = _current_manifest(global_args, product)
    if current is not None and not current.errors:
        return  # what the configure step found for exactly these inputs: no error
    try:
        _resolved, plan = _plan(global_args, product)
    except NvsSecureError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        raise _fatal(f"idf_nvs_secure: {exc}{hint}") from None
    if not plan.ok:
        raise _fatal(
            f"idf_nvs_secure: the NVS security plan has {len(plan.errors)} error(s); a device "
            f"built like this fails at boot:\n"
            f"{_errors_text(plan)}\nRun `idf.py nvs-secure-check` for the whole plan.")


def nvs_secure_check(action: str, ctx: Any, args: Any, product: str | None = None) -> None:
    """Print the NVS security plan and its diagnostics; fail when one is an error."""
    from ..views.text import format_plan

    try:
        resolved, plan = _plan(args, _product(args, product), defer_unset=True)
    except NvsSecureError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        raise _fatal(f"idf_nvs_secure: {exc}{hint}") from None
    _echo(f"product:           {resolved.product or '(none)'}")
    from ..plan.outputs import plan_outputs

    _echo(format_plan(plan, plan_outputs(plan, resolved)))
    for note in resolved.unset_notes:
        _echo(f"note: {note}")
    if not plan.ok:
        raise _fatal(f"idf_nvs_secure: the NVS security plan has {len(plan.errors)} error(s)")


def nvs_secure_gen(action: str, ctx: Any, args: Any, product: str | None = None) -> None:
    """Regenerate the NVS images now (the build's nvs-secure-gen target)."""
    _configured(ctx, args, product)
    _run_target("nvs-secure-gen", args, {})


def nvs_flash(action: str, ctx: Any, args: Any, product: str | None = None) -> None:
    """Write the NVS data images through their <partition>-flash targets."""
    integ = _configured(ctx, args, product)
    if integ.target == "linux":
        _echo("idf_nvs_secure: linux target: nothing to flash (ESP-IDF v6.1+ loads the images "
              "into the emulated flash when the app starts; older ESP-IDF cannot)")
        return
    images = [i for i in integ.of_kind("nvs_image") if i.registered]
    if not images:
        raise _fatal("idf_nvs_secure: no NVS data image to flash (no values for any NVS "
                     "partition in this product)")
    for image in images:
        _run_target(f"{image.partition}-flash", args, _serial_env(args))


def nvs_keys_flash(action: str, ctx: Any, args: Any, product: str | None = None,
                   plaintext: bool = False) -> None:
    """Write the nvs_keys image: encrypted under development-mode flash encryption."""
    integ = _configured(ctx, args, product)
    if integ.target == "linux":
        _echo("idf_nvs_secure: linux target: no NVS encryption, no nvs_keys image")
        return
    images = [i for i in integ.of_kind("nvs_keys_image") if i.partition]
    if not images:
        if integ.erase:
            raise _fatal("idf_nvs_secure: the chip makes its own NVS keys (keys: {source: chip}); "
                         "there is no nvs_keys image to flash (`idf.py nvs-keys-erase` erases "
                         "the partition)")
        raise _fatal("idf_nvs_secure: this configuration has no nvs_keys image (NVS encryption "
                     "off, or keys derived on the chip from an HMAC key)")
    for image in images:
        if not image.registered:
            note = next((m for m in integ.messages if m.startswith(image.file.name + ":")), "")
            raise _fatal(f"idf_nvs_secure: {note or 'the nvs_keys image is not flashable'}")
        target = (f"encrypted-{image.partition}-flash" if image.encrypted and not plaintext
                  else f"{image.partition}-flash")
        _run_target(target, args, _serial_env(args))


def nvs_keys_erase(action: str, ctx: Any, args: Any, product: str | None = None) -> None:
    """Erase the nvs_keys partition when the chip makes its keys (keys: {source: chip})."""
    integ = _configured(ctx, args, product)
    if not integ.erase:
        raise _fatal("idf_nvs_secure: nvs-keys-erase is for keys the chip makes (keys: "
                     "{source: chip}); this configuration's keys come from the host, and "
                     "`idf.py nvs-keys-flash` writes them")
    if integ.target == "linux":
        _echo("idf_nvs_secure: linux target: the emulated flash starts erased; nothing to do")
        return
    try:
        flasher = json.loads((Path(args.build_dir) / "flasher_args.json").read_text("utf-8"))
        extra = flasher["extra_esptool_args"]
    except (OSError, ValueError, KeyError) as exc:
        raise _fatal(f"idf_nvs_secure: cannot read flasher_args.json ({exc}); run `idf.py build`") \
            from None
    argv = [sys.executable, "-m", "esptool", "--chip", extra["chip"]]
    if args.get("port"):
        argv += ["-p", str(args.port)]
    argv += ["-b", str(args.get("baud") or 460800),
             "--before", str(extra["before"]).replace("_", "-"),
             "--after", str(extra["after"]).replace("_", "-")]
    if not extra.get("stub", True):
        argv.append("--no-stub")
    for part in integ.erase:
        region = ["erase-region", f"0x{part.offset:x}", f"0x{part.size:x}"]
        _run_tool("esptool", argv + region, args)


def nvs_secure_release(action: str, ctx: Any, args: Any, product: str | None = None,
                       out_dir: str | None = None) -> None:
    """Write a release bundle of the project (as `idf-nvs-secure release` does)."""
    from ..release.bundle import release_project

    product = _product(args, product)
    build_dir = Path(args.build_dir)
    try:
        if product is None:
            from ..inputs.project import load_project

            chosen = load_project(Path(args.project_dir)).product(None)
            product = chosen.name if chosen else None
        out = Path(out_dir) if out_dir else build_dir / "nvs_secure_release" / (
            product or "default")
        bundle, zip_path = release_project(Path(args.project_dir), out, product=product,
                                           sdkconfig=_sdkconfig(args), build_dir=build_dir)
    except NvsSecureError as exc:
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        raise _fatal(f"idf_nvs_secure: {exc}{hint}") from None
    for note in bundle.notes:
        _echo(f"idf_nvs_secure: note: {note}")
    _echo(f"idf_nvs_secure: wrote {zip_path} ({len(bundle.files)} files)")


# --- the extension -------------------------------------------------------------------


def _options(*extra: dict) -> list[dict]:
    return [{"names": ["--product"], "default": None,
             "help": "Product from nvs_secure.yaml (default: the build's NVS_SECURE_PRODUCT, "
                     "else default_product). A different product configures the build again."},
            *extra]


#: idf.py's global serial options, as its own serial commands declare them.
_PORT = {"names": ["-p", "--port"], "help": "Serial port.", "scope": "global",
         "envvar": "ESPPORT", "default": None}
_BAUD = {"names": ["-b", "--baud"], "help": "Baud rate for flashing.", "scope": "global",
         "envvar": "ESPBAUD", "default": 460800}


def action_extensions(base_actions: dict, project_path: str) -> dict:
    """idf.py's extension hook: the commands above and the global check ("version": "1")."""
    known = base_actions.get("actions", {}) if isinstance(base_actions, dict) else {}
    if any(name in known for name in ACTION_NAMES):
        return {"version": "1"}  # registered already (entry point and component shim)

    def action(callback: Callable, help_text: str, *options: dict,
               dependencies: list[str] | None = None) -> dict:
        out: dict[str, Any] = {"callback": callback, "help": help_text,
                               "options": _options(*options)}
        if dependencies:
            out["dependencies"] = dependencies
        return out

    serial = (_PORT, _BAUD)
    return {
        "version": "1",
        "global_action_callbacks": [check_before_build],
        "actions": {
            "nvs-secure-check": action(
                nvs_secure_check, "Print the NVS security plan (idf_nvs_secure) and its "
                "diagnostics; fails when one is an error."),
            "nvs-secure-gen": action(
                nvs_secure_gen, "Regenerate the NVS images of nvs_secure.yaml now."),
            "nvs-flash": action(
                nvs_flash, "Flash the NVS data images (plain text) with the project's port "
                "and baud rate.", *serial),
            "nvs-keys-flash": action(
                nvs_keys_flash, "Flash the nvs_keys image: encrypted under development-mode "
                "flash encryption.", *serial,
                {"names": ["--plaintext"], "is_flag": True, "default": False,
                 "help": "Write it in plain text: a device that has not booted yet, whose "
                         "bootloader encrypts the partition in place."}),
            "nvs-keys-erase": action(
                nvs_keys_erase, "Erase the nvs_keys partition on the device (keys made by the "
                "chip: keys: {source: chip}).", *serial),
            "nvs-secure-release": action(
                nvs_secure_release, "Write a release bundle (idf-nvs-secure release) from "
                "this build.",
                {"names": ["-o", "--out-dir"], "default": None,
                 "help": "Where the bundle goes (default: BUILD_DIR/nvs_secure_release/"
                         "PRODUCT)."}),
        },
    }

"""The ``idf-nvs-secure`` command line: thin click shims over the library.

Nothing in this package is API; scripts call :mod:`idf_nvs_secure` instead.  Errors are
mapped to output and exit status in one place, :class:`ErrorMappingGroup`:

* :class:`~idf_nvs_secure.errors.NvsSecureError` (user error): ``error: ...`` on stderr,
  plus ``hint: ...`` when there is one; exit 2, no traceback.  Several independent
  errors of one input (:class:`~idf_nvs_secure.errors.InputErrors`): one such line each.
* a failed check: the command exits 1 itself (``ctx.exit(1)``).
* a bug: one ``error: internal error: ...`` line, exit 3; ``--debug`` shows the traceback.
* a usage error (click's): ``error: ...`` and a ``hint:`` naming ``--help``; exit 2.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from ..._version import __version__
from ...errors import InputErrors, NvsSecureError

__all__ = ["cli", "main"]

#: Each command: the modules that define it (loaded only when it runs), its object's
#: name there, and the one-line summary ``--help`` shows without loading anything.
COMMANDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "detect": (("detect",), "detect", "Show a project's NVS security plan and the files it makes."),
    "build": (("project",), "build_cmd", "Build a product's partition table, NVS images and keys."),
    "init": (("init",), "init_cmd", "Start a project file from a project's partitions CSV."),
    "config": (("project",), "config_group", "Show the project file, resolved for a product."),
    "partitions": (("partitions",), "partitions_group",
                   "Build, show and convert partition tables."),
    "nvs": (("nvs",), "nvs_group",
            "Build, convert, dump, check and compare NVS images."),
    "keys": (("keys",), "keys_group", "Generate and show NVS keys (by fingerprint only)."),
    "report": (("inspect",), "report_cmd",
               "Write an HTML report of the plan, flash map and values."),
    "release": (("release",), "release_cmd", "Write a reproducible release bundle of a product."),
    "batch": (("release",), "batch_cmd", "Build per-device NVS images and keys for manufacturing."),
    # Run by ESP-IDF's CMake build, not by users: hidden from --help.
    "cmake-dir": (("cmake",), "cmake_dir_cmd", "Print the folder of the CMake module."),
    "cmake-configure": (("cmake",), "cmake_configure_cmd", "CMake's configure step."),
    "cmake-stamp": (("cmake",), "cmake_stamp_cmd", "CMake's stamp step."),
    "cmake-build": (("cmake",), "cmake_build_cmd", "CMake's image step."),
}
HIDDEN = frozenset(name for name in COMMANDS if name.startswith("cmake-"))


class ErrorMappingGroup(click.Group):
    """A click group that turns library errors into one-line messages and exit codes,
    and loads each command's module only when that command runs (so ``--help`` and
    short commands start fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        modules, attr, _ = COMMANDS[name]
        loaded = [importlib.import_module(f"{__name__}.{m}") for m in modules]
        command = getattr(loaded[0], attr)
        command.hidden = name in HIDDEN
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, summary) for name, (_, _, summary) in sorted(COMMANDS.items())
                if name not in HIDDEN]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):  # noqa: D102 - documented on the class
        """Click's own usage errors (a missing option, a bad choice) get the same form as
        ours: one ``error: ...`` line, a hint, exit 2, instead of click's usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx else (prog_name or "idf-nvs-secure")
            click.echo(f"error: {exc.format_message()}", err=True)
            click.echo(f"hint: see '{path} --help'", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):  # noqa: D102 - documented on the class
        try:
            return super().invoke(ctx)
        except NvsSecureError as exc:
            for error in exc.errors if isinstance(exc, InputErrors) else (exc,):
                click.echo(f"error: {NvsSecureError.__str__(error)}", err=True)
                if error.hint:
                    click.echo(f"hint: {error.hint}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: run with --debug for the traceback, and please report it", err=True)
            ctx.exit(3)


@click.group("idf-nvs-secure", cls=ErrorMappingGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="idf-nvs-secure")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative, reproducible NVS encryption for ESP-IDF projects."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ctx.invoked_subcommand is None:  # bare command: its help, as git and idf.py do
        click.echo(ctx.get_help())
        ctx.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="idf-nvs-secure")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

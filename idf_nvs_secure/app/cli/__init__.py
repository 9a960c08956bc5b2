"""The ``idf-nvs-secure`` command line: thin click shims over the library.

Nothing in this package is API; scripts call :mod:`idf_nvs_secure` instead.  Errors are
mapped to output and exit status in one place, :class:`ErrorMappingGroup`:

* :class:`~idf_nvs_secure.errors.NvsSecureError` (user error): ``error: ...`` on stderr,
  plus ``hint: ...`` when there is one; exit 2, no traceback.
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
from ...errors import NvsSecureError

__all__ = ["cli", "main"]

#: Modules under idf_nvs_secure.cli that each define a ``commands`` list to register.
COMMAND_MODULES = [
    "partitions",
    "keys",
    "detect",
    "nvs",
    "project",
    "inspect",
    "cmake",
    "release",
]


class ErrorMappingGroup(click.Group):
    """A click group that turns library errors into one-line messages and exit codes."""

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
            click.echo(f"error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
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


@click.group("idf-nvs-secure", cls=ErrorMappingGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="idf-nvs-secure")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative, reproducible NVS encryption for ESP-IDF projects."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(f"{__name__}.{_name}").commands:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="idf-nvs-secure")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

"""Option types and small readers shared by the CLI modules."""

from __future__ import annotations

from pathlib import Path

import click

from ...errors import NvsSecureError
from ...formats.nvs_keys import NvsKeys, parse_nvs_keys
from ...fsutil import read_input_bytes

__all__ = ["AnyInt", "IDF_VERSION", "MASTER_SECRET_FILE", "load_keys", "master_secret_from_file"]

#: The firmware's ESP-IDF, for the commands that plan or build NVS images.
IDF_VERSION = click.option(
    "--idf-version", "idf_version", metavar="VERSION",
    help="The ESP-IDF the firmware is built with (e.g. 6.0.2): decides which NVS types "
         "the images may hold. Default: nvs_secure.yaml's idf_version:, else "
         "$IDF_PATH's tools/cmake/version.cmake, else the line ESP-IDF writes atop sdkconfig.")


class AnyInt(click.ParamType):
    """An integer in decimal or 0x hex (like gen_esp32part.py's --offset)."""

    name = "int"

    def convert(self, value, param, ctx):  # noqa: D102
        if isinstance(value, int):
            return value
        try:
            return int(value, 0)
        except ValueError:
            self.fail(f"{value!r} is not a number (decimal or 0x hex)", param, ctx)


def load_keys(path: Path | None) -> NvsKeys | None:
    """The keys in an nvs_keys partition file, errors located at it (key bytes never shown)."""
    if path is None:
        return None
    try:
        return parse_nvs_keys(read_input_bytes(path))
    except NvsSecureError as exc:
        raise exc.located(file=str(path)) from None


#: ``--master-secret-file`` of build, release and batch.
MASTER_SECRET_FILE = click.option(
    "--master-secret-file", type=click.Path(path_type=Path),
    help="Derive keys from the secret in this file (64+ hex digits or 32+ bytes); "
         "overrides the project file's master secret, and keys of source 'generate' "
         "become derived from it.")


def master_secret_from_file(path: Path | None, *, release: bool = False):
    """The master secret in ``path`` (None when no file is given)."""
    if path is None:
        return None
    from ...inputs.keysource import SecretSpec, read_master_secret

    return read_master_secret(SecretSpec(file=path), base_dir=Path.cwd(), release=release)

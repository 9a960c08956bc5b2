"""``idf-nvs-secure keys``: generate and inspect nvs_keys partitions and HMAC keys."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...errors import KeyMaterialError, NvsSecureError
from ...formats.nvs_keys import (
    HMAC_KEY_SIZE,
    build_nvs_keys,
    derive_nvs_keys_from_hmac,
    generate_hmac_key,
    generate_nvs_keys,
    is_erased,
    key_fingerprint,
    parse_nvs_keys,
)
from ...fsutil import read_input_bytes, refuse_key_overwrite, write_key_file


def _read_hmac_key(path: Path) -> bytes:
    raw = read_input_bytes(path)
    if len(raw) != HMAC_KEY_SIZE:
        raise KeyMaterialError(
            f"an HMAC eFuse key file holds {HMAC_KEY_SIZE} raw bytes, this one has {len(raw)}",
            file=str(path),
        )
    return raw


@click.group("keys")
def keys_group() -> None:
    """Generate and inspect NVS encryption keys (never printed: fingerprints only)."""


@keys_group.command("generate", short_help="Write an nvs_keys image with random keys.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="nvs_keys partition image to write (4096 bytes, mode 0600).")
@click.option("--hmac-key", type=click.Path(path_type=Path),
              help="Derive the keys the chip derives from this 32-byte HMAC eFuse key "
                   "instead of drawing random ones.")
@click.option("--new-hmac-key", is_flag=True,
              help="With --hmac-key: first create that file with a fresh random HMAC key.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def generate_cmd(output: Path, hmac_key: Path | None, new_hmac_key: bool, force: bool) -> None:
    """Write an nvs_keys partition image with keys from the OS CSPRNG or an HMAC key."""
    if new_hmac_key and hmac_key is None:
        raise click.UsageError("--new-hmac-key needs --hmac-key FILE to write it to")
    refuse_key_overwrite(output, force=force)  # before writing either file
    if hmac_key is not None:
        if new_hmac_key:
            write_key_file(hmac_key, generate_hmac_key(), force=force)
            click.echo(f"wrote HMAC eFuse key {hmac_key} "
                       f"({key_fingerprint(read_input_bytes(hmac_key))})")
        keys = derive_nvs_keys_from_hmac(_read_hmac_key(hmac_key))
    else:
        keys = generate_nvs_keys()
    write_key_file(output, build_nvs_keys(keys), force=force)
    click.echo(f"wrote nvs_keys {output} ({keys.fingerprint})")


@keys_group.command("show", short_help="Show a key file by fingerprint.")
@click.argument("key_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_cmd(key_file: Path, as_json: bool) -> None:
    """Describe an nvs_keys image or an HMAC key file by fingerprints, never key bytes."""
    raw = read_input_bytes(key_file)
    if len(raw) == HMAC_KEY_SIZE:
        keys = derive_nvs_keys_from_hmac(raw)
        info = {"kind": "hmac_key", "fingerprint": key_fingerprint(raw),
                "derived_nvs_keys": keys.fingerprint}
    elif is_erased(raw):
        info = {"kind": "nvs_keys", "state": "erased",
                "note": "no keys: the chip generates them at first boot"}
    else:
        try:
            keys = parse_nvs_keys(raw)
        except NvsSecureError as exc:
            raise exc.located(str(key_file))
        info = {"kind": "nvs_keys", "state": "valid", "fingerprint": keys.fingerprint,
                "data_key": key_fingerprint(keys.data_key),
                "tweak_key": key_fingerprint(keys.tweak_key), "crc": "ok"}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{key_file}:")
    for name, value in info.items():
        click.echo(f"  {name.replace('_', ' ')}: {value}")


commands = [keys_group]

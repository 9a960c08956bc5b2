"""The build's stamp step: rewrite a stamp file only when a keyed fingerprint of the
inputs make cannot see changes (environment variables that values or the master secret
read).

CMake runs it on every build (``python -m idf_nvs_secure cmake-stamp STAMP.json``); the
NVS image command depends on the stamp file, so a changed ``NVS_MASTER_SECRET`` or
``EXAMPLE_WIFI_PASSWORD`` regenerates the images on the next build, and an unchanged one
costs one small process.  The stamp holds an HMAC-SHA256, keyed with a random key kept
in the build folder (mode 0600), of each variable's name and value (or "unset"): it
never holds a secret, and it cannot be tested against guesses without that key.

Deliberately light: ``__main__`` runs it without importing click or the library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["STAMP_FORMAT", "write_stamp_spec", "stamp_value", "run_stamp", "main"]

STAMP_FORMAT = "idf-nvs-secure-stamp/1"


def write_stamp_spec(spec_path: Path, stamp: Path, env: Sequence[str]) -> bool:
    """Write the stamp step's description (the variables to watch, the stamp file, the
    key) unless it holds exactly that; the key is kept across configure runs.  True when
    written."""
    try:
        old = json.loads(spec_path.read_text(encoding="utf-8"))
        key = old["key"] if isinstance(old.get("key"), str) and len(old["key"]) == 64 else None
    except (OSError, ValueError, AttributeError):
        old, key = None, None
    spec = {"format": STAMP_FORMAT, "stamp": str(stamp), "env": list(env),
            "key": key or secrets.token_hex(32)}
    if spec == old:
        return False
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec_path.with_name(f".{spec_path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, spec_path)
    return True


def stamp_value(key: bytes, names: Sequence[str], env: Mapping[str, str]) -> str:
    """The keyed fingerprint of ``names``' values in ``env`` (hex)."""
    mac = hmac.new(key, STAMP_FORMAT.encode(), hashlib.sha256)
    for name in names:
        value = env.get(name)
        for part in (name.encode(), b"\x01" + value.encode() if value is not None else b"\x00"):
            mac.update(len(part).to_bytes(4, "big") + part)
    return mac.hexdigest()


def run_stamp(spec_path: Path, env: Mapping[str, str] | None = None) -> bool:
    """Rewrite the stamp when the fingerprint changed; True when it did."""
    env = os.environ if env is None else env
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    stamp = Path(spec["stamp"])
    text = stamp_value(bytes.fromhex(spec["key"]), spec["env"], env) + "\n"
    try:
        if stamp.read_text(encoding="ascii") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    tmp = stamp.with_name(f".{stamp.name}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, stamp)
    return True


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("error: usage: python -m idf_nvs_secure cmake-stamp STAMP.json", file=sys.stderr)
        return 2
    try:
        run_stamp(Path(argv[0]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {argv[0]}: cannot run the stamp step ({exc}); run `idf.py reconfigure`",
              file=sys.stderr)
        return 2
    return 0

"""Filesystem helpers for the CLI and adapters: atomic writes and key files.

Library modules never touch files; commands write their results through these so a
failure never leaves a partial or stale output behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError, KeyMaterialError

__all__ = [
    "write_atomic",
    "write_key_file",
    "refuse_key_overwrite",
    "read_input_bytes",
    "read_input_text",
    "read_regular_file",
    "display_path",
]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename.

    ``mode`` is applied to the temporary file before any byte is written, so a key
    file is never readable by others, even for a moment.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def refuse_key_overwrite(path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Raise :class:`KeyMaterialError` when ``path`` exists and ``force`` is not set.

    Commands that write several key files call this for all of them first, so that a
    refusal never leaves some written and others not.
    """
    if Path(path).exists() and not force:
        raise KeyMaterialError(
            "key file exists; refusing to overwrite key material",
            file=str(path),
            hint="pass --force to replace it (the old keys are lost)",
        )


def write_key_file(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> None:
    """Write key material with mode 0600; refuse to replace an existing file unless ``force``."""
    refuse_key_overwrite(path, force=force)
    write_atomic(path, data, mode=0o600)


def read_input_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole input file, turning OS errors into an :class:`InputError`."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except ValueError:  # a NUL in the path
        raise InputError("the path contains a NUL character", file=repr(str(path))) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int,
                      what: str = "file") -> bytes:
    """Read a whole regular file of at most ``max_bytes`` bytes, or raise InputError.

    The type and size are checked with ``stat`` before a byte is read, and the file is
    opened non-blocking and checked again on the open descriptor, so a FIFO, a device
    (``/dev/zero``) or a directory is refused at once, never read or waited on.  A file
    that grows past ``max_bytes`` while being read is refused too.
    """
    name = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} is {_kind(info.st_mode)}, not a regular file", file=name)
        if info.st_size > max_bytes:
            raise InputError(f"{what} is {info.st_size} bytes; at most {max_bytes} can be "
                             f"stored", file=name)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):  # replaced between stat and open
                raise InputError(f"{what} is {_kind(mode)}, not a regular file", file=name)
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(f"no such {what}", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=name) from None
    except ValueError:  # a NUL in the path
        raise InputError("the path contains a NUL character", file=repr(name)) from None
    if len(data) > max_bytes:
        raise InputError(f"{what} grew past {max_bytes} bytes while being read", file=name)
    return data


def read_input_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text input (a BOM is accepted) with errors located at the file."""
    raw = read_input_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a user would type it: relative to the working directory when inside
    it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)

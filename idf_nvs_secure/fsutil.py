"""Filesystem helpers for the CLI and adapters: atomic writes and key files.

Library modules never touch files; commands write their results through these so a
failure never leaves a partial or stale output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from .errors import InputError, KeyMaterialError

__all__ = [
    "write_atomic",
    "write_key_file",
    "refuse_key_overwrite",
    "read_input_bytes",
    "read_input_text",
    "read_regular_file",
    "display_path",
    "OutputFile",
    "write_output_set",
    "output_lock",
    "os_error",
]

#: An output of a set: (path relative to the set's folder, bytes, secret).
OutputFile = tuple[str, bytes, bool]


def os_error(exc: OSError, path: str | os.PathLike[str], doing: str = "cannot write") -> InputError:
    """An OS error on an output as one user error naming the file: ``error: PATH: cannot
    write: No space left on device``."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif exc.errno in (errno.EROFS,):
        reason = "the file system is read-only"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif exc.errno == errno.EBUSY:
        reason = "the folder is busy (a mount point, or in use)"
    # ``path`` is the file as the user named it; ``exc.filename`` may be a temporary
    # copy of it, which means nothing to them.
    return InputError(f"{doing}: {reason}", file=str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike[str], *, scope: str | None = None,
                wait_orphans: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for one run: a second run on the same folder
    stops at once with ``error: OUT: another run is writing here (pid N)``.

    The lock is an OS file lock (``flock``) on ``.<name>.lock`` (``.<name>.<scope>.lock``
    for a part of the folder, such as one shard of a batch) beside the folder, so it
    survives the folder being replaced as a whole and ends with the processes holding it.
    ``wait_orphans``: when the run that holds it is dead and only its child processes
    still hold the lock (they end with it), wait for them (up to 5 s) instead of failing.
    """
    import fcntl
    import time

    target = Path(out_dir)
    where = target.resolve()  # "-o ." locks beside the folder too, never inside it
    parent = where.parent
    suffix = f".{scope}" if scope else ""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent / f".{where.name}{suffix}.lock",
                     os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise os_error(exc, target) from None
    try:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                orphans = holder.isdigit() and not _alive(int(holder))
                if wait_orphans and orphans and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise InputError(f"another run is writing here (pid {holder})",
                                 file=display_path(target),
                                 hint="wait for it to finish, or choose another output "
                                      "folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _holds_cwd(folder: Path) -> bool:
    """Whether ``folder`` is the working directory or holds it."""
    try:
        return Path.cwd().resolve().is_relative_to(folder.resolve())
    except OSError:  # the working directory is gone
        return False


def write_output_set(out_dir: str | os.PathLike[str], files: Sequence[OutputFile], *,
                     manifest: tuple[str, bytes] | None = None,
                     owned: str | None = None) -> None:
    """Write ``files`` into ``out_dir`` as one set, replacing the set it held.

    Everything is staged in a temporary sibling folder on the same file system (key
    material mode 0600 from its first byte), the manifest written last, then renamed into
    place; the old set goes only after the new one stands.  A failure part-way (disk
    full, Ctrl-C) leaves the previous set byte for byte as it was, never new keys beside
    an old image.  ``owned``: the name of the manifest a previous set of ours holds; a
    non-empty folder without it is refused (it is not ours to replace).  OS errors are
    :class:`InputError` naming the file.
    """
    target = Path(out_dir)
    if _holds_cwd(target):
        raise InputError("the output folder holds the current folder, and a build replaces "
                         "its output folder as a whole", file=display_path(target),
                         hint="name a folder of its own, for example -o out")
    if target.exists():
        if not target.is_dir():
            raise InputError("exists and is not a directory", file=display_path(target))
        if owned and any(target.iterdir()) and not (target / owned).is_file():
            raise InputError("output directory is not empty and holds no output set of ours",
                             file=display_path(target),
                             hint="choose a new or empty directory")
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.resolve().name}.new-", dir=parent))
    except OSError as exc:
        raise os_error(exc, target, "cannot create the output directory") from None
    current = stage
    try:
        os.chmod(stage, 0o755)
        for name, data, secret in files:
            current = stage / name
            if (".." in Path(name).parts or Path(name).is_absolute()
                    or not current.resolve().is_relative_to(stage.resolve())):
                raise InputError(f"output {name!r} would be written outside the output folder",
                                 file=display_path(target))
            current.parent.mkdir(parents=True, exist_ok=True)
            _write_new(current, data, 0o600 if secret else 0o644)
        if manifest is not None:
            current = stage / manifest[0]
            _write_new(current, manifest[1], 0o644)
        current = target
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.resolve().name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(target, old)
        try:
            os.rename(stage, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        try:  # name the file as the user will see it, not its staging copy
            where = target / current.relative_to(stage)
        except ValueError:
            where = target
        raise os_error(exc, display_path(where)) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename.

    ``mode`` is applied to the temporary file before any byte is written, so a key
    file is never readable by others, even for a moment.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError("is a directory, expected a file name", file=display_path(target))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise os_error(exc, display_path(target)) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise os_error(exc, display_path(target)) from None
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

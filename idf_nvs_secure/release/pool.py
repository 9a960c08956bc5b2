"""The batch's worker processes: a pool whose workers ignore Ctrl-C and die with their
parent, or the calling process itself for one job; and errors carried back as data."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any, Callable, Iterable, Iterator

from ..errors import CapacityError, InputError, KeyMaterialError, NvsSecureError

__all__ = ["Workers", "state", "error_data", "raise_error"]

_STATE: Any = None  # what the running batch's workers need (batch._State)


def state() -> Any:
    """The running batch's state, in a worker or (one job) in the calling process."""
    assert _STATE is not None
    return _STATE


def _end_with_parent() -> None:
    """Make this worker die with the batch's parent process (Linux: PR_SET_PDEATHSIG),
    so a killed batch never keeps writing; and leave Ctrl-C to the parent, which ends
    the pool (no worker prints a KeyboardInterrupt traceback).  The parent blocks
    SIGINT while it forks, so a Ctrl-C before this runs waits until it is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(value: Any) -> None:
    global _STATE
    _end_with_parent()
    _STATE = value


def error_data(exc: NvsSecureError, line: int | None = None) -> tuple:
    """An error as data (exceptions with keyword fields do not survive pickling)."""
    return type(exc).__name__, exc.message, exc.line or line, exc.hint


def raise_error(error: tuple, file: str) -> None:
    """Raise the error :func:`error_data` made, located in ``file``."""
    kind, message, line, hint = error
    cls = {"KeyMaterialError": KeyMaterialError, "CapacityError": CapacityError}.get(
        kind, InputError)
    raise cls(message, file=file, line=line, hint=hint)


class Workers:
    """``map(fn, items)`` in order, in this process (jobs 1) or a process pool whose
    workers ignore Ctrl-C and die with their parent; ``value`` is what :func:`state`
    returns in them."""

    def __init__(self, jobs: int, value: Any) -> None:
        self.jobs, self.value, self.pool = jobs, value, None

    def __enter__(self) -> "Workers":
        global _STATE
        if self.jobs == 1:
            self.saved, _STATE = _STATE, self.value
            return self
        # Block Ctrl-C while forking: a worker starts with SIGINT blocked and ignores it
        # before unblocking (the parent gets it and ends the pool).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.pool = multiprocessing.get_context().Pool(self.jobs, _init_worker,
                                                           (self.value,))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return self

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        if self.pool is None:
            return map(fn, items)
        return self.pool.imap(fn, items)

    def __exit__(self, *exc) -> None:
        global _STATE
        if self.pool is None:
            _STATE = self.saved
        else:
            self.pool.terminate()
            self.pool.join()

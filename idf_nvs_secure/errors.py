"""Typed errors: the library raises these, only the CLI turns them into exit codes.

Every user-caused failure is an :class:`NvsSecureError` (or a subclass) that knows
which file, line and column it is about and, where one helps, a hint.  The CLI prints
``error: <file>[:<line>[:<col>]]: <message>`` (and ``hint: ...``) and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = [
    "NvsSecureError",
    "InputError",
    "FormatError",
    "KeyMaterialError",
    "CapacityError",
    "InputErrors",
    "ErrorCollector",
]


class NvsSecureError(Exception):
    """A failure caused by the user's input or environment (exit status 2)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.hint = hint

    def located(self, file: str | None = None, line: int | None = None,
                col: int | None = None) -> "NvsSecureError":
        """Fill in a location that the raiser did not know; keeps one it did know."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line = line
        if self.col is None:
            self.col = col
        return self

    @property
    def location(self) -> str:
        """``file[:line[:col]]``, or an empty string when nothing is known."""
        if not self.file:
            return ""
        loc = str(self.file)
        if self.line is not None:
            loc += f":{self.line}"
            if self.col is not None:
                loc += f":{self.col}"
        return loc

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: {self.message}" if loc else self.message


class InputError(NvsSecureError):
    """Bad input text: a CSV/YAML value, a name, a range, a missing file."""


class FormatError(NvsSecureError):
    """A binary that is not what it claims to be (bad magic, CRC, layout)."""


class KeyMaterialError(NvsSecureError):
    """Key files that are missing, malformed, weak or would be overwritten."""


class CapacityError(InputError):
    """Data that does not fit where it must go (partition, page, flash)."""


class InputErrors(InputError):
    """Several independent errors of one input, found in one pass: the CLI prints each
    as its own ``error: file:line:col: ...`` line.  As a single error (its ``message``,
    location and hint) it is the first one, so callers that show one line still work."""

    def __init__(self, errors: Sequence[NvsSecureError]) -> None:
        first = errors[0]
        super().__init__(first.message, file=first.file, line=first.line, col=first.col,
                         hint=first.hint)
        self.errors = tuple(errors)

    def located(self, file: str | None = None, line: int | None = None,
                col: int | None = None) -> "InputErrors":
        for error in self.errors:
            error.located(file, line, col)
        super().located(file, line, col)
        return self

    def __str__(self) -> str:
        more = len(self.errors) - 1
        return super().__str__() + (f" (and {more} more error{'s' if more > 1 else ''})"
                                    if more else "")


class ErrorCollector:
    """Collects the independent :class:`InputError` s of one input, so a user sees them
    all at once: ``with collector.catch(): <check one row>``, then ``raise_any()``."""

    def __init__(self) -> None:
        self.errors: list[InputError] = []

    @contextmanager
    def catch(self) -> Iterator[None]:
        try:
            yield
        except InputErrors as exc:
            self.errors.extend(exc.errors)  # type: ignore[arg-type]
        except InputError as exc:
            self.errors.append(exc)

    def raise_any(self, also: InputError | None = None) -> None:
        """Raise what was collected (and ``also``, last): the one error as it is, several
        as :class:`InputErrors`; nothing when there is none."""
        errors = self.errors + ([also] if also is not None else [])
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise InputErrors(errors)

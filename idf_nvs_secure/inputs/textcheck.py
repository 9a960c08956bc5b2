"""Checks of text that names things: no NUL or other control characters.

Names and paths read from the user's files become key derivation contexts, file names
and message text; a control character in one is never intended and can make two
different inputs look alike (or a message span lines), so readers refuse it.
"""

from __future__ import annotations

__all__ = ["control_character"]


def control_character(text: str) -> str | None:
    """How to name the first control character in ``text`` (``NUL``, ``U+001B``), or
    None when there is none.  Control characters are C0 (U+0000..U+001F), DEL and C1
    (U+007F..U+009F)."""
    for c in text:
        code = ord(c)
        if code < 0x20 or 0x7F <= code < 0xA0:
            return "NUL" if code == 0 else f"U+{code:04X}"
    return None

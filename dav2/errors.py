"""The one exception type for errors a user can cause, and the quoting rule
for names in its messages.

Anything raised as Dav2Error is printed by the CLI as a single line and ends the command with
a non-zero exit; anything else is a bug and keeps its traceback.

A file name may hold any byte but "/" and NUL: a newline in a name would split the one
`error:` line in two, a carriage return or an escape sequence could overwrite the terminal.
`quote` writes such characters as Python escapes (`\\n`, `\\x1b`, `\\udcff` for bytes that are
not UTF-8), and leaves every printable name as it is; the CLI's error printer applies
`one_line` to the whole message, so the rule holds even where a message forgot to quote.
"""

import os


class Dav2Error(Exception):
    """A user-facing error: bad input, missing file or library, offline download, ..."""


def one_line(text: str) -> str:
    """`text` with every non-printable character (newline, tab, escape, a lone surrogate from an
    undecodable byte) written as its Python escape, so it prints as exactly one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def quote(path: str | os.PathLike) -> str:
    """A user's file name as it goes into a message: unchanged when printable, else escaped
    (see the module docstring)."""
    return one_line(os.fspath(path) if not isinstance(path, str) else path)

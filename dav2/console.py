"""Progress lines on standard error, so standard output stays clean for --json."""

import contextlib
import sys
import time
from collections.abc import Iterator

from dav2.errors import one_line


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One `warning:` line: a newline or escape sequence in a file name it quotes is escaped."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Print what a long step is doing, then how long it took."""
    print(f"{message} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        print(" failed", file=sys.stderr, flush=True)
        raise
    print(f" done ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)

"""Ctrl-C while a dav2 command starts: one line and exit 130, never a KeyboardInterrupt traceback.

Python turns Ctrl-C into KeyboardInterrupt wherever the program is; before a command's
`user_errors` wrapper runs (while dav2.cli imports its modules, click parses the options) that
would print a traceback. `quiet_start` (called first thing by dav2/cli/__init__.py when the
program is a dav2-* console script) makes Ctrl-C end the process at once with one `error:` line
(nothing has been written yet, so nothing needs cleaning up); `user_errors` hands Ctrl-C back to
Python's KeyboardInterrupt (`end_quiet_start`) so a running command cleans up as before.
Imported from a Python session (argv[0] not dav2-*), nothing changes.
"""

import os
import signal
import sys
import threading

MESSAGE = b"error: interrupted (Ctrl-C) while starting; nothing was done\n"


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, MESSAGE)
    os._exit(130)


def quiet_start() -> None:
    """Install the start-up handler, for a dav2-* console script in its main thread only."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if (
        script.startswith("dav2-")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def end_quiet_start() -> None:
    """Ctrl-C raises KeyboardInterrupt again (the command's own clean-up handles it)."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is _interrupted_while_starting
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)

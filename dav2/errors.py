"""The one exception type for errors a user can cause (DESIGN.md rule 5).

Anything raised as Dav2Error is printed by the CLI as a single line and ends the command with
a non-zero exit; anything else is a bug and keeps its traceback.
"""


class Dav2Error(Exception):
    """A user-facing error: bad input, missing file or library, offline download, ..."""

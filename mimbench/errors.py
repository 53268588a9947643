"""The one base class of user mistakes: a tool catches it and prints one ``error:`` line instead of a traceback."""
from __future__ import annotations


class MimbenchError(Exception):
    """A config, data or command-line mistake the user can fix; ``str(err)`` names the key or file and the fix."""

"""The one base class of user mistakes: a tool catches it and prints one ``error:`` line instead of a traceback.

Every tool's ``main`` ends its work in ``except USER_ERRORS as err: sys.exit(f'error: {err}')``. A class that
stands for a user mistake subclasses :class:`MimbenchError` (next to the builtin it used to be, so that an
``except ValueError`` or ``except KeyError`` that caught it still does).
"""
from __future__ import annotations


class MimbenchError(Exception):
    """A config, data or command-line mistake the user can fix; ``str(err)`` names the key or file and the fix."""

    def __str__(self) -> str:
        # KeyError would print a one-argument message in quotes
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


# What a tool reports in one line: the user's mistakes, and a config or checkpoint named that is not there.
USER_ERRORS = (MimbenchError, FileNotFoundError)

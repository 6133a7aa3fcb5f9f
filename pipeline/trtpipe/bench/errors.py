"""The bench's errors, under the project's one exception root.

click prints `Error: <message>` and exits with `exit_code`, so a refused connection or a bad option
reaches the user as one line saying what, where and the fix, never as a traceback.
"""

from __future__ import annotations

from trtpipe.errors import TrtpipeError


class BenchError(TrtpipeError):
    """The benchmark could not run or its results could not be read or written."""


class BenchConfigError(BenchError):
    """An option value is invalid; exits 2 like click's own usage errors."""

    exit_code = 2

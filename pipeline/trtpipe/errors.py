"""One exception root. Every message says what went wrong, where, and how to fix it.

click prints `Error: <message>` for a ClickException and exits with `exit_code`, so the CLI needs no
try/except of its own; library callers catch `TrtpipeError`.
"""

from __future__ import annotations

import click


class TrtpipeError(click.ClickException):
    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        parts = [what if where is None else f"{where}: {what}"]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))


class ConfigError(TrtpipeError):
    """A build config is missing, malformed or asks for something unsupported."""


class StageError(TrtpipeError):
    """A pipeline stage failed; nothing was published."""


class PublishError(TrtpipeError):
    """Writing the model repository failed; the live version is untouched."""


class TritonStartError(TrtpipeError):
    """tritonserver could not be found, started, or did not become ready."""


def tail(text: str, num_lines: int = 50) -> str:
    """The last lines of a log, for error messages about subprocesses."""
    return "\n".join(text.rstrip().splitlines()[-num_lines:])

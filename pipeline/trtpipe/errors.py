"""One exception root. Every message says what went wrong, where, and how to fix it.

A failure a user can cause is a `TrtpipeError`; its class says which kind, and the kind decides the exit
code of the command line (cli.run prints the message and no traceback; `--debug` shows it):

    1   TrtpipeError, StageError, PublishError: a step failed (a tool, a gate, a reload)
    2   usage: click's own (a bad option)
    3   ConfigError: the build config is missing, malformed or asks for something unsupported
    4   SourceError: the checkpoint (the config's source) cannot be used as it is
    5   MachineError: this machine cannot do it (no GPU, no TensorRT-LLM, Triton would not start)
    6   DiskError: the disk filled up (or a quota ran out) while writing
    7   IntegrityError: stored bytes no longer match the sha256 recorded for them
    70  anything else: a bug in trtpipe (cli.run says so and how to report it)

click prints `Error: <message>` for a ClickException and exits with `exit_code`; library callers catch
`TrtpipeError`.
"""

from __future__ import annotations

import errno

import click

EXIT_INTERNAL = 70  # EX_SOFTWARE in sysexits.h
# OSError errnos that mean "out of space", not "something is wrong with the file".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


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

    exit_code = 3


class StageError(TrtpipeError):
    """A pipeline stage failed; nothing was published."""


class SourceError(StageError):
    """The checkpoint cannot be used as it is: unsupported architecture, pickle-only weights, no tokenizer.json,
    a symlink out of the checkpoint directory. A StageError too (the stage that read it failed)."""

    exit_code = 4


class PublishError(TrtpipeError):
    """Writing the model repository failed; the live version is untouched."""


class MachineError(TrtpipeError):
    """This machine cannot build or serve what was asked (GPU, toolchain, a server that will not start)."""

    exit_code = 5


class TritonStartError(MachineError):
    """tritonserver could not be found, started, or did not become ready."""


class DiskError(TrtpipeError):
    """The disk (or a quota) filled up while writing; what was being written was removed again."""

    exit_code = 6


class IntegrityError(TrtpipeError):
    """A file no longer has the sha256 recorded for it (a cache entry or a published version)."""

    exit_code = 7

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 path: str | None = None):
        self.path = path  # the first file that did not match, relative to the directory checked
        super().__init__(what, where=where, fix=fix)


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


def disk_full(e: OSError, *, where: str, writing: str) -> DiskError:
    """The DiskError for an out-of-space OSError met while writing `writing`."""
    return DiskError(f"the disk filled up while writing {writing} ({e.strerror or e})", where=where,
                     fix="free space (`trtpipe cache gc --keep N` retires old versions and the artifacts only they "
                         "used) or point TRTPIPE_HOME at a larger disk, then run the same command again; nothing "
                         "half-written was kept")


def tail(text: str, num_lines: int = 50) -> str:
    """The last lines of a log, for error messages about subprocesses."""
    return "\n".join(text.rstrip().splitlines()[-num_lines:])

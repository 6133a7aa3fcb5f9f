"""The steps a stage is made of, as data: the build runs them, `--dry-run` prints them.

A backend's recipe for a stage returns a list of steps for one output directory. `run_steps` executes them
in order and merges what each returns into the artifact's metadata; `describe` gives the lines the dry run
prints for the same objects. So the dry run cannot drift from the build: there is one description of what
a stage does, not two.

- `RunCommand`: an external tool (argv, cwd, added env, log file), e.g. trtllm-build or ModelOpt.
- `InProcess`: a Python function of trtpipe's own (the reference engine's converter, a smoke test).
- `WriteFile`: a file whose whole text is known before the build (e.g. the LLM API arguments YAML).
- `Verify`: a check of what the previous steps wrote; it raises StageError on a mismatch.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Command:
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the caller's environment; never secrets
    produces: str = ""  # the directory the command writes
    description: str = ""

    def shell(self) -> str:
        """The command as one line a person can paste (for logs and docs)."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


@dataclass(frozen=True)
class RunCommand:
    command: Command
    log: Path
    stage: str
    meta_key: str = "commands"  # where the argv is recorded in the artifact metadata

    def describe(self) -> list[str]:
        cmd = self.command
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(cmd.env.items()))
        return [cmd.description, f"cwd: {cmd.cwd or os.getcwd()}", f"env: {env or '(nothing added)'}",
                "$ " + shlex.join(cmd.argv), f"log: {self.log}"]

    def run(self) -> dict[str, Any]:
        from trtpipe.stages.external import run_logged

        run_logged(self.command.argv, self.log, stage=self.stage, cwd=self.command.cwd, env=self.command.env)
        if self.meta_key == "commands":
            return {"commands": [self.command.argv]}
        return {self.meta_key: self.command.argv}


@dataclass(frozen=True)
class InProcess:
    description: str  # what the dry run prints; one line per line
    function: Callable[[], dict[str, Any] | None]

    def describe(self) -> list[str]:
        return self.description.splitlines()

    def run(self) -> dict[str, Any]:
        return self.function() or {}


@dataclass(frozen=True)
class WriteFile:
    path: Path
    text: str
    description: str

    def describe(self) -> list[str]:
        return [f"write {self.path.name}: {self.description}", *(f"  | {line}" for line in self.text.splitlines())]

    def run(self) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.text)
        return {"wrote": [self.path.name]}


@dataclass(frozen=True)
class Verify:
    lines: tuple[str, ...]
    function: Callable[[], dict[str, Any] | None]

    def describe(self) -> list[str]:
        return list(self.lines)

    def run(self) -> dict[str, Any]:
        return self.function() or {}


Step = RunCommand | InProcess | WriteFile | Verify


def run_steps(steps: Sequence[Step]) -> dict[str, Any]:
    """Run each step in order; lists in the returned metadata (commands, files written) accumulate."""
    meta: dict[str, Any] = {}
    for step in steps:
        for key, value in step.run().items():
            if isinstance(value, list) and isinstance(meta.get(key), list):
                meta[key] = meta[key] + value
            else:
                meta[key] = value
    return meta

"""`trtpipe cache ls|gc`: list and clean the content-addressed artifact cache."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from trtpipe.commands.options import REPO_OPTION, resolve_repo

console = Console(stderr=True)


@click.group()
def cache() -> None:
    """Inspect and clean the content-addressed artifact cache."""


@cache.command("ls")
def cache_ls() -> None:
    """List cached artifacts: stage, key, size."""
    from trtpipe.cache import ArtifactCache, dir_size

    table = Table()
    for col in ("stage", "key", "MiB", "path"):
        table.add_column(col)
    store = ArtifactCache()
    for a in store.entries():
        table.add_row(a.stage, a.key[:12], f"{dir_size(a.path) / 2**20:.1f}", str(a.path))
    Console().print(table)


@cache.command("gc")
@REPO_OPTION
@click.option("--all", "remove_all", is_flag=True, help="remove every artifact, even those published versions use")
def cache_gc(repo: Path | None, remove_all: bool) -> None:
    """Remove artifacts that no version kept in the model repository was built from."""
    from trtpipe.cache import ArtifactCache
    from trtpipe.repo.versions import referenced_stage_keys

    keep = set() if remove_all else referenced_stage_keys(resolve_repo(repo))
    removed = ArtifactCache().gc(keep)
    console.print(f"removed {len(removed)} artifact(s); kept {len(keep)} referenced key(s)")

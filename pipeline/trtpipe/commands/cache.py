"""`trtpipe cache ls|gc`: list and clean the content-addressed artifact cache."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from trtpipe.commands.options import REPO_OPTION, keep_option, resolve_repo

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
@keep_option("first retire all but this many versions of each model (the live one and those live most recently "
             "before it), then remove the artifacts no kept version was built from")
@click.option("--all", "remove_all", is_flag=True, help="remove every artifact, even those published versions use")
def cache_gc(repo: Path | None, keep: int, remove_all: bool) -> None:
    """Retire old versions (--keep), then remove artifacts that no kept version was built from."""
    from trtpipe.cache import ArtifactCache, dir_size
    from trtpipe.repo.versions import referenced_stage_keys, retire

    root = resolve_repo(repo)
    for model, versions in retire(root, keep).items():
        console.print(f"{model}: retired version(s) {', '.join(map(str, versions))}")
    keys = set() if remove_all else referenced_stage_keys(root)
    store = ArtifactCache()
    freed = sum(dir_size(a.path) for a in store.entries() if a.key not in keys)
    removed = store.gc(keys)
    console.print(f"removed {len(removed)} artifact(s) ({freed / 2**20:.1f} MiB); kept {len(keys)} referenced key(s)")

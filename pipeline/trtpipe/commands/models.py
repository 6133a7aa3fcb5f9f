"""`trtpipe models` and `trtpipe rollback`: the versions published in the model repository, and which is live."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from trtpipe.commands.options import REPO_OPTION, resolve_repo

console = Console(stderr=True)


@click.command()
@REPO_OPTION
def models(repo: Path | None) -> None:
    """List published models, their live version and build."""
    from trtpipe.repo.versions import list_versions

    table = Table()
    for col in ("model", "live", "versions", "backend", "engine key", "built"):
        table.add_column(col)
    for row in list_versions(resolve_repo(repo)):
        table.add_row(row["model"], str(row["live"]), ",".join(map(str, row["versions"])), row["backend"],
                      row["engine_key"], row["created_at"])
    Console().print(table)


@click.command()
@click.argument("model")
@REPO_OPTION
@click.option("--to", "to_version", type=int, default=None,
              help="version to make live [default: the one that was live before the live one]")
def rollback(model: str, repo: Path | None, to_version: int | None) -> None:
    """Make the version of MODEL that was live before the live one live again (or --to N), after checking
    its files against its manifest."""
    from trtpipe.repo.versions import rollback as run_rollback

    version = run_rollback(resolve_repo(repo), model, to_version)
    console.print(f"{model}: version {version} is live")

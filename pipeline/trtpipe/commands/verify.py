"""`trtpipe verify [MODEL [VERSION]]`: hash every file of published versions and compare with their manifests."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from trtpipe.commands.options import REPO_OPTION, resolve_repo


@click.command()
@click.argument("model", required=False)
@click.argument("version", type=int, required=False)
@REPO_OPTION
def verify(model: str | None, version: int | None, repo: Path | None) -> None:
    """Check published versions file by file against the sha256 their manifests record (every kept version of
    every model by default); exit 7 when any file does not match."""
    from trtpipe.errors import IntegrityError
    from trtpipe.repo.verify import check_repository

    root = resolve_repo(repo)
    checks = check_repository(root, model, version)
    table = Table()
    for col in ("model", "version", "live", "files", "result"):
        table.add_column(col)
    for c in checks:
        result = "[green]ok[/]" if c.ok else f"[red]{len(c.problems)} problem(s)[/]"
        table.add_row(c.model, str(c.version), "live" if c.is_live else "", str(c.num_files), result)
    Console().print(table)
    bad = [c for c in checks if not c.ok]
    if bad:
        lines = [p for c in bad for p in c.problems]
        raise IntegrityError(f"{len(bad)} of {len(checks)} version(s) do not match their manifests:\n  "
                             + "\n  ".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else ""), where=str(root),
                             fix="roll back to an intact version (trtpipe rollback MODEL --to N) and rebuild the "
                                 "damaged one (trtpipe build MODEL); check the disk")
    click.echo(f"{len(checks)} version(s) verified: every file matches its manifest")

"""Options shared by the click commands (build, cache gc, models, rollback, serve)."""

from __future__ import annotations

from pathlib import Path

import click

REPO_OPTION = click.option("--repo", type=click.Path(path_type=Path), default=None,
                           help="Triton model repository [default: $TRTPIPE_HOME/model_repository]")


def resolve_repo(repo: Path | None) -> Path:
    from trtpipe.repo.layout import default_repository

    return (repo or default_repository()).expanduser().resolve()


def keep_option(help_text: str):
    from trtpipe.repo.retention import DEFAULT_KEEP

    return click.option("--keep", type=click.IntRange(min=1), default=DEFAULT_KEEP, show_default=True,
                        help=help_text)

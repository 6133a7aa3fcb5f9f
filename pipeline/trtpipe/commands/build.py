"""`trtpipe build`: one config (or, with --all, every config) through the stages, with a live table of them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trtpipe.commands.options import REPO_OPTION, keep_option, resolve_repo

console = Console(stderr=True)


class _BuildTable:
    """A live table of stages: status, seconds, cache key."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, float, str]] = {}

    def update(self, stage: str, status: str, seconds: float, key: str) -> None:
        self.rows[stage] = (status, seconds, key)

    def __rich__(self) -> Table:
        table = Table(title="trtpipe build")
        for col in ("stage", "status", "seconds", "key"):
            table.add_column(col)
        colors = {"cached": "green", "built": "cyan", "published": "cyan", "unchanged": "green",
                  "skipped": "dim", "running": "yellow", "waiting": "yellow", "failed": "red", "not live": "yellow"}
        for stage, (status, seconds, key) in self.rows.items():
            # A Text with a style, not markup: a status with no colour (the gate's "passed") must not become "[]".
            table.add_row(stage, Text(status, style=colors.get(status, "")), f"{seconds:.2f}", key[:12])
        return table


@click.command()
@click.argument("config_name", required=False)
@REPO_OPTION
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override one config value")
@click.option("--force", multiple=True, metavar="STAGE", help="rebuild this stage even if cached")
@click.option("--no-publish", is_flag=True, help="build the stages only")
@click.option("--gate", is_flag=True, help="run the golden-prompt and load-test gate before publishing")
@click.option("--all", "build_every", is_flag=True, help="nightly: build, gate and publish every config")
@click.option("--match", default="*", show_default=True, help="with --all: only configs whose name matches")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="with --all: write a JSON report")
@click.option("--dry-run", is_flag=True, help="print every command and file the build would run or write; run nothing")
@keep_option("versions of the model kept after publishing: the live one and those live most recently before it")
def build(config_name: str | None, repo: Path | None, overrides: tuple[str, ...], force: tuple[str, ...],
          no_publish: bool, gate: bool, build_every: bool, match: str, report: Path | None, dry_run: bool,
          keep: int) -> None:
    """Build CONFIG_NAME (e.g. tiny-llama) and publish a new model-repository version."""
    from trtpipe.build import build as run_build
    from trtpipe.config import load_config

    if build_every:
        _build_all(resolve_repo(repo), match, report, not no_publish, keep)
        return
    if not config_name:
        raise click.UsageError("give a CONFIG_NAME (e.g. tiny-llama) or --all")
    config = load_config(config_name, list(overrides))
    if dry_run:
        from trtpipe.dry_run import describe_build

        click.echo(describe_build(config, resolve_repo(repo)))
        return
    table = _BuildTable()
    with Live(table, console=console, refresh_per_second=8, transient=False) as live:
        def progress(stage: str, status: str, seconds: float, key: str) -> None:
            table.update(stage, status, seconds, key)
            live.refresh()

        result = run_build(config, resolve_repo(repo), force=set(force), publish=not no_publish, gate=gate,
                           progress=progress, keep=keep)
    console.print()
    if result.published:
        console.print(_published_line(config.name, result.published, resolve_repo(repo)))


def _published_line(model: str, published, repo: Path) -> str:
    v = published.version
    if not published.unchanged:
        return f"{model}: version {v} published in {repo}"
    if published.is_live:
        return f"{model}: version {v} unchanged, still live in {repo}"
    return (f"{model}: identical to version {v}, which is not live (it was rolled back from); nothing published. "
            f"`trtpipe rollback {model} --to {v}` makes it live again")


def _build_all(repo: Path, match: str, report: Path | None, publish: bool, keep: int) -> None:
    from trtpipe.nightly import all_config_names, build_all

    names = all_config_names(match)
    if not names:
        raise click.UsageError(f"no build config matches {match!r}")
    table = _BuildTable()
    with Live(table, console=console, refresh_per_second=4, transient=True) as live:
        def progress(stage: str, status: str, seconds: float, key: str) -> None:
            table.update(stage, status, seconds, key)
            live.refresh()

        outcomes = build_all(names, repo, report, publish=publish, progress=progress, keep=keep)
    summary = Table(title="trtpipe build --all")
    for col in ("config", "status", "version", "seconds", "error"):
        summary.add_column(col)
    for o in outcomes:
        color = "red" if o.status == "failed" else "green"
        summary.add_row(o.config, f"[{color}]{o.status}[/]", str(o.version or ""), f"{o.seconds:.1f}",
                        (o.error or "").splitlines()[0][:100] if o.error else "")
    Console().print(summary)
    failed = [o.config for o in outcomes if o.status == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(outcomes)} configs failed: {', '.join(failed)}; "
                                   "what was live stays live" + (f" (report: {report})" if report else ""))

"""The trtpipe command line: the click group and its commands (trtpipe.commands, one module per group)."""

from __future__ import annotations

import os

import click


@click.group()
@click.version_option(package_name="trtpipe")
def cli() -> None:
    """From a Hugging Face checkpoint to a latency-critical OpenAI-compatible endpoint."""


def _register_commands() -> None:
    from trtpipe.commands.bench import bench
    from trtpipe.commands.build import build
    from trtpipe.commands.cache import cache
    from trtpipe.commands.models import models, rollback
    from trtpipe.commands.plan import plan_command
    from trtpipe.commands.serve import serve

    cli.add_command(bench)
    cli.add_command(build)
    cli.add_command(cache)
    cli.add_command(models)
    cli.add_command(plan_command, name="plan")
    cli.add_command(rollback)
    cli.add_command(serve)


_register_commands()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()

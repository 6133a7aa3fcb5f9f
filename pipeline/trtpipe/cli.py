"""The trtpipe command line: the click group and its commands (trtpipe.commands, one module per group).

`run(argv)` runs one command and returns its exit code; `main()` is the console script around it (the split
triton_cli uses, so tests call `run` in-process). A failure a user can cause (a TrtpipeError, errors.py)
prints its one message and exits with its class's code; anything else is a bug in trtpipe and prints one
line saying so (exit 70). `--debug` (or TRTPIPE_DEBUG=1) adds the traceback to either.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from trtpipe.errors import EXIT_INTERNAL, TrtpipeError, disk_full, is_disk_full


@click.group()
@click.version_option(package_name="trtpipe")
@click.option("--debug", is_flag=True, envvar="TRTPIPE_DEBUG",
              help="show the Python traceback of a failure (also TRTPIPE_DEBUG=1)")
def cli(debug: bool) -> None:
    """From a Hugging Face checkpoint to a latency-critical OpenAI-compatible endpoint."""


def _register_commands() -> None:
    from trtpipe.commands.bench import bench
    from trtpipe.commands.build import build
    from trtpipe.commands.cache import cache
    from trtpipe.commands.deploy import deploy
    from trtpipe.commands.models import models, rollback
    from trtpipe.commands.plan import plan_command
    from trtpipe.commands.serve import serve
    from trtpipe.commands.verify import verify

    cli.add_command(bench)
    cli.add_command(build)
    cli.add_command(cache)
    cli.add_command(deploy)
    cli.add_command(models)
    cli.add_command(plan_command, name="plan")
    cli.add_command(rollback)
    cli.add_command(serve)
    cli.add_command(verify)


_register_commands()


def _wants_debug(argv: list[str]) -> bool:
    before_command = argv[: next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))]
    return "--debug" in before_command or os.environ.get("TRTPIPE_DEBUG", "") not in ("", "0", "false")


def _user_error(e: TrtpipeError, debug: bool) -> int:
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    e.show()
    return e.exit_code


def _internal_error(e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    first_line = (str(e).strip().splitlines() or [""])[0]
    click.echo(f"Error: internal error in trtpipe: {type(e).__name__}: {first_line}\n"
               "Fix: this is a bug, not something you did: run the same command with `trtpipe --debug ...` and "
               "report the traceback it prints", err=True)
    return EXIT_INTERNAL


def run(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (never raises, never calls sys.exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        # Not standalone: click returns an explicit ctx.exit(code) as `code` and a command's value otherwise.
        rv = cli.main(argv, prog_name="trtpipe", standalone_mode=False)
    except TrtpipeError as e:
        return _user_error(e, debug)
    except click.Abort:  # also Ctrl-C: click turns KeyboardInterrupt into Abort when not standalone
        click.echo("Aborted!", err=True)
        return 130
    except click.ClickException as e:  # usage errors: click's own message and exit code (2)
        e.show()
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - the one place an unexpected failure becomes a message
        if is_disk_full(e):
            return _user_error(disk_full(e, where="trtpipe", writing="its output"), debug)
        return _internal_error(e, debug)
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run())

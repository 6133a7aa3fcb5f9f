"""`trtpipe bench`: parse options into a BenchConfig, call the library, print. No logic lives here.

    trtpipe bench run --url http://127.0.0.1:9000/v1 --concurrency 1,4,16,64 --slo ttft=200ms,itl=50ms
    trtpipe bench --url ...                  # same as `bench run --url ...`
    trtpipe bench compare OLD NEW            # exit 1 on regression: the nightly gate
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from trtpipe.bench.compare import DEFAULT_THRESHOLDS, compare_results, parse_thresholds
from trtpipe.bench.config import (DEFAULT_URL, BenchConfig, Slo, parse_int_list, parse_rate_list,
                                  parse_slo)
from trtpipe.bench.errors import BenchError
from trtpipe.bench.load import run_sweep
from trtpipe.bench.report import best_point, load_result, write_report
from trtpipe.bench.terminal import RichProgress, compare_table, summary_table

DEFAULT_RESULTS_ROOT = Path("bench/results")


class _RunByDefault(click.Group):
    """A group where options without a subcommand (`trtpipe bench --url ...`) mean `bench run`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_RunByDefault)
def bench() -> None:
    """Load-test an OpenAI-compatible streaming endpoint (trtpipe, vLLM, TGI, trtllm-serve).

    Options given without a subcommand run `bench run`.
    """


def _parsed(parse):
    """A click callback that turns a parser's ValueError into a message naming the option."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


@bench.command("run")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="Base URL of the API, including /v1.")
@click.option("--model", default=None, help="Model name to request. [default: first id from GET /models]")
@click.option("--api-key", envvar=["TRTPIPE_API_KEY", "OPENAI_API_KEY"], show_envvar=True, default=None,
              help="Bearer token; never printed or written to the report.")
@click.option("--endpoint", type=click.Choice(["chat", "completions"]), default="chat", show_default=True)
@click.option("--concurrency", "concurrencies", callback=_parsed(parse_int_list), default=None,
              help="Closed-loop sweep, e.g. 1,4,16,64 (the default when no --request-rate).")
@click.option("--request-rate", "request_rates", callback=_parsed(parse_rate_list), default=None,
              help="Open-loop Poisson sweep in req/s, e.g. 2,8,inf (inf = all at once).")
@click.option("--max-concurrency", type=int, default=None, help="Open loop: at most this many requests in flight.")
@click.option("--num-prompts", type=int, default=64, show_default=True, help="Requests per sweep point.")
@click.option("--duration", "duration_s", type=float, default=None,
              help="Stop sending new requests after this many seconds per point.")
@click.option("--input-len", type=int, default=128, show_default=True, help="Prompt length in tokens.")
@click.option("--output-len", type=int, default=128, show_default=True, help="max_tokens per request.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(), default=None,
              help="tokenizer.json for exact prompt lengths (otherwise one word ~ one token).")
@click.option("--shared-prefix-len", type=int, default=0, show_default=True,
              help="Tokens of a prefix common to all prompts (prefix-reuse workload), before --input-len.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-stream", is_flag=True, help="Non-streaming requests (TTFT == E2E).")
@click.option("--ignore-eos", is_flag=True, help="Send ignore_eos and min_tokens=output-len (vLLM, trtpipe).")
@click.option("--slo", callback=_parsed(parse_slo), default=None,
              help="Goodput SLOs, e.g. ttft=200ms,itl=50ms,e2e=5s (keys ttft, tpot, itl, e2e; bare numbers are ms).")
@click.option("--slo-attainment", type=float, default=0.95, show_default=True,
              help="Share of requests that must meet the SLOs for a point to pass.")
@click.option("--metrics-url", default=None, help="Prometheus /metrics URL scraped before and after each point.")
@click.option("--timeout", "request_timeout_s", type=float, default=600.0, show_default=True,
              help="Per-request timeout in seconds.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Report directory. [default: bench/results/<timestamp>]")
@click.option("--label", default=None, help="A name for this run, shown in the report.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run each sweep point this many times; `bench compare` judges the median round against the "
                   "noise band the rounds show (use 3 or more for a gate).")
def run_command(out_dir: str | None, no_stream: bool, slo: Slo | None, **options) -> None:
    """Sweep concurrency (closed loop) or request rate (open loop) and write a report directory."""
    config = BenchConfig(stream=not no_stream, slo=slo or Slo(),
                         **{k: v for k, v in options.items() if v is not None})
    with RichProgress() as progress:
        result = run_sweep(config, progress)
    out_path = Path(out_dir) if out_dir else default_out_dir(config.label)
    write_report(result, out_path)

    console = Console()
    console.print(summary_table(result))
    if not config.slo.is_empty:
        best = best_point(result)
        console.print(f"highest load meeting the SLOs: {best.point.label if best else 'none'}")
    console.print(f"report: {out_path}")


@bench.command("compare")
@click.argument("old", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@click.option("--max-regression", "thresholds", callback=_parsed(parse_thresholds), default="",
              help="Limits, e.g. ttft_p95=1.10,tput=0.90 (NEW/OLD ratios; err_rate is an absolute increase). "
                   f"Defaults: {','.join(f'{k}={v:g}' for k, v in DEFAULT_THRESHOLDS.items())}.")
def compare_command(old: str, new: str, thresholds: dict[str, float]) -> None:
    """Compare two runs (results.json or report dirs) point by point; exit 1 on a regression."""
    comparison = compare_results(load_result(old), load_result(new), thresholds)
    if not comparison.points:
        raise BenchError("the two runs have no sweep point in common", where=f"{old} vs {new}",
                         fix="compare runs of the same --concurrency or --request-rate values")
    Console().print(compare_table(comparison))
    if comparison.has_regression:
        labels = sorted({f"{p.label} {d.metric.name}" for p in comparison.points for d in p.regressions})
        click.echo(f"regression: {', '.join(labels)}", err=True)
        click.get_current_context().exit(1)
    click.echo("no regression")


def default_out_dir(label: str | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_RESULTS_ROOT / (f"{stamp}-{label}" if label else stamp)

"""`trtpipe plan CONFIG --gpu NAME`: the click command over plan.make_plan and plan_report."""

from __future__ import annotations

from pathlib import Path

import click

from trtpipe.config import load_config
from trtpipe.hardware import get_gpu
from trtpipe.plan import make_plan


@click.command("plan")
@click.argument("config_name", metavar="CONFIG")
@click.option("--gpu", "gpu_name", required=True,
              help="a GPU of trtpipe.hardware.GPUS, e.g. h100-sxm-80gb, h200-141gb, b200-180gb, l40s-48gb")
@click.option("--input-len", type=click.IntRange(min=1), help="prompt tokens [default: 2048, within the engine]")
@click.option("--output-len", type=click.IntRange(min=1), help="generated tokens [default: 512, within the engine]")
@click.option("--request-rate", type=click.FloatRange(min=0, min_open=True), help="target requests/s")
@click.option("--per-replica-throughput", type=click.FloatRange(min=0, min_open=True),
              help="measured requests/s of one replica (from trtpipe bench); default: bandwidth estimate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="write the four markdown documents and plan.json here")
@click.option("--baseline", type=click.Path(exists=True, path_type=Path), default=None,
              help="a `trtpipe bench run` report (its directory or results.json): fills the Performance Baseline")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config value")
def plan_command(config_name, gpu_name, input_len, output_len, request_rate, per_replica_throughput, out_dir,
                 baseline, overrides):
    """Memory, capacity and scaling plan for CONFIG on a GPU, before anything is built."""
    from trtpipe.plan_report import summary_text, write_documents

    config = load_config(config_name, list(overrides))
    e = config.engine
    input_len = input_len or min(2048, e.max_input_len, e.max_seq_len // 2)
    output_len = output_len or min(512, e.max_seq_len - input_len)
    plan = make_plan(config, get_gpu(gpu_name), input_len=input_len, output_len=output_len,
                     request_rate=request_rate,
                     per_replica_throughput=per_replica_throughput)
    click.echo(summary_text(plan))
    bench = None
    if baseline is not None:
        from trtpipe.bench.report import load_result

        bench = load_result(baseline)
    if out_dir is not None:
        for path in write_documents(plan, out_dir, bench):
            click.echo(f"wrote {path}")

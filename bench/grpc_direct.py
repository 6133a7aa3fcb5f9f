"""The `trtpipe bench` load sent straight to Triton's `<model>-engine` over gRPC, with no frontend in between.

Same workload as `trtpipe bench` (closed-loop concurrency or open-loop Poisson sweep, the same synthetic
prompts cut to the same token lengths, greedy, min_tokens = output-len so every request generates exactly
output-len tokens), the same per-request timing, and the bench library's own results, so report.py,
plots.py and compare.py read its output unchanged:

- one `tritonclient.grpc.aio` stream per request (as the frontend does), tensors from `EngineCall.to_triton()`;
- TTFT = send -> first response carrying tokens; ITL = gaps between responses with tokens; E2E = send ->
  final response; output tokens = the token ids received.

    .venv/bin/python -m bench.grpc_direct --grpc-url 127.0.0.1:8001 --model tiny-llama \\
        --tokenizer REPO/tiny-llama-engine/1/tokenizer/tokenizer.json --concurrency 1,4,16 --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import datetime, timezone
from time import perf_counter
from typing import AsyncIterator

import tritonclient.grpc.aio as grpcclient

import trtpipe
from trtpipe.bench.config import BenchConfig, SweepPoint, parse_int_list
from trtpipe.bench.errors import BenchError
from trtpipe.bench.load import ProgressSink, drive_point
from trtpipe.bench.metrics import summarize
from trtpipe.bench.prompts import TokenCounter, make_prompts
from trtpipe.bench.results import BenchResult, PointResult, RequestRecord
from trtpipe.repo.layout import engine_model_name
from trtpipe.serve.engine_client import EngineCall

ENDPOINT = "triton-grpc"  # what results.json and report.md show in place of chat / completions
# Added to the seed of the prompts so that a direct run beside a frontend run of the same BenchConfig
# draws other prompts: with KV-cache reuse on, sending the same prompts twice would measure cache hits.
PROMPT_SEED_OFFSET = 1


def engine_call(prompt_ids: list[int], config: BenchConfig, end_id: int | None = None) -> EngineCall:
    """What the frontend asks of the engine for a bench request of `config` (validation._engine_call):
    greedy (temperature 0), max_tokens = output-len, and with ignore_eos no end_id and min_tokens = output-len."""
    return EngineCall(input_ids=list(prompt_ids), max_new_tokens=config.output_len,
                      end_id=None if config.ignore_eos else end_id, temperature=0.0,
                      min_tokens=config.output_len if config.ignore_eos else 0)


async def token_responses(client: grpcclient.InferenceServerClient, model: str,
                          inputs: list[grpcclient.InferInput]) -> AsyncIterator[tuple[float, int]]:
    """Yields (perf_counter at arrival, number of new tokens) for each response, until the final one.

    Raises the error Triton sends; leaving early cancels the stream and with it the request.
    """
    async def one_request():
        yield {"model_name": model, "inputs": inputs, "request_id": uuid.uuid4().hex}

    stream = client.stream_infer(one_request())
    try:
        async for result, error in stream:
            now = perf_counter()
            if error is not None:
                raise error
            ids = result.as_numpy("output_ids")
            yield now, 0 if ids is None else int(ids.size)
            if result.get_response().parameters["triton_final_response"].bool_param:
                return
        raise ConnectionError("the stream ended without a final response")
    finally:
        stream.cancel()


async def send_engine_request(client: grpcclient.InferenceServerClient, model: str, call: EngineCall, *,
                              request_id: int, scheduled_s: float, t0: float,
                              timeout_s: float | None = None) -> RequestRecord:
    """One request timed as `trtpipe.bench.client.send_request` times one: every time relative to `t0`,
    the inputs built before the clock starts (as the bench builds the JSON body), each response timed on
    arrival.

    Never raises: a failure goes into `record.error` and is counted by `summarize`.
    """
    record = RequestRecord(request_id=request_id, scheduled_s=scheduled_s, start_s=0.0, end_s=0.0,
                           prompt_tokens=len(call.input_ids))
    inputs = call.to_triton()
    record.start_s = perf_counter() - t0
    async def consume() -> None:
        async for arrived, num_tokens in token_responses(client, model, inputs):
            if num_tokens:
                record.chunk_times_s.append(arrived - t0)
                record.output_tokens += num_tokens

    try:
        # wait_for rather than asyncio.timeout(): the latter needs Python 3.11.
        await asyncio.wait_for(consume(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure of one request is counted, never fatal to the run
        timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
        text = f"no final response after {timeout_s:g} s" if timed_out else str(exc)
        record.error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    record.end_s = perf_counter() - t0
    # The engine's own token ids, counted exactly: as good as the frontend's `usage`.
    record.output_tokens_source = "usage"
    return record


def direct_prompts(config: BenchConfig, counter: TokenCounter, point_index: int,
                   num_prompts: int | None = None) -> list[list[int]]:
    """The bench's prompts (`make_prompts`, same lengths and word list) as token ids, drawn with the
    config's seed + PROMPT_SEED_OFFSET. Encoded as the frontend encodes a completions prompt."""
    prompts = make_prompts(num_prompts or config.num_prompts, config.input_len, counter,
                           seed=config.seed + PROMPT_SEED_OFFSET, point_index=point_index,
                           shared_prefix_len=config.shared_prefix_len)
    return [counter.encode(p.text) for p in prompts]


async def run_direct_point(client: grpcclient.InferenceServerClient, config: BenchConfig, model: str,
                           point: SweepPoint, prompts: list[list[int]], *, end_id: int | None = None,
                           arrival_seed: int | tuple[int, ...] = 0,
                           progress: ProgressSink | None = None) -> PointResult:
    """One sweep point, as `trtpipe.bench.load.run_point` runs one, against the engine model `model`."""
    started_at = utc_now()
    if progress:
        progress.start_point(point.label, len(prompts))
    t0 = perf_counter()

    async def send(index: int, scheduled_s: float) -> RequestRecord:
        record = await send_engine_request(client, model, engine_call(prompts[index], config, end_id),
                                           request_id=index, scheduled_s=scheduled_s, t0=t0,
                                           timeout_s=config.request_timeout_s)
        if progress:
            progress.request_done(record)
        return record

    records = await drive_point(send, len(prompts), point, config, arrival_seed, t0)
    duration_s = perf_counter() - t0
    records.sort(key=lambda r: r.request_id)
    result = PointResult(point=point, summary=summarize(records, duration_s, config.slo, config.slo_attainment),
                         requests=records, started_at=started_at)
    if progress:
        progress.end_point(result)
    return result


def direct_result(config: BenchConfig, grpc_url: str, model: str, points: list[PointResult], started_at: str,
                  counter: TokenCounter, label: str | None = None) -> BenchResult:
    """A BenchResult whose config says where the load went: grpc://host:port/<model>-engine, endpoint
    triton-grpc, and the seed the prompts were drawn with."""
    engine = engine_model_name(model)
    return BenchResult(config={**config.to_json(), "url": f"grpc://{grpc_url}/{engine}", "endpoint": ENDPOINT,
                               "model": engine, "seed": config.seed + PROMPT_SEED_OFFSET,
                               "label": label or config.label},
                       model=engine, started_at=started_at, prompt_lengths=counter.describe(), points=points,
                       trtpipe_version=trtpipe.__version__)


async def run_direct_sweep_async(config: BenchConfig, grpc_url: str, model: str, *, end_id: int | None = None,
                                 progress: ProgressSink | None = None) -> BenchResult:
    """Every sweep point of `config` against Triton's `<model>-engine` at `grpc_url` (host:port)."""
    if not config.tokenizer_path:
        raise BenchError("the direct gRPC bench sends token ids, so it needs the model's tokenizer",
                         where="BenchConfig.tokenizer_path", fix="pass --tokenizer <version>/tokenizer/tokenizer.json")
    if not config.ignore_eos and end_id is None:
        raise BenchError("without ignore_eos the engine needs the model's end id", where="end_id",
                         fix="pass --ignore-eos (every request then generates exactly output-len tokens)")
    counter = TokenCounter(config.tokenizer_path)
    started_at = utc_now()
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        engine = engine_model_name(model)
        if not await client.is_model_ready(engine):
            raise BenchError(f"Triton does not serve `{engine}` (not ready)", where=f"grpc://{grpc_url}",
                             fix="start Triton on the model repository, and pass the model name without -engine")
        points = []
        for index, point in enumerate(config.sweep_points):
            points.append(await run_direct_point(client, config, engine, point,
                                                 direct_prompts(config, counter, index), end_id=end_id,
                                                 arrival_seed=(config.seed, index), progress=progress))
    finally:
        await client.close()
    return direct_result(config, grpc_url, model, points, started_at, counter)


def run_direct_sweep(config: BenchConfig, grpc_url: str, model: str, *, end_id: int | None = None,
                     progress: ProgressSink | None = None) -> BenchResult:
    return asyncio.run(run_direct_sweep_async(config, grpc_url, model, end_id=end_id, progress=progress))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> BenchResult:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc-url", default="127.0.0.1:8001", help="Triton's gRPC host:port")
    ap.add_argument("--model", required=True, help="the served model name (without -engine)")
    ap.add_argument("--tokenizer", required=True, help="the published version's tokenizer/tokenizer.json")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="report directory")
    args = ap.parse_args(argv)

    from rich.console import Console

    from trtpipe.bench.report import write_report
    from trtpipe.bench.terminal import RichProgress, summary_table

    config = BenchConfig(concurrencies=parse_int_list(args.concurrency), num_prompts=args.num_prompts,
                         input_len=args.input_len, output_len=args.output_len, tokenizer_path=args.tokenizer,
                         seed=args.seed, ignore_eos=True, endpoint="completions",
                         label=f"{args.model} direct gRPC")
    with RichProgress() as progress:
        result = run_direct_sweep(config, args.grpc_url, args.model, progress=progress)
    write_report(result, args.out)
    Console().print(summary_table(result))
    Console().print(f"report: {args.out}")
    return result


if __name__ == "__main__":
    main()

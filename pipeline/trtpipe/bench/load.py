"""Load generation: a sweep of closed-loop concurrencies or open-loop Poisson rates, in one asyncio process.

- Closed loop (`concurrency=C`): C workers each send a request, wait for it to end, and send the next.
- Open loop (`rate=R`): requests are sent at Poisson arrival times whatever the server does; with
  R = inf all are sent at once. A request sent late (event loop busy, or `max_concurrency` slots full)
  records the delay as client queue time, which is kept out of TTFT.
- `duration_s` stops *sending* new requests; requests in flight finish (bounded by the request timeout)
  so that no latency sample is cut short.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from time import perf_counter
from typing import Protocol

import httpx
import numpy as np

import trtpipe
from trtpipe.bench.client import resolve_model, send_request
from trtpipe.bench.config import BenchConfig, SweepPoint
from trtpipe.bench.metrics import summarize
from trtpipe.bench.prompts import Prompt, TokenCounter, make_prompts
from trtpipe.bench.results import BenchResult, PointResult, RequestRecord
from trtpipe.bench.scrape import ScrapeError, scrape_metrics

SendFn = Callable[[int, float], Awaitable[RequestRecord]]  # (prompt index, scheduled_s) -> record


class ProgressSink(Protocol):
    def start_point(self, label: str, num_requests: int) -> None: ...

    def request_done(self, record: RequestRecord) -> None: ...

    def end_point(self, result: PointResult) -> None: ...


def run_sweep(config: BenchConfig, progress: ProgressSink | None = None) -> BenchResult:
    """Runs every sweep point of `config` in order against one server; see `run_sweep_async`."""
    return asyncio.run(run_sweep_async(config, progress))


async def run_sweep_async(config: BenchConfig, progress: ProgressSink | None = None) -> BenchResult:
    counter = TokenCounter(config.tokenizer_path)
    started_at = _now()
    # NOTE: connections are unlimited so that waiting for a pooled connection never hides inside TTFT,
    # and proxies from the environment are ignored: a benchmark must measure the server, not a proxy.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(config.request_timeout_s, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        model = await resolve_model(client, config)
        points = []
        for index, point in enumerate(config.sweep_points):
            prompts = make_prompts(config.num_prompts, config.input_len, counter, seed=config.seed,
                                   point_index=index, shared_prefix_len=config.shared_prefix_len)
            rounds = [await run_point(client, config, model, point, prompts, counter,
                                      arrival_seed=(config.seed, index), progress=progress)
                      for _ in range(config.rounds)]
            points.append(combine_rounds(rounds, config))
    return BenchResult(config={**config.to_json(), "model": model}, model=model, started_at=started_at,
                       prompt_lengths=counter.describe(), points=points, trtpipe_version=trtpipe.__version__)


async def run_point(client: httpx.AsyncClient, config: BenchConfig, model: str, point: SweepPoint,
                    prompts: list[Prompt], counter: TokenCounter, *, arrival_seed: int | Sequence[int] = 0,
                    progress: ProgressSink | None = None) -> PointResult:
    started_at = _now()
    before = await _scrape(client, config.metrics_url)
    if progress:
        progress.start_point(point.label, len(prompts))
    t0 = perf_counter()

    async def send(index: int, scheduled_s: float) -> RequestRecord:
        record = await send_request(client, config, model, prompts[index], counter, request_id=index,
                                    scheduled_s=scheduled_s, t0=t0)
        if progress:
            progress.request_done(record)
        return record

    records = await drive_point(send, len(prompts), point, config, arrival_seed, t0)
    duration_s = perf_counter() - t0
    after = await _scrape(client, config.metrics_url)

    records.sort(key=lambda r: r.request_id)
    summary = summarize(records, duration_s, config.slo, config.slo_attainment)
    result = PointResult(point=point, summary=summary, requests=records, started_at=started_at,
                         server_metrics=_metrics_entry(config.metrics_url, before, after))
    if progress:
        progress.end_point(result)
    return result


def combine_rounds(rounds: list[PointResult], config: BenchConfig) -> PointResult:
    """One point run N times -> one result: every request pooled into `summary` (request ids renumbered, times
    kept per round), each round's own summary in `rounds`."""
    if len(rounds) == 1:
        return rounds[0]
    records = [dataclasses.replace(r, request_id=i * config.num_prompts + r.request_id)
               for i, result in enumerate(rounds) for r in result.requests]
    duration_s = sum(result.summary.duration_s for result in rounds)
    return PointResult(point=rounds[0].point, summary=summarize(records, duration_s, config.slo, config.slo_attainment),
                       requests=records, started_at=rounds[0].started_at, server_metrics=rounds[-1].server_metrics,
                       rounds=[result.summary for result in rounds])


async def drive_point(send, num_requests: int, point: SweepPoint, config: BenchConfig,
                      arrival_seed: int | Sequence[int], t0: float) -> list[RequestRecord]:
    """Send one sweep point's requests: closed loop at its concurrency, or open loop at its Poisson rate.
    Any client (the HTTP bench, bench/grpc_direct.py) plugs in through `send(index, scheduled_s)`."""
    if point.mode == "concurrency":
        return await closed_loop(send, num_requests, int(point.value), t0=t0, duration_s=config.duration_s)
    arrivals_s = poisson_arrival_times(num_requests, point.value, arrival_seed)
    return await open_loop(send, arrivals_s, t0=t0, duration_s=config.duration_s,
                           max_concurrency=config.max_concurrency)


def poisson_arrival_times(num_requests: int, rate: float, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Send times in seconds from the start: the first at 0, then exponential gaps of mean 1/rate.

    A pure function of its arguments, so a seeded open-loop run sends on the same schedule every time.
    """
    if math.isinf(rate):
        return np.zeros(num_requests)
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=num_requests)
    return np.concatenate(([0.0], np.cumsum(gaps[:-1]))) if num_requests else np.zeros(0)


async def closed_loop(send: SendFn, num_requests: int, concurrency: int, *, t0: float,
                      duration_s: float | None = None) -> list[RequestRecord]:
    indices = iter(range(num_requests))  # shared by the workers; next() never awaits, so no lock
    records: list[RequestRecord] = []

    async def worker() -> None:
        for index in indices:
            now_s = perf_counter() - t0
            if duration_s is not None and now_s >= duration_s:
                return
            records.append(await send(index, now_s))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, num_requests))))
    return records


async def open_loop(send: SendFn, arrivals_s: np.ndarray, *, t0: float, duration_s: float | None = None,
                    max_concurrency: int | None = None) -> list[RequestRecord]:
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def fire(index: int, scheduled_s: float) -> RequestRecord:
        if slots is None:
            return await send(index, scheduled_s)
        async with slots:
            return await send(index, scheduled_s)

    tasks = []
    for index, scheduled_s in enumerate(float(a) for a in arrivals_s):
        if duration_s is not None and scheduled_s >= duration_s:
            break
        delay_s = scheduled_s - (perf_counter() - t0)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        tasks.append(asyncio.create_task(fire(index, scheduled_s)))
    return list(await asyncio.gather(*tasks))


async def _scrape(client: httpx.AsyncClient, url: str | None) -> dict[str, float] | str | None:
    if not url:
        return None
    try:
        return await scrape_metrics(client, url)
    except ScrapeError as exc:
        return f"scrape failed: {exc}"


def _metrics_entry(url: str | None, before, after) -> dict | None:
    """{"before": ..., "after": ...}, or {"error": ...} when the page could not be read (never fatal)."""
    if not url:
        return None
    for snapshot in (before, after):
        if isinstance(snapshot, str):
            return {"error": snapshot}
    return {"before": before, "after": after}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

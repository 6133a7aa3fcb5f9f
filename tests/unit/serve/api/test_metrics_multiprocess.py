"""/metrics with several API-server processes: what two spawned workers counted, summed by any process that
reads the multiprocess directory, under the trtpipe and the vLLM names, and kept after a worker is gone."""

from __future__ import annotations

import multiprocessing

from prometheus_client import generate_latest

from trtpipe.serve.api.metrics import FrontendMetrics


def count_requests(finished: int, tokens: int) -> None:
    # A fresh interpreter that sees PROMETHEUS_MULTIPROC_DIR: its counters are files in that directory.
    mm = FrontendMetrics().model("tiny-llama")
    mm.success["length"].inc(finished)
    mm.generation_tokens.inc(tokens)
    for _ in range(finished):
        mm.ttft.observe(0.003)


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_workers_counts_are_summed_under_both_names(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    for finished, tokens in ((2, 20), (3, 45)):
        p = ctx.Process(target=count_requests, args=(finished, tokens))
        p.start()
        p.join(30)
        assert p.exitcode == 0
    metrics = FrontendMetrics()  # the scraping worker: counted nothing itself
    got = samples(generate_latest(metrics.exposition).decode())
    assert got['trtpipe_request_success_total{finished_reason="length",model="tiny-llama"}'] == 5
    assert got['vllm:request_success_total{finished_reason="length",model_name="tiny-llama"}'] == 5
    assert got['trtpipe_generation_tokens_total{model="tiny-llama"}'] == 65
    assert got['trtpipe_time_to_first_token_seconds_bucket{le="0.005",model="tiny-llama"}'] == 5
    assert got['vllm:time_to_first_token_seconds_count{model_name="tiny-llama"}'] == 5
    # Live gauges are still read at scrape time in the scraping worker.
    metrics.state.sources.append(lambda: [("trtpipe_ready", "ready", {}, 1.0)])
    assert samples(generate_latest(metrics.exposition).decode())["trtpipe_ready"] == 1.0


def test_one_process_exposes_its_own_registry(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = FrontendMetrics()
    assert metrics.exposition is metrics.registry

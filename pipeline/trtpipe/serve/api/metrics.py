"""Prometheus metrics measured where the user feels them, with vLLM-compatible aliases.

Latencies are taken when bytes are handed to the client connection: TTFT from the request's arrival to its
first text chunk, inter-chunk latency between text chunks, TPOT per request, E2E, and queue time.
Each metric is recorded once; `AliasCollector` exposes it a second time under the vLLM name (label
`model_name` instead of `model`), so dashboards and autoscalers written for vLLM
(`vllm:num_requests_waiting`, `vllm:time_to_first_token_seconds`, ...) work unchanged. Gauges that mirror
live state (running, waiting, replica health, speculation state) are read at scrape time, not kept in step.

Several API-server processes (`trtpipe serve --api-servers N`) are one server to a scraper: each worker's
counters and histograms live in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by the
supervisor before it spawns them), and whichever worker answers /metrics sums every worker's files, those of
workers that died included, so counters never go back. Running/waiting gauges read the shared admission
counts (serve.process.shared_limits), so they too are the whole server's, as is the speculation state (from the
shared acceptance window). Replica health and outstanding requests, and readiness, are the answering
worker's own view: every worker checks the same replicas.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from trtpipe.serve.api.triton_metrics import mirror_from_env

# SLO-friendly: fine below 100 ms, where TTFT and inter-token targets live.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                   1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)

# trtpipe family -> its vLLM names.
VLLM_ALIASES = {
    "trtpipe_time_to_first_token_seconds": ("vllm:time_to_first_token_seconds",),
    "trtpipe_inter_token_latency_seconds": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "trtpipe_time_per_output_token_seconds": ("vllm:request_time_per_output_token_seconds",),
    "trtpipe_e2e_request_latency_seconds": ("vllm:e2e_request_latency_seconds",),
    "trtpipe_request_queue_time_seconds": ("vllm:request_queue_time_seconds",),
    "trtpipe_prompt_tokens": ("vllm:prompt_tokens",),
    "trtpipe_generation_tokens": ("vllm:generation_tokens",),
    "trtpipe_request_prompt_tokens": ("vllm:request_prompt_tokens",),
    "trtpipe_request_generation_tokens": ("vllm:request_generation_tokens",),
    "trtpipe_request_success": ("vllm:request_success",),
    "trtpipe_spec_decode_num_drafts": ("vllm:spec_decode_num_drafts",),
    "trtpipe_spec_decode_num_draft_tokens": ("vllm:spec_decode_num_draft_tokens",),
    "trtpipe_spec_decode_num_accepted_tokens": ("vllm:spec_decode_num_accepted_tokens",),
    "trtpipe_prefix_cache_queries": ("vllm:prefix_cache_queries",),
    "trtpipe_prefix_cache_hits": ("vllm:prefix_cache_hits",),
    "trtpipe_num_requests_running": ("vllm:num_requests_running",),
    "trtpipe_num_requests_waiting": ("vllm:num_requests_waiting",),
}


class ModelMetrics:
    """One model's labelled children, resolved once: the hot path does one `observe`/`inc` per event."""

    def __init__(self, m: "FrontendMetrics", model: str):
        self.ttft = m.ttft.labels(model)
        self.itl = m.itl.labels(model)
        self.tpot = m.tpot.labels(model)
        self.e2e = m.e2e.labels(model)
        self.queue_time = m.queue_time.labels(model)
        self.prompt_tokens = m.prompt_tokens.labels(model)
        self.generation_tokens = m.generation_tokens.labels(model)
        self.request_prompt_tokens = m.request_prompt_tokens.labels(model)
        self.request_generation_tokens = m.request_generation_tokens.labels(model)
        self.success = {r: m.success.labels(model, r) for r in ("stop", "length", "abort")}
        self.spec_drafts = m.spec_drafts.labels(model)
        self.spec_draft_tokens = m.spec_draft_tokens.labels(model)
        self.spec_accepted_tokens = m.spec_accepted_tokens.labels(model)
        self.prefix_cache_queries = m.prefix_cache_queries.labels(model)
        self.prefix_cache_hits = m.prefix_cache_hits.labels(model)


class FrontendMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        L = ["model"]

        def hist(name, doc, buckets=LATENCY_BUCKETS):
            return Histogram(name, doc, L, buckets=buckets, registry=r)

        def counter(name, doc, labels=L):
            return Counter(name, doc, labels, registry=r)

        self.ttft = hist("trtpipe_time_to_first_token_seconds", "Request arrival to its first text chunk (seconds)")
        self.itl = hist("trtpipe_inter_token_latency_seconds", "Gap between consecutive text chunks (seconds)")
        self.tpot = hist("trtpipe_time_per_output_token_seconds",
                         "Per request: (last chunk - first chunk) / (output tokens - 1) (seconds)")
        self.e2e = hist("trtpipe_e2e_request_latency_seconds", "Request arrival to its last byte (seconds)")
        self.queue_time = hist("trtpipe_request_queue_time_seconds", "Time waiting for admission (seconds)")
        self.prompt_tokens = counter("trtpipe_prompt_tokens", "Prompt tokens of finished requests")
        self.generation_tokens = counter("trtpipe_generation_tokens", "Tokens generated for requests that finished")
        self.request_prompt_tokens = hist("trtpipe_request_prompt_tokens", "Prompt tokens per request", TOKEN_BUCKETS)
        self.request_generation_tokens = hist("trtpipe_request_generation_tokens", "Generated tokens per request",
                                              TOKEN_BUCKETS)
        self.success = counter("trtpipe_request_success", "Choices by how they ended: stop, length, or abort "
                               "(client gone, deadline, drain, error)", ["model", "finished_reason"])
        self.errors = counter("trtpipe_request_errors", "Requests answered with an error, by type and HTTP status",
                              ["model", "type", "status"])
        self.spec_drafts = counter("trtpipe_spec_decode_num_drafts", "Speculation rounds (draft + verify)")
        self.spec_draft_tokens = counter("trtpipe_spec_decode_num_draft_tokens", "Draft tokens proposed")
        self.spec_accepted_tokens = counter("trtpipe_spec_decode_num_accepted_tokens", "Draft tokens accepted")
        # As vLLM counts them, in prompt tokens, from what each engine call reports it reused.
        self.prefix_cache_queries = counter("trtpipe_prefix_cache_queries",
                                            "Prefix cache queries, in prompt tokens looked up")
        self.prefix_cache_hits = counter("trtpipe_prefix_cache_hits", "Prefix cache hits, in prompt tokens reused")
        self.state = StateCollector()
        r.register(self.state)
        r.register(AliasCollector([self.ttft, self.itl, self.tpot, self.e2e, self.queue_time, self.prompt_tokens,
                                   self.generation_tokens, self.request_prompt_tokens,
                                   self.request_generation_tokens, self.success, self.spec_drafts,
                                   self.spec_draft_tokens, self.spec_accepted_tokens, self.prefix_cache_queries,
                                   self.prefix_cache_hits, self.state]))
        # What /metrics exposes: this registry, or with several API servers every worker's files summed (read
        # once per scrape, each family also under its vLLM names) plus this worker's live gauges.
        self.exposition = r
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.exposition = CollectorRegistry()
            self.exposition.register(AliasCollector([MultiProcessCollector(None), self.state], originals=True))
        # Triton's own metrics and the KV-cache usage gauges derived from them (triton_metrics.py), when serve says
        # where its Triton's metrics are.
        self.triton = mirror_from_env()
        if self.triton is not None:
            self.exposition.register(self.triton)
        self._models: dict[str, ModelMetrics] = {}

    def model(self, name: str) -> ModelMetrics:
        mm = self._models.get(name)
        if mm is None:
            mm = self._models[name] = ModelMetrics(self, name)
        return mm

    def error(self, model: str, type: str, status: int) -> None:
        self.errors.labels(model, type, str(status)).inc()


Gauges = Iterable[tuple[str, str, dict[str, str], float]]


class StateCollector:
    """Gauges read from live state at scrape time: (name, help, labels, value) from registered sources."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Gauges]] = []

    def collect(self):
        families: dict[str, GaugeMetricFamily] = {}
        for source in self.sources:
            for name, doc, labels, value in source():
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = GaugeMetricFamily(name, doc, labels=list(labels))
                fam.add_metric(list(labels.values()), value)
        return list(families.values())


class AliasCollector:
    """Re-exposes the families of other collectors under their vLLM names, with `model` -> `model_name`
    (`originals`: the families themselves too, for collectors too costly to collect twice)."""

    def __init__(self, collectors: list, originals: bool = False) -> None:
        self.collectors, self.originals = collectors, originals

    def collect(self):
        out = []
        for collector in self.collectors:
            for family in collector.collect():
                if self.originals:
                    out.append(family)
                for alias in VLLM_ALIASES.get(family.name, ()):
                    renamed = Metric(alias, family.documentation, family.type, family.unit)
                    for s in family.samples:
                        labels = {("model_name" if k == "model" else k): v for k, v in s.labels.items()}
                        renamed.add_sample(alias + s.name[len(family.name):], labels, s.value, s.timestamp,
                                           s.exemplar)
                    out.append(renamed)
        return out

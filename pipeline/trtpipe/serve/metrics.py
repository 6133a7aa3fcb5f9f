"""Prometheus metrics measured where the user feels them, with vLLM-compatible aliases.

Autoscalers and dashboards written for vLLM (`vllm:num_requests_waiting`, `vllm:time_to_first_token_seconds`,
...) work unchanged against trtpipe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# SLO-friendly: fine below 100 ms, where TTFT and inter-token targets live.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
                   1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class FrontendMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        L = ["model"]
        self.ttft = [Histogram(n, "Time to first token (seconds), measured at the frontend", L,
                               buckets=LATENCY_BUCKETS, registry=r)
                     for n in ("trtpipe_time_to_first_token_seconds", "vllm:time_to_first_token_seconds")]
        self.itl = [Histogram(n, "Gap between streamed text chunks (seconds)", L, buckets=LATENCY_BUCKETS, registry=r)
                    for n in ("trtpipe_inter_token_latency_seconds", "vllm:inter_token_latency_seconds")]
        self.tpot = [Histogram(n, "Time per output token after the first (seconds)", L, buckets=LATENCY_BUCKETS,
                               registry=r)
                     for n in ("trtpipe_time_per_output_token_seconds", "vllm:time_per_output_token_seconds")]
        self.e2e = [Histogram(n, "End-to-end request latency (seconds)", L, buckets=LATENCY_BUCKETS, registry=r)
                    for n in ("trtpipe_e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds")]
        self.queue_time = Histogram("trtpipe_queue_time_seconds", "Time waiting for a frontend slot", L,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.running = [Gauge(n, "Requests being generated", L, registry=r)
                        for n in ("trtpipe_num_requests_running", "vllm:num_requests_running")]
        self.waiting = [Gauge(n, "Requests waiting for a slot", L, registry=r)
                        for n in ("trtpipe_num_requests_waiting", "vllm:num_requests_waiting")]
        self.prompt_tokens = [Counter(n, "Prompt tokens processed", L, registry=r)
                              for n in ("trtpipe_prompt_tokens", "vllm:prompt_tokens")]
        self.generation_tokens = [Counter(n, "Tokens generated", L, registry=r)
                                  for n in ("trtpipe_generation_tokens", "vllm:generation_tokens")]
        self.requests = Counter("trtpipe_requests", "Finished requests by status and finish reason",
                                ["model", "status", "finish_reason"], registry=r)
        self.errors = Counter("trtpipe_request_errors", "Failed requests by error type", ["model", "type"],
                              registry=r)
        self.spec_drafted = Counter("trtpipe_spec_decode_num_draft_tokens", "Draft tokens proposed", L, registry=r)
        self.spec_accepted = Counter("trtpipe_spec_decode_num_accepted_tokens", "Draft tokens accepted", L,
                                     registry=r)


def observe(metrics_list, model: str, value: float) -> None:
    for m in metrics_list:
        m.labels(model).observe(value)


def inc(metrics_list, model: str, value: float = 1.0) -> None:
    for m in metrics_list:
        m.labels(model).inc(value)

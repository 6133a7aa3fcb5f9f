"""serve/api/triton_metrics.py: Triton's metrics merged into the frontend's /metrics (its port is loopback-only) and
the vLLM KV-cache usage gauges derived from the engines' block gauges. Fed recorded Triton text here; the real
Triton's is checked in tests/integration/test_triton_metrics_mirror.py."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trtpipe.serve.api.metrics import FrontendMetrics
from trtpipe.serve.api.triton_metrics import ENV, KV_USAGE_SERIES, TritonMetricsMirror, kv_usage, mirror_families

TRITON_TEXT = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="tiny-llama-engine",version="1"} 3
# HELP trtpipe_engine_state reference engine state
# TYPE trtpipe_engine_state gauge
trtpipe_engine_state{model="tiny-llama-engine",state="kv_blocks_used"} 4
trtpipe_engine_state{model="tiny-llama-engine",state="kv_blocks_total"} 16
# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="llama-8b-engine",version="1"} 30
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="llama-8b-engine",version="1"} 120
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="llama-70b-engine",version="1"} 1
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="llama-70b-engine",version="1"} 100
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="llama-70b-engine",version="1"} 0.5
"""


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_triton_counters_keep_the_names_triton_gives_them():
    [success, *_] = mirror_families(TRITON_TEXT)
    assert success.type == "unknown" and [s.name for s in success.samples] == ["nv_inference_request_success"]


def test_kv_usage_comes_from_reference_blocks_and_the_tensorrtllm_fraction_or_used_over_max():
    assert kv_usage(mirror_families(TRITON_TEXT)) == {"tiny-llama": 0.25, "llama-8b": 0.25, "llama-70b": 0.5}


def test_the_frontends_metrics_carry_tritons_series_and_the_vllm_kv_usage_gauges(monkeypatch):
    monkeypatch.setenv(ENV, "http://127.0.0.1:1/metrics")
    metrics = FrontendMetrics()
    metrics.triton._fetch = lambda url: TRITON_TEXT
    metrics.triton.interval_s = 3600
    metrics.triton.refresh()
    text = generate_latest(metrics.exposition).decode()
    assert 'nv_inference_request_success{model="tiny-llama-engine",version="1"} 3.0' in text
    got = _samples(text)
    for name in KV_USAGE_SERIES:
        assert got[(name, (("model_name", "tiny-llama"),))] == 0.25
        assert got[(name, (("model_name", "llama-70b"),))] == 0.5
    assert got[("trtpipe_triton_metrics_up", ())] == 1.0


def test_an_unreachable_triton_reports_down_and_the_frontend_keeps_its_own_series():
    def refuse(url):
        raise OSError("connection refused")

    mirror = TritonMetricsMirror("http://127.0.0.1:1/metrics", fetch=refuse, interval_s=3600)
    mirror.refresh()
    families = {f.name: f for f in mirror.collect()}
    assert families["trtpipe_triton_metrics_up"].samples[0].value == 0.0
    assert families["vllm:kv_cache_usage_perc"].samples == []


def test_without_the_environment_variable_nothing_is_mirrored(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert FrontendMetrics().triton is None

"""The frontend's Triton-metrics mirror against the session's real Triton (reference engine): its own nv_* series
and the reference engine's trtpipe_engine_state gauges arrive, and the KV-cache usage is derived from them."""

from __future__ import annotations

from trtpipe.serve.api.triton_metrics import TritonMetricsMirror


def test_the_mirror_reads_the_real_tritons_metrics_and_derives_kv_usage(triton):
    mirror = TritonMetricsMirror(f"http://127.0.0.1:{triton.ports.metrics}/metrics", interval_s=3600)
    mirror.refresh()
    families = {f.name: f for f in mirror.collect()}
    assert families["trtpipe_triton_metrics_up"].samples[0].value == 1.0
    assert "nv_inference_request_success" in families and "trtpipe_engine_state" in families
    usage = {s.labels["model_name"]: s.value for s in families["vllm:kv_cache_usage_perc"].samples}
    assert 0.0 <= usage["tiny-llama"] <= 1.0  # (other tests may publish more models into the session's Triton)
